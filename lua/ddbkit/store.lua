-- What every store shares: options checking, key-part validation (the
-- Node package's rules and messages), the key-prefix policy, value
-- encoding, error values, and time through the client's runtime.
local core = require "ddbkit.core"
local cjson = require "cjson.safe"

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
-- surrogates, nothing above U+10FFFF. Lua 5.4's utf8.len is not in LuaJIT.
local byte = string.byte
local function is_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return false
    end
    for j = 1, len - 1 do
      local b = byte(s, i + j)
      if not b then return false end
      if j == 1 then
        if b < lo or b > hi then return false end
      elseif b < 0x80 or b > 0xBF then
        return false
      end
    end
    i = i + len
  end
  return true
end
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
-- lua-cjson does the parsing and printing; what it gets wrong for that
-- contract is corrected around it, in one place for every store:
--   ddbkit.null <-> JSON null; ddbkit.array() -> [] (lua-cjson 2.1.0 writes
--   an empty table as {}; an empty list read back is an empty table: a
--   lua-cjson limit); numbers in the shortest of %.14g..%.17g that reads
--   back to the same double, Lua 5.4 integers as integers (lua-cjson prints
--   %.14g, losing digits) and read back as integers (it makes every number
--   a float).
_M.UNDEFINED = "__UNDEFINED__"

local cjson_codec = cjson.new()   -- our own instance: settings stay ours
local json_null = cjson_codec.null
local null, is_array, uuid = core.null, core.is_array, core.uuid
local format, tonumber, next = string.format, tonumber, next
local mtype = math.type   -- nil on LuaJIT
local MAX_DEPTH = 1000

-- Numbers: the shortest %.Ng (14..17) that reads back to the same double;
-- Lua 5.4 integers as integers (lua-cjson would print them as %.14g doubles).
local function number_text(x)
  if mtype and mtype(x) == "integer" then return format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  for p = 14, 17 do
    local s = format("%." .. p .. "g", x)
    if tonumber(s) == x then return s end
  end
  return format("%.17g", x)
end

-- Copies v into what lua-cjson can encode: ddbkit.null -> JSON null, and
-- the parts lua-cjson would get wrong (empty ddbkit.array, numbers it would
-- round) replaced by placeholder strings that encode() swaps for their text.
local function prepare(v, ctx, depth)
  local t = type(v)
  if t == "number" then
    local s = number_text(v)
    if not s then return nil, "a NaN or infinite number" end
    if s == format("%.14g", v) then return v end
    ctx.n = ctx.n + 1
    ctx.subs[ctx.n] = s
    return "\0" .. ctx.token .. ":" .. ctx.n .. "\0"
  end
  if t ~= "table" then
    if t == "string" or t == "boolean" or v == json_null then return v end
    return nil, "a " .. t
  end
  if v == null then return json_null end
  if depth > MAX_DEPTH then return nil, "nested deeper than " .. MAX_DEPTH .. " levels (a cycle?)" end
  if next(v) == nil and is_array(v) then
    ctx.n = ctx.n + 1
    ctx.subs[ctx.n] = "[]"
    return "\0" .. ctx.token .. ":" .. ctx.n .. "\0"
  end
  local copy = {}
  for k, x in pairs(v) do
    local y, why = prepare(x, ctx, depth + 1)
    if why then return nil, why end
    copy[k] = y
  end
  return copy
end

--- store.json_encode(v, what?) -> JSON text | nil, err (SerializationError)
function _M.json_encode(v, what)
  if v == null then return "null" end
  local ctx = { n = 0, subs = {}, token = uuid() }
  local p, why = prepare(v, ctx, 1)
  local s, cerr
  if not why then s, cerr = cjson_codec.encode(p) end
  if not s then
    return nil, _M.err("SerializationError", (what or "value") .. " is not JSON-encodable: "
                       .. tostring(why or cerr))
  end
  if ctx.n > 0 then
    s = s:gsub('"\\u0000' .. ctx.token:gsub("%-", "%%-") .. ':(%d+)\\u0000"',
               function(i) return ctx.subs[tonumber(i)] end)
  end
  return s
end

-- What lua-cjson decoded, in ddbkit's terms: JSON null -> ddbkit.null, and
-- on Lua 5.4 integral numbers (lua-cjson 2.1.0 makes every number a float)
-- back to integers, so 42 reads back as 42, not 42.0.
local tointeger = math.tointeger
-- Only numbers, nulls and tables are touched: this runs on every cache
-- hit, and writing every field back was most of a small value's decode.
local function normalize(v)
  if v == json_null then return null end
  local t = type(v)
  if t == "number" then return tointeger and tointeger(v) or v end
  if t == "table" then
    for k, x in pairs(v) do
      local tx = type(x)
      if tx == "number" then
        local i = tointeger and tointeger(x)
        if i then v[k] = i end
      elseif tx == "table" or x == json_null then
        v[k] = normalize(x)
      end
    end
  end
  return v
end

--- store.json_decode(s) -> ok, value: ok false when the text is not JSON.
function _M.json_decode(s)
  if type(s) ~= "string" then return false end
  local v = cjson_codec.decode(s)
  if v == nil then return false end
  return true, normalize(v)
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
