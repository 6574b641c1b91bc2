-- What every store shares: options checking, key-part validation (the
-- Node package's rules and messages), the key-prefix policy, value
-- encoding, error values, and time through the client's runtime.
local core = require "ddbkit.core"
local jsjson = require "ddbkit.jsjson"

local type, pairs, ipairs, error, setmetatable, tostring, pcall, floor =
      type, pairs, ipairs, error, setmetatable, tostring, pcall, math.floor

local _M = { _VERSION = "0.1.0" }

local DEFAULT_POLICY = "policies.key_prefix"
local MAX_PART = 512

--- store.err(code, message) -> an error value like the engine's
function _M.err(code, message)
  return setmetatable({ code = code, message = message, status = 0, retryable = false },
                      core.error_mt)
end

--- store.check_part(name, value) -> nil | err
-- A key part (hash, resource, tag, origin): not empty, no control
-- characters, at most 512 UTF-8 bytes; the Node package's messages.
function _M.check_part(name, value)
  if type(value) ~= "string" then
    return _M.err("InvalidArgument", name .. " must be a string")
  end
  if value == "" then return _M.err("InvalidArgument", name .. " must not be empty") end
  if value:find("[%z\1-\31\127]") then
    return _M.err("InvalidArgument", name .. " contains unsupported control characters")
  end
  if #value > MAX_PART then
    return _M.err("InvalidArgument", name .. " exceeds maximum length of " .. MAX_PART .. " bytes")
  end
end

-- Where the shipped scripts live: scripts/ beside lua/ in a source tree,
-- ddbkit/scripts/ beside this file once installed.
local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
local SCRIPT_DIRS = { HERE .. "/scripts/", HERE .. "/../../scripts/" }

local function find_script(module)
  local rel = module:gsub("%.", "/") .. ".lua"
  for _, dir in ipairs(SCRIPT_DIRS) do
    local f = io.open(dir .. rel, "r")
    if f then
      f:close()
      return dir .. rel
    end
  end
end

-- Compiled policy and strategy chunks by spec (module name or path): a
-- script is found and read from disk once per process (for nginx: once
-- per worker, when its stores are made at module level or in
-- init_worker), never again on a request path; forget_scripts() drops them.
local chunks = {}

--- store.forget_scripts(): the next load_script of each spec finds and
-- reads its file again (a reload that picks up edits).
function _M.forget_scripts()
  chunks = {}
end

-- Loads a policy or strategy: nil (the default module), a table (used as
-- is), a module name ("policies.key_prefix": package.path first, then the
-- shipped scripts/ folder), or a file path (anything with a "/" or ending
-- in ".lua"). The file is found and compiled on its first load only (see
-- chunks); each load runs the chunk afresh, so each store gets its own
-- table. Returns the table and a name for messages.
function _M.load_script(spec, default, what)
  spec = spec or default
  if type(spec) == "table" then return spec, spec.name or ("(" .. what .. " table)") end
  if type(spec) ~= "string" then
    error("ddbkit: the " .. what .. " must be a module name, a file path or a table", 3)
  end
  local chunk = chunks[spec]
  if not chunk then
    local path = (spec:find("/") or spec:match("%.lua$")) and spec
    if not path then
      path = package.searchpath and package.searchpath(spec, package.path) or find_script(spec)
      path = path or find_script(spec)
    end
    if not path then
      error("ddbkit: cannot find " .. what .. " " .. spec .. " (a module name on package.path "
            .. "or in scripts/, or a file path)", 3)
    end
    local cerr
    chunk, cerr = loadfile(path)
    if not chunk then error("ddbkit: cannot load " .. what .. " " .. spec .. ": " .. tostring(cerr), 3) end
    chunks[spec] = chunk
  end
  local ok, mod = pcall(chunk)
  if not ok then error("ddbkit: cannot load " .. what .. " " .. spec .. ": " .. tostring(mod), 3) end
  if type(mod) ~= "table" then error("ddbkit: " .. what .. " " .. spec .. " did not return a table", 3) end
  return mod, spec
end

-- Whether s is UTF-8 as DynamoDB reads it: no overlong forms, no UTF-16
-- surrogates, nothing above U+10FFFF (ddbkit.jsjson's check).
local is_utf8 = jsjson.is_utf8
_M.is_utf8 = is_utf8

-- A prefix is followed by a key part of up to MAX_PART bytes, and the cache,
-- dedupe and cooldown keys are their own sort keys, which DynamoDB limits to
-- 1024 bytes (partition keys: 2048): a prefix gets the rest.
local MAX_PREFIX = 1024 - MAX_PART
_M.MAX_PREFIX = MAX_PREFIX

-- Why a policy's prefix is unusable, or nil. Never echoes a bad value
-- whole: it may be long or not text at all.
local function bad_prefix(v)
  if type(v) ~= "string" then return "a " .. type(v) end
  if v == "" then return "an empty string" end
  if #v > MAX_PREFIX then
    return "a " .. #v .. "-byte string (at most " .. MAX_PREFIX .. " bytes: with a "
           .. MAX_PART .. "-byte key part it must fit DynamoDB's 1024-byte sort key)"
  end
  if not is_utf8(v) then return "a string that is not valid UTF-8" end
  if v:find("[%z\1-\31\127]") then return "a string with control characters" end
end

-- DynamoDB's table names: 3 to 255 of letters, digits, "_", "-", ".".
local function bad_table_name(v)
  if type(v) ~= "string" then return "a " .. type(v) end
  if #v < 3 or #v > 255 or v:find("[^%w_%.%-]") then
    return "an invalid table name (3 to 255 letters, digits, _ - .)"
  end
end

--- store.policy(spec) -> a policy object with prefix(kind) and table(store, configured)
-- whose answers are checked; a bad answer is a PolicyError naming the script.
function _M.policy(spec)
  local mod, name = _M.load_script(spec, DEFAULT_POLICY, "key-prefix policy")
  if type(mod.prefix) ~= "function" then
    error("ddbkit: key-prefix policy " .. name .. " has no prefix(kind) function", 3)
  end
  local p = { name = name }
  -- Policies are pure by contract, so a good answer is kept; a failing one
  -- is asked again next time (and fails the operation each time).
  local known = {}
  function p.prefix(kind)
    local hit = known[kind]
    if hit then return hit end
    local ok, v = pcall(mod.prefix, kind)
    if not ok then
      return nil, _M.err("PolicyError", "key-prefix policy " .. name .. " failed: " .. tostring(v))
    end
    local bad = bad_prefix(v)
    if bad then
      return nil, _M.err("PolicyError", "key-prefix policy " .. name .. " returned " .. bad
        .. " for " .. tostring(kind) .. " (a non-empty UTF-8 string without control "
        .. "characters, at most " .. MAX_PREFIX .. " bytes)")
    end
    known[kind] = v
    return v
  end
  local tables = {}
  function p.table(store, configured)
    if type(mod.table_name) ~= "function" then return configured end
    local memo = tables[store]
    if memo and memo[1] == configured then return memo[2] end
    local ok, v = pcall(mod.table_name, store, configured)
    if not ok or type(v) ~= "string" or v == "" then
      return nil, _M.err("PolicyError", "key-prefix policy " .. name .. " gave no table for "
        .. store .. ": " .. (ok and (v == "" and "an empty string" or "a " .. type(v))
                                  or tostring(v)))
    end
    -- The store's own table_name is the caller's to get right; a name the
    -- policy made up is checked here, before it is sent.
    local bad = v ~= configured and bad_table_name(v)
    if bad then
      return nil, _M.err("PolicyError", "key-prefix policy " .. name .. " returned " .. bad
        .. " for " .. store)
    end
    tables[store] = { configured, v }
    return v
  end
  return p
end

--- store.key(policy, kind, part) -> "PREFIX<part>" | nil, err
function _M.key(policy, kind, part)
  local prefix, err = policy.prefix(kind)
  if not prefix then return nil, err end
  return prefix .. part
end

-- Values are stored as the JSON text of the value, as the Node package
-- does (JSON.stringify / JSON.parse); nil is the literal __UNDEFINED__.
-- ddbkit.jsjson writes and reads that text exactly as JavaScript does (see
-- its header): the bytes JSON.stringify writes ("/" and DEL unescaped,
-- String(n) numbers), [] and {} kept apart (an array reads back marked
-- with ddbkit.array, an empty unmarked table writes {}), a decoded
-- object's key order kept for its rewrite, JSON null <-> ddbkit.null
-- (lua-cjson's null is accepted when writing), on Lua 5.4 integral numbers
-- read back as integers. So a value Node wrote, read and written back by
-- ddbkit, is the same text.
_M.UNDEFINED = "__UNDEFINED__"

--- store.json_encode(v, what?) -> JSON text | nil, err (SerializationError)
-- JSON.stringify's bytes for v (ddbkit.jsjson.stringify); `what` names v
-- in the message.
function _M.json_encode(v, what)
  local s, why = jsjson.stringify(v)
  if not s then
    return nil, _M.err("SerializationError", (what or "value") .. " is not JSON-encodable: "
                       .. tostring(why))
  end
  return s
end

--- store.json_decode(s) -> ok, value: ok false when the text is not JSON
-- (JSON.parse would throw), or is nested deeper than jsjson.MAX_DEPTH.
function _M.json_decode(s)
  if type(s) ~= "string" then return false end
  local v = jsjson.decode(s)
  if v == nil then return false end
  return true, v
end

--- store.encode_value(v) -> the stored text of a value (nil: __UNDEFINED__)
function _M.encode_value(v)
  if v == nil then return _M.UNDEFINED end
  return _M.json_encode(v)
end

--- store.decode_value(s) -> ok, value: ok false when the text is not JSON.
function _M.decode_value(s)
  if s == _M.UNDEFINED then return true, nil end
  return _M.json_decode(s)
end

--- store.options(name, opts, spec): checks opts against spec = { field = checker }
-- (checker returns an error text or nil) and raises naming the field.
function _M.options(name, opts, spec)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error(name .. ": opts must be a table", 3) end
  for k, v in pairs(opts) do
    local check = spec[k]
    if not check then error(name .. ": unknown option opts." .. tostring(k), 3) end
    local want = check(v)
    if want then error(name .. ": opts." .. k .. " must be " .. want, 3) end
  end
  return opts
end

-- Checkers for store.options.
function _M.is_client(v)
  if type(v) ~= "table" or not v.core or not v.runtime then return "a ddbkit.client" end
end
function _M.is_string(v) if type(v) ~= "string" or v == "" then return "a non-empty string" end end
function _M.is_positive(v)
  if type(v) ~= "number" or v ~= v or v <= 0 then return "a positive number" end
end
function _M.is_non_negative(v)
  if type(v) ~= "number" or v ~= v or v < 0 then return "a non-negative number" end
end
function _M.is_table(v) if type(v) ~= "table" then return "a table" end end
function _M.is_any() end

--- store.seconds(ms) -> whole epoch seconds (floor), for ttl attributes.
function _M.seconds(ms) return floor(ms / 1000) end

return _M
