-- ddbkit.pretty: Lua values as readable text, for the REPL.
--
--   print(pretty.format({ pk = "a", tags = ddbkit.set("x", "y"), n = 1 }))
--   --> { n = 1, pk = "a", tags = ddbkit.set("x", "y") }
--
-- A table goes on one line when it fits the width, else one entry per line,
-- indented; keys sorted (numbers, then strings, then the rest); strings
-- quoted; ddbkit's values (null, binary, set, decimal, array) as the
-- constructors that make them, a client as its endpoint. Output is bounded so that printing a big
-- Scan or _G stays readable: entries per table, string length, depth and
-- total lines are capped, and each cut says how much it left out.
-- Tables are walked with next(), never __pairs or __index, so printing a
-- value runs none of its code.
local core = require "ddbkit.core"
local client = require "ddbkit.client"
local is_utf8 = require("ddbkit.store").is_utf8

local type, next, tostring, tonumber, rawget, rawlen, pairs, getmetatable =
      type, next, tostring, tonumber, rawget, rawlen, pairs, getmetatable
local format, concat, sort = string.format, table.concat, table.sort
-- LuaJIT (no math.type): a whole number within 2^53 shows as an integer.
local mtype = math.type or function(x)
  if type(x) ~= "number" then return nil end
  return (x == math.floor(x) and x > -2^53 and x < 2^53) and "integer" or "float"
end

local _M = { _VERSION = "0.1.0" }

local DEFAULTS = {
  width = 100,        -- a table fits on one line within this many columns
  max_items = 100,    -- entries shown per table
  max_string = 2000,  -- bytes shown per string
  max_depth = 8,      -- nesting shown
  max_lines = 400,    -- lines of output in all
  indent = "  ",
}

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or "
          .. "repeat return then true until while"):gmatch("%a+") do
  KEYWORDS[w] = true
end
_M.KEYWORDS = KEYWORDS

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

local function escape_byte(c)
  return ESCAPES[c] or format("\\x%02x", c:byte())
end

-- Cuts s to at most n bytes without splitting a UTF-8 character.
local function cut(s, n)
  if #s <= n then return s end
  local stop = n
  while stop > 0 and (s:byte(stop + 1) or 0) >= 0x80 and (s:byte(stop + 1) or 0) < 0xC0 do
    stop = stop - 1
  end
  return s:sub(1, stop)
end

-- The one escaping of text for a terminal, under quote() and escape():
-- the bytes of `pattern` (C0 controls, DEL, and what the caller adds) as
-- \n, \t, \r or \xNN; C1 controls (U+0080..U+009F, which terminals may read
-- as escape sequences: U+009B is CSI) as \u{NN}; and, when s is not valid
-- UTF-8, every byte >= 0x80 as \xNN (a raw 0x9B is CSI to 8-bit terminals).
local function c1_escape(c) return format("\\u{%x}", c:byte()) end
local function escape_with(s, pattern)
  local body = s:gsub(pattern, escape_byte)
  if is_utf8(body) then return (body:gsub("\194([\128-\159])", c1_escape)) end
  return (body:gsub("[\128-\255]", escape_byte))
end

local ONE_LINE = "[%z\1-\31\127]"
local MULTI_LINE = "[%z\1-\8\11-\31\127]"   -- keeps \t and \n
local QUOTED = '[%z\1-\31\127"\\]'

--- pretty.escape(s, multiline?) -> tostring(s), safe to write to a terminal:
-- control characters (ESC, BEL, CR, C1, ...) escaped as above, so text from
-- a server or a stored value cannot move the cursor, retitle the window or
-- write the clipboard. multiline keeps tabs and newlines (a traceback);
-- otherwise they are escaped too, so the text stays one line.
function _M.escape(s, multiline)
  return escape_with(tostring(s), multiline and MULTI_LINE or ONE_LINE)
end

--- pretty.quote(s, max?) -> s as a double-quoted Lua string literal, escaped
-- as pretty.escape does (plus " and \), cut after max bytes with the number
-- of bytes left out.
function _M.quote(s, max)
  max = max or DEFAULTS.max_string
  local shown = cut(s, max)
  local q = '"' .. escape_with(shown, QUOTED) .. '"'
  if #shown < #s then q = q .. format("...(%d more bytes)", #s - #shown) end
  return q
end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[k]
end
_M.is_identifier = is_identifier

-- Numbers read back exactly: integers as integers, floats in the shortest
-- of %.14g..%.17g that gives the same double (tostring's %.14g would show
-- 0.1 + 0.2 as 0.3), always with a "." or an exponent so they read as floats.
local function number_text(x)
  if mtype(x) == "integer" or x ~= x or x == math.huge or x == -math.huge then
    return tostring(x)
  end
  local s
  for p = 14, 17 do
    s = format("%." .. p .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[.eEn]") then s = s .. ".0" end
  return s
end

local function function_text(f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "function<C>" end
  return format("function<%s:%d>", info.short_src, info.linedefined)
end

local function binary_text(b, max)
  local bytes = rawget(b, "value") or ""
  if bytes:find("^[\32-\126]*$") then
    return format("ddbkit.binary(%s)", _M.quote(bytes, max))
  end
  local shown = bytes:sub(1, 32):gsub(".", function(c) return format("%02x", c:byte()) end)
  return format("ddbkit.binary(%d bytes: %s%s)", #bytes, shown, #bytes > 32 and "..." or "")
end

-- Scalars and ddbkit's scalar-like values; nil for tables shown by entries.
local function scalar_text(v, o)
  local t = type(v)
  if t == "string" then return _M.quote(v, o.max_string) end
  if t == "number" then return number_text(v) end
  if t == "function" then return function_text(v) end
  if t ~= "table" then return tostring(v) end
  if v == core.null then return "ddbkit.null" end
  if core.is_binary(v) then return binary_text(v, o.max_string) end
  if core.is_decimal(v) then return format("ddbkit.decimal(%s)", _M.quote(tostring(v))) end
  if core.is_array(v) and next(v) == nil then return "ddbkit.array()" end
  -- A client is its endpoint: its fields are plumbing, and every store and
  -- lock holds one, which would repeat it all in each of them.
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__index") == client then
    return tostring(rawget(v, "core"))
  end
  if next(v) == nil then return "{}" end
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (TYPE_ORDER[ta] or 4) < (TYPE_ORDER[tb] or 4) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- Whether keys (n of them) are exactly the integers 1..n.
local function is_sequence(keys, n)
  for i = 1, n do
    local k = keys[i]
    if mtype(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- The entries of table t to show: { keys | values, open, close }. A
-- sequence (keys 1..n, nothing else) shows values only; a set shows its
-- elements sorted, inside ddbkit.set(...).
local function entries(t)
  local keys, n = {}, 0
  for k in next, t do
    n = n + 1
    keys[n] = k
  end
  if core.is_set(t) then
    sort(keys)   -- a set's keys are 1..n; its elements are what gets sorted
    local values = {}
    for i = 1, n do values[i] = rawget(t, keys[i]) end
    sort(values, key_before)
    return { values = values, open = "ddbkit.set(", close = ")" }
  end
  if is_sequence(keys, n) then return { values = t, count = n, open = "{ ", close = " }" } end
  sort(keys, key_before)
  return { keys = keys, open = "{ ", close = " }" }
end

local function key_text(k, o)
  if is_identifier(k) then return k .. " = " end
  return "[" .. (scalar_text(k, o) or tostring(k)) .. "] = "
end

local function entry_count(e)
  return e.keys and #e.keys or (e.count or #e.values)
end

-- The i-th entry of e: its prefix ("key = " or "") and its value.
local function entry(e, i, o)
  if e.keys then
    local k = e.keys[i]
    return key_text(k, o), e.table[k]
  end
  return "", e.values[i]
end

local function entries_of(t)
  local e = entries(t)
  e.table = t
  return e
end

-- One-line text of v, or nil when it would be longer than budget columns.
local function inline(v, budget, depth, path, o)
  local s = scalar_text(v, o)
  if s then return #s <= budget and s or nil end
  if path[v] then return "<cycle>" end
  if depth >= o.max_depth then return "{...}" end
  path[v] = true
  local e = entries_of(v)
  local parts, used = {}, #e.open + #e.close
  local n = entry_count(e)
  for i = 1, math.min(n, o.max_items) do
    local prefix, x = entry(e, i, o)
    local text = inline(x, budget - used - #prefix, depth + 1, path, o)
    if not text then path[v] = nil return nil end
    parts[i] = prefix .. text
    used = used + #parts[i] + 2
    if used > budget then path[v] = nil return nil end
  end
  path[v] = nil
  if n > o.max_items then parts[#parts + 1] = format("...%d more", n - o.max_items) end
  return e.open .. concat(parts, ", ") .. e.close
end

-- A long list of short scalars (numbers, ids) fills lines instead of taking
-- one line each. Returns false, adding nothing, for other lists.
local function fill(e, shown, inner, out, o)
  if e.keys then return false end
  local texts = {}
  for i = 1, shown do
    local s = scalar_text(e.values[i], o)
    if not s or #s > o.width / 4 then return false end
    texts[i] = s
  end
  local line = inner .. texts[1] .. ","
  for i = 2, shown do
    local piece = texts[i] .. ","
    if #line + 1 + #piece > o.width then
      out[#out + 1] = line
      line = inner .. piece
    else
      line = line .. " " .. piece
    end
  end
  out[#out + 1] = line
  return true
end

-- Appends v's lines to out (each starting with indent, the first with
-- prefix, the last ending with suffix); stops once out holds max_lines.
local function block(v, indent, prefix, suffix, depth, path, out, o)
  if #out >= o.max_lines then
    o.cut = true
    return
  end
  local room = o.width - #indent - #prefix - #suffix
  local one = inline(v, room, depth, path, o)
  if one then
    out[#out + 1] = indent .. prefix .. one .. suffix
    return
  end
  if type(v) ~= "table" or scalar_text(v, o) then   -- a long string: on its own line anyway
    out[#out + 1] = indent .. prefix .. (scalar_text(v, o) or tostring(v)) .. suffix
    return
  end
  local e = entries_of(v)
  path[v] = true
  out[#out + 1] = indent .. prefix .. e.open:gsub(" $", "")
  local inner, n = indent .. o.indent, entry_count(e)
  local shown = math.min(n, o.max_items)
  if not fill(e, shown, inner, out, o) then
    for i = 1, shown do
      local p, x = entry(e, i, o)
      block(x, inner, p, ",", depth + 1, path, out, o)
    end
  end
  if n > o.max_items then out[#out + 1] = inner .. format("...%d more", n - o.max_items) end
  out[#out + 1] = indent .. e.close:gsub("^ ", "") .. suffix
  path[v] = nil
end

--- pretty.format(v, opts?) -> text (no final newline). opts: width,
-- max_items, max_string, max_depth, max_lines (see DEFAULTS).
function _M.format(v, opts)
  local o = {}
  for k, d in pairs(DEFAULTS) do o[k] = opts and opts[k] or d end
  local out = {}
  o.cut = false
  block(v, "", "", "", 0, {}, out, o)
  if o.cut then out[#out + 1] = format("...(output cut at %d lines)", o.max_lines) end
  -- Strings are escaped by quote(); this catches what a __tostring said.
  return _M.escape(concat(out, "\n"), true)
end

return _M
