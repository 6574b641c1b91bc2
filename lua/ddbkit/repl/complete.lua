-- ddbkit.repl.complete: Tab completion of the REPL, showing the public API
-- only. One rule decides what is public, read from how the code is written
-- (so no list is kept here or beside the docs):
--
--   * a name starting with "_" is private (_VERSION, _M, ...);
--   * a Lua function is private when its definition is `local function f`
--     (a file's helper, perhaps exported for a sibling module) or
--     `function M.f(self, ...)` (a method written as a plain function:
--     ddbkit's convention for internals that sibling modules share, such as
--     ratelimit's init or acquire_slot);
--   * after ':' only methods are offered: functions defined with method
--     syntax, `function M:f(...)`, or as `function(self, ...)` (the
--     client's generated operations), and C functions;
--   * an object offers its own fields and its class's methods: what is
--     reached through __index (a module table) is offered as after ':',
--     so `rate_limit.` does not list ratelimit's `new` or its constants,
--     while `ddbkit.ratelimit.` (the module itself) does.
--
-- The definition is found with debug.getinfo (its file and line) and the
-- line is read from the file once. Completing never runs the values' code:
-- tables are walked with next and rawget along __index tables only.
local pretty = require "ddbkit.pretty"

local type, next, getmetatable, rawget, sort = type, next, getmetatable, rawget, table.sort
local find, sub = string.find, string.sub

local _M = { _VERSION = "0.1.0" }

local MAX_CHAIN = 32   -- __index chains can loop; completion gives up, never hangs

-- Calls fn(key, value, inherited) for the string keys of v (if a table)
-- and of each table along its metatables' __index chain (inherited true).
local function each_field(v, fn)
  local seen = {}
  for i = 1, MAX_CHAIN do
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in next, v do
        if type(k) == "string" then fn(k, x, i > 1) end
      end
    end
    local mt = getmetatable(v)
    v = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(v) ~= "table" then return end
  end
end

-- v[k] as completion sees it: raw fields along the __index tables.
local function lookup(v, k)
  local found
  each_field(v, function(name, x)
    if found == nil and name == k then found = x end
  end)
  return found
end

-- The lines of each source file read so far (false: unreadable).
local files = {}

local function source_line(path, n)
  local lines = files[path]
  if lines == nil then
    lines = false
    local f = io.open(path, "r")
    if f then
      lines = {}
      for l in f:lines() do lines[#lines + 1] = l end
      f:close()
    end
    files[path] = lines
  end
  return lines and lines[n]
end

-- "private", "method", or "function" (public, not a method), per the rule
-- in the header; functions with no source file (C, typed at the prompt)
-- are "any": fine after '.' and after ':'.
local kinds = setmetatable({}, { __mode = "k" })

local function kind_of(f)
  local k = kinds[f]
  if k then return k end
  local info = debug.getinfo(f, "S")
  local path = info.what == "Lua" and info.source:match("^@(.+)$")
  local line = path and source_line(path, info.linedefined)
  if not line then
    k = "any"
  elseif find(line, "^%s*local%s") or find(line, "function%s+[%w_.]+%.[%w_]+%s*%(%s*self%s*[,)]") then
    k = "private"
  elseif find(line, "function%s+[%w_.]+:[%w_]+%s*%(") or find(line, "function%s*%(%s*self%s*[,)]") then
    k = "method"
  else
    k = "function"
  end
  kinds[f] = k
  return k
end

--- complete.is_public(name, value, sep) -> whether `name` is offered after
-- sep ("." or ":"; nil for a global).
function _M.is_public(name, value, sep)
  if sub(name, 1, 1) == "_" or not pretty.is_identifier(name) then return false end
  if type(value) ~= "function" then return sep ~= ":" end
  local k = kind_of(value)
  if k == "private" then return false end
  return sep ~= ":" or k == "method" or k == "any"
end

local function command_candidates(word, commands)
  local out = {}
  for name in next, commands do
    if (":" .. name):sub(1, #word) == word then out[#out + 1] = ":" .. name end
  end
  return out
end

local function name_candidates(word, env)
  local out, seen = {}, {}
  local function add(name)
    if not seen[name] and name:sub(1, #word) == word then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  each_field(env, function(k, x) if _M.is_public(k, x) then add(k) end end)
  for k in next, pretty.KEYWORDS do add(k) end
  return out
end

-- "a.b.c:pa" -> the public fields of a.b.c starting with "pa" (methods
-- only after ':'), each as the whole replacement "a.b.c:part".
local function field_candidates(env, head, sep, partial)
  local v = env
  for part in (head .. "."):gmatch("(.-)%.") do
    if not pretty.is_identifier(part) then return {} end
    v = lookup(v, part)
    if v == nil then return {} end
  end
  local out, seen = {}, {}
  each_field(v, function(k, x, inherited)
    if not seen[k] and k:sub(1, #partial) == partial then
      seen[k] = true   -- the first found shadows the rest of the chain
      if _M.is_public(k, x, inherited and ":" or sep) then out[#out + 1] = head .. sep .. k end
    end
  end)
  return out
end

--- complete.candidates(word, line, env, commands) -> sorted candidates for
-- the word before the cursor: names of env (and its __index chain),
-- fields after '.', methods after ':', and ":commands" at the start.
function _M.candidates(word, line, env, commands)
  local head, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  local out
  if not head then
    out = name_candidates(word, env)
  elseif head == "" and sep == ":" and line:match("^%s*:%a*$") then
    out = command_candidates(word, commands)
  elseif head == "" then
    out = {}
  else
    out = field_candidates(env, head, sep, partial)
  end
  sort(out)
  return out
end

return _M
