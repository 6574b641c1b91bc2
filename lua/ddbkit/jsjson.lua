-- ddbkit.jsjson: JSON exactly as JavaScript reads and writes it
-- (JSON.parse / JSON.stringify), the one JS-JSON reader and writer of the
-- tree. The stores use it for values the Node packages read and write (a
-- cache value, a dedupe result), ddbkit.hash for the request hash, the
-- idempotency key for a body: all need JavaScript's bytes, not JSON in
-- general, which is why lua-cjson is not used (it escapes "/" and DEL,
-- reads [] and {} alike, forgets key order, prints %.14g numbers).
--
--   local jsjson = require "ddbkit.jsjson"
--   local v = jsjson.decode('{"b":1,"a":[]}')     -- v.a is ddbkit.array{}
--   jsjson.keys(v)                                -- { "b", "a" }
--   jsjson.stringify(v)                           -- '{"b":1,"a":[]}'
--   jsjson.restringify('{"b":1, "2":0, "a":[1.0,2e2]}')  -- '{"2":0,"b":1,"a":[1,200]}'
--
-- JSON values -> Lua (decode, JSON.parse's grammar: no comments, no
-- trailing commas, whitespace = space, tab, LF, CR):
--   object  a plain table with string keys. Its key order is remembered in
--           a weak side table (object -> list of its keys in text order;
--           a duplicate key keeps its first position and its last value,
--           as JavaScript does); jsjson.keys(t) gives it back. Kept only
--           for objects of two keys or more (fewer have one order).
--   array   a table marked with ddbkit.array (core.array's metatable),
--           empty ones too, so [] and {} stay distinct.
--   null    ddbkit.null (also inside arrays: an array never has holes).
--   number  Lua 5.4: an integer when the double JavaScript reads is
--           integral and fits (1.0, 2e2 -> 1, 200; 9007199254740993 ->
--           9007199254740992, the double JavaScript holds), else a float;
--           LuaJIT: a double.
--   string  UTF-8 bytes. The text must be valid UTF-8 (as a DynamoDB S
--           value is). A \u escape of a lone surrogate (\ud800) becomes that
--           surrogate encoded in three bytes (ED A0 80, "WTF-8"), the only
--           way a Lua string can hold it; stringify writes it back as
--           \ud800. A \uD83D\uDE00 pair becomes the 4-byte character.
-- Nesting deeper than MAX_DEPTH (1000, as lua-cjson's decoder and the
-- stores' encoder had) is refused with an error, never a C stack overflow.
--
-- Lua values -> JavaScript values (stringify):
--   string   must be valid UTF-8 (or WTF-8 surrogates, see above): bytes
--            with no JavaScript counterpart are refused (nil, err naming
--            the byte), never written as something Node would not write.
--   number   a double (a Lua 5.4 integer is converted first, as JavaScript
--            holds it), written as String(n); NaN and +-Infinity as null,
--            as JSON.stringify does.
--   boolean, ddbkit.null (and lua-cjson's null) as true/false/null.
--   table    an array when marked with ddbkit.array or when every key is
--            a positive integer (a missing index is a hole, written null
--            like undefined in an array; an array more than half holes and
--            longer than 10 is refused, as lua-cjson refused it); else an
--            object whose keys are strings or numbers (a number key is its
--            String() text). An EMPTY unmarked table is an empty OBJECT
--            {}: use ddbkit.array() for []. Object keys are written in
--            JavaScript's order: keys that are array indexes ("0" ..
--            "4294967294") first, ascending; then the others in the
--            remembered order when the table came from decode (keys added
--            since come after them), else sorted by UTF-16 code units
--            (JavaScript's default sort, what ddbkit.hash sorts by).
--   nil as a value (a top-level nil, or a function, userdata, a
--            binary/set/decimal wrapper anywhere) is refused: JSON.stringify
--            would write undefined or drop it, which stores cannot keep.
-- Two keys of one table with the same text (1 and "1") are refused.
--
-- Lua 5.4 and LuaJIT give identical bytes: numbers are formatted from
-- doubles with the shortest round-trip search below, never with %.14g.
--
-- decode runs in C (core.js_parse, bindings/core/jsparse.c) when the
-- loaded core has it: the same values, refusals and key lists as the Lua
-- decoder below, which stays the reference (jsjson_spec and the fuzz
-- target fuzz_jsjson compare the two). Measured, a 4.9 KB value of 50
-- objects: Lua 5.4 74 us in C, 354 us in Lua (lua-cjson 83 us); LuaJIT
-- 59 us in C, 177 us in Lua (lua-cjson 38 us). stringify is Lua (it
-- applies JavaScript's key order and String(n)): that value, decoded,
-- takes 220 us on Lua 5.4 and 75 us on LuaJIT (lua-cjson 165 and 59 us);
-- built in Lua (keys to sort), 280 and 117 us.
local core = require "ddbkit.core"

local type, pairs, ipairs, error, tostring, tonumber, next, getmetatable, setmetatable, pcall =
      type, pairs, ipairs, error, tostring, tonumber, next, getmetatable, setmetatable, pcall
local byte, char, format, sub, find, match, gsub =
      string.byte, string.char, string.format, string.sub, string.find, string.match, string.gsub
local concat, sort, floor, huge = table.concat, table.sort, math.floor, math.huge
local mtype, tointeger = math.type, math.tointeger   -- nil on LuaJIT
local utf8len = utf8 and utf8.len                   -- nil on LuaJIT
local unpack_bytes = table.unpack or unpack
local is_array, null = core.is_array, core.null
local ARRAY_MT = getmetatable(core.array())

-- lua-cjson's null (a light userdata) is accepted when writing, as the
-- stores always accepted it; lua-cjson itself is not needed.
local cjson_null
do
  local ok, cj = pcall(require, "cjson.safe")
  if ok and type(cj) == "table" then cjson_null = cj.null end
end

local _M = { _VERSION = "0.1.0" }

local MAX_DEPTH = 1000
_M.MAX_DEPTH = MAX_DEPTH

-- object -> its keys in text order (see the header). Weak keys: the list
-- goes with the object.
local ORDER = setmetatable({}, { __mode = "k" })

-- Errors inside the walkers are raised as this table's instances and
-- turned into nil, err at the entry points; anything else is a bug and
-- is raised again.
local Fail = {}
local function fail(msg) error(setmetatable({ msg = msg }, Fail), 0) end
local function caught(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == Fail then return nil, e.msg end
  error(e, 0)
end

-- UTF-8 ---------------------------------------------------------------

-- Whether s is UTF-8 as DynamoDB reads it: no overlong forms, nothing
-- above U+10FFFF, and no UTF-16 surrogates unless `surrogates` (WTF-8).
-- Returns true, or false and the position of the first bad byte.
local function check_utf8(s, surrogates)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c < 0x80 then
      len = 1
    elseif c >= 0xC2 and c <= 0xDF then
      len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED and not surrogates then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return false, i
    end
    for j = 1, len - 1 do
      local b = byte(s, i + j)
      if not b then return false, i end
      if j == 1 then
        if b < lo or b > hi then return false, i end
      elseif b < 0x80 or b > 0xBF then
        return false, i
      end
    end
    i = i + len
  end
  return true
end

--- jsjson.is_utf8(s) -> whether s is UTF-8 as DynamoDB reads it (no
-- surrogates, no overlong forms, nothing above U+10FFFF).
local function is_utf8(s)
  if not find(s, "[\128-\255]") then return true end
  if utf8len then return utf8len(s) ~= nil end  -- Lua 5.4's is exactly this check
  return (check_utf8(s, false))
end
_M.is_utf8 = is_utf8

local function utf8_of(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
              0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

--- jsjson.utf16_units(s) -> units, n: s as JavaScript holds it, decoded
-- the way Node decodes a UTF-8 buffer (WHATWG: each maximal invalid
-- subpart becomes U+FFFD), except that a surrogate encoded in three bytes
-- (WTF-8) is kept as that code unit.
local function utf16_units(s)
  local units, nu, i, len = {}, 0, 1, #s
  while i <= len do
    local b = byte(s, i)
    local need, cp, lower, upper = 0, 0, 0x80, 0xBF
    if b < 0x80 then
      cp = b
    elseif b >= 0xC2 and b <= 0xDF then
      need, cp = 1, b - 0xC0
    elseif b >= 0xE0 and b <= 0xEF then
      need, cp = 2, b - 0xE0
      if b == 0xE0 then lower = 0xA0 end
    elseif b >= 0xF0 and b <= 0xF4 then
      need, cp = 3, b - 0xF0
      if b == 0xF0 then lower = 0x90 elseif b == 0xF4 then upper = 0x8F end
    else
      cp, need = 0xFFFD, -1
    end
    i = i + 1
    if need > 0 then
      local got = 0
      while got < need do
        local c = byte(s, i)
        if not c or c < lower or c > upper then break end  -- c is not consumed
        cp = cp * 64 + (c - 0x80)
        lower, upper = 0x80, 0xBF
        got = got + 1
        i = i + 1
      end
      if got < need then cp = 0xFFFD end
    end
    if cp >= 0x10000 then
      cp = cp - 0x10000
      units[nu + 1] = 0xD800 + floor(cp / 0x400)
      units[nu + 2] = 0xDC00 + cp % 0x400
      nu = nu + 2
    else
      nu = nu + 1
      units[nu] = cp
    end
  end
  return units, nu
end
_M.utf16_units = utf16_units

--- jsjson.utf16_sort_key(s) -> a byte string that sorts like the UTF-16
-- code units of s (two bytes per unit, big-endian): JavaScript's default
-- sort order for strings.
local function utf16_sort_key(s)
  local units, n = utf16_units(s)
  local out = {}
  for i = 1, n do out[i] = char(floor(units[i] / 256), units[i] % 256) end
  return concat(out)
end
_M.utf16_sort_key = utf16_sort_key

-- Strings: JSON.stringify(str) ------------------------------------------

local SHORT = { [0x22] = '\\"', [0x5C] = "\\\\", [0x08] = "\\b", [0x0C] = "\\f",
                [0x0A] = "\\n", [0x0D] = "\\r", [0x09] = "\\t" }
-- The same for gsub over bytes: every byte JSON.stringify escapes (DEL
-- and "/" are not among them).
local ESC = {}
for b = 0, 0x1F do ESC[char(b)] = SHORT[b] or format("\\u%04x", b) end
ESC['"'], ESC["\\"] = '\\"', "\\\\"

-- The quoted text of the code units of a string (pairs joined, lone
-- surrogates as \udxxx).
local function quote_units(units, n)
  local out, no, i = { '"' }, 1, 1
  while i <= n do
    local u = units[i]
    local piece
    if u < 0x20 or u == 0x22 or u == 0x5C then
      piece = SHORT[u] or format("\\u%04x", u)
    elseif u >= 0xD800 and u <= 0xDBFF then
      local v = units[i + 1]
      if v and v >= 0xDC00 and v <= 0xDFFF then
        piece = utf8_of(0x10000 + (u - 0xD800) * 0x400 + (v - 0xDC00))
        i = i + 1
      else
        piece = format("\\u%04x", u)
      end
    elseif u >= 0xDC00 and u <= 0xDFFF then
      piece = format("\\u%04x", u)
    else
      piece = utf8_of(u)
    end
    no = no + 1
    out[no] = piece
    i = i + 1
  end
  out[no + 1] = '"'
  return concat(out)
end

--- jsjson.quote(s, lenient?) -> JSON.stringify(s) as UTF-8 bytes | nil, err
-- Strict (the default): s must be UTF-8, WTF-8 surrogates allowed (see
-- the header); anything else is refused. lenient: bytes are read as Node
-- reads a UTF-8 buffer (invalid ones become U+FFFD), which is what
-- ddbkit.hash needs (Node hashes the text of a Buffer-decoded string).
local function quote(s, lenient)
  -- Fast path: printable ASCII without quote or backslash is its own text.
  if not find(s, '[%z\1-\31"\\\128-\255]') then return '"' .. s .. '"' end
  if find(s, "[\128-\255]") and not is_utf8(s) then
    if not lenient then
      local ok, at = check_utf8(s, true)
      if not ok then
        return nil, format("string is not valid UTF-8 (byte %d of %d: 0x%02X)", at, #s, byte(s, at))
      end
    end
    return quote_units(utf16_units(s))  -- surrogates (WTF-8), or lenient
  end
  return '"' .. gsub(s, '[%z\1-\31"\\]', ESC) .. '"'
end
_M.quote = quote

-- Numbers: JavaScript Number::toString (ECMA-262 6.1.6.1.20) -----------

-- The decimal digit string ds plus or minus one in its last place, in
-- text (17-digit integers are not exact doubles, and LuaJIT has no others).
local function step(ds, delta)
  local t, i = { byte(ds, 1, -1) }, #ds
  while i >= 1 do
    local d = t[i] - 48 + delta
    if d >= 0 and d <= 9 then
      t[i] = 48 + d
      break
    end
    t[i] = delta > 0 and 48 or 57
    i = i - 1
  end
  if i == 0 then return delta > 0 and ("1" .. char(unpack_bytes(t))) or "" end
  return (char(unpack_bytes(t)):gsub("^0+(%d)", "%1"))
end

-- The shortest decimal digits d (no leading/trailing zeros) and exponent n
-- such that 0.d * 10^n reads back as x (x finite, > 0), as ECMA-262 picks
-- them: fewest digits, then the closest to x, a tie going to the even
-- one. For each length the correctly rounded candidate is tried, then its
-- neighbours (near a power of two the rounding interval is lopsided and a
-- neighbour can read back when the nearest does not). The rounding is
-- done here, half to even, on the first 100 significant digits of x's
-- exact value ("%.99e" is exact on glibc and on LuaJIT alike): LuaJIT's
-- "%.16e" rounds a tie up (0.20773696899414062|5 -> ...063), JavaScript
-- and glibc to even (...062).
local function shortest(x)
  local lead, frac, ex = match(format("%.99e", x), "^(%d)%.(%d+)e([-+]%d+)$")
  local all, e0 = lead .. frac, tonumber(ex)
  for p = 1, 17 do
    local digits, e = sub(all, 1, p), e0
    local nd = byte(all, p + 1) - 48
    local up = nd > 5
    if nd == 5 then up = find(all, "[1-9]", p + 2) ~= nil or (byte(digits, p) - 48) % 2 == 1 end
    if up then
      digits = step(digits, 1)
      if #digits > p then digits, e = sub(digits, 1, p), e + 1 end  -- 99|9 -> 100
    end
    if tonumber(digits .. "e" .. (e - p + 1)) == x then
      digits = gsub(digits, "0+$", "")
      if digits == "" then digits = "0" end
      return digits, e + 1
    end
    for _, cs in ipairs({ step(digits, -1), step(digits, 1) }) do
      if #cs == p and tonumber(cs .. "e" .. (e - p + 1)) == x then
        cs = gsub(cs, "0+$", "")
        return cs, e + 1
      end
    end
  end
  error("ddbkit.jsjson: no round-trip digits for " .. format("%.17g", x))
end

local TWO53 = 2 ^ 53

--- jsjson.js_number(x) -> String(x) as JavaScript writes it ("NaN",
-- "Infinity", "0" for -0, "1e+21", "1e-7", "0.30000000000000004").
local function js_number(x)
  if mtype and mtype(x) == "integer" then x = x + 0.0 end
  if x ~= x then return "NaN" end
  if x == huge then return "Infinity" end
  if x == -huge then return "-Infinity" end
  if x == 0 then return "0" end  -- also -0
  -- An integral double below 2^53 has no shorter round-trip digits than
  -- its own (its neighbours are at most 1 apart): %d is String() then.
  if x == floor(x) and x < TWO53 and x > -TWO53 then return format("%d", x) end
  local sign = ""
  if x < 0 then sign, x = "-", -x end
  local d, n
  -- Fast path: when 15 correctly rounded digits read back, they are the
  -- shortest (trailing zeros off): for a normal double, at most one
  -- decimal of 15 digits or fewer lies within half an ulp of it, and a
  -- tie at 15 digits never reads back. Subnormals have wider ulps (5e-324
  -- is "5e-324"): they take the search.
  if x >= 2.2250738585072014e-308 then
    local s15 = format("%.14e", x)
    if tonumber(s15) == x then
      local lead, frac, ex = match(s15, "^(%d)%.(%d+)e([-+]%d+)$")
      d, n = gsub(lead .. frac, "0+$", ""), tonumber(ex) + 1
    end
  end
  if not d then d, n = shortest(x) end
  local k = #d
  if k <= n and n <= 21 then
    return sign .. d .. ("0"):rep(n - k)
  elseif 0 < n and n <= 21 then
    return sign .. sub(d, 1, n) .. "." .. sub(d, n + 1)
  elseif -6 < n and n <= 0 then
    return sign .. "0." .. ("0"):rep(-n) .. d
  end
  local e = n - 1
  local es = e < 0 and ("-" .. (-e)) or ("+" .. e)
  if k == 1 then return sign .. d .. "e" .. es end
  return sign .. sub(d, 1, 1) .. "." .. sub(d, 2) .. "e" .. es
end
_M.js_number = js_number

--- jsjson.array_index(k) -> the number, when the string k is an array
-- index ("0".."4294967294", no leading zeros), which a JavaScript object
-- lists first, in numeric order; else nil.
local function array_index(k)
  local b = byte(k, 1)
  if not b or b < 48 or b > 57 then return nil end
  if k == "0" then return 0 end
  if #k > 10 or b == 48 or find(k, "%D") then return nil end
  local v = tonumber(k)
  if v <= 4294967294 then return v end
end
_M.array_index = array_index

-- decode ----------------------------------------------------------------

local parse_value

local function here(text, pos)
  if pos > #text then return "at the end of the text" end
  return format("at byte %d (%q)", pos, sub(text, pos, pos))
end

local function skip(text, pos)
  local _, e = find(text, "^[ \t\n\r]*", pos)
  return e + 1
end

local STR_SPECIAL = '[%z\1-\31"\\]'
local UNESCAPE = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
                   [110] = "\n", [114] = "\r", [116] = "\t" }

-- The string starting at the '"' at pos -> its bytes, the position after it.
local function parse_string(text, pos)
  local i = pos + 1
  local s = find(text, STR_SPECIAL, i)
  if not s then fail("unterminated string starting at byte " .. pos) end
  local c = byte(text, s)
  if c == 34 then return sub(text, i, s - 1), s + 1 end
  local parts, n = {}, 0
  while true do
    if c == 34 then
      n = n + 1
      parts[n] = sub(text, i, s - 1)
      return concat(parts), s + 1
    elseif c == 92 then
      n = n + 1
      parts[n] = sub(text, i, s - 1)
      local e = byte(text, s + 1)
      if e == 117 then  -- \uXXXX
        local hex = match(text, "^%x%x%x%x", s + 2)
        if not hex then fail("bad \\u escape " .. here(text, s)) end
        local u = tonumber(hex, 16)
        i = s + 6
        if u >= 0xD800 and u <= 0xDBFF then
          local hex2 = match(text, "^\\u(%x%x%x%x)", i)
          local u2 = hex2 and tonumber(hex2, 16)
          if u2 and u2 >= 0xDC00 and u2 <= 0xDFFF then
            u = 0x10000 + (u - 0xD800) * 0x400 + (u2 - 0xDC00)
            i = i + 6
          end
        end
        n = n + 1
        parts[n] = utf8_of(u)
      else
        local r = e and UNESCAPE[e]
        if not r then fail("bad escape " .. here(text, s + 1)) end
        n = n + 1
        parts[n] = r
        i = s + 2
      end
    else
      fail("control character in a string " .. here(text, s))
    end
    s = find(text, STR_SPECIAL, i)
    if not s then fail("unterminated string starting at byte " .. pos) end
    c = byte(text, s)
  end
end

local function parse_number(text, pos)
  -- one find for the common shape, the grammar's corners checked after
  local _, e = find(text, "^-?%d+", pos)
  if not e then fail("unexpected character " .. here(text, pos)) end
  local c = byte(text, e + 1)
  local d = byte(text, pos) == 45 and pos + 1 or pos
  if e > d and byte(text, d) == 48 then fail("leading zero in a number " .. here(text, d)) end
  if c == 46 or c == 101 or c == 69 then
    if c == 46 then
      local _, e2 = find(text, "^%.%d+", e + 1)
      if not e2 then fail("bad number " .. here(text, e + 2)) end
      e = e2
      c = byte(text, e + 1)
    end
    if c == 101 or c == 69 then
      local _, e3 = find(text, "^[eE][-+]?%d+", e + 1)
      if not e3 then fail("bad exponent " .. here(text, e + 1)) end
      e = e3
    end
  end
  local x = tonumber(sub(text, pos, e))
  if tointeger then
    -- What JavaScript holds is a double: an exact integer beyond 2^53
    -- rounds like one (Lua 5.4 reads "9007199254740993" exactly).
    if mtype(x) == "integer" then
      if x > 9007199254740992 or x < -9007199254740992 then x = tointeger(x + 0.0) or x + 0.0 end
    else
      x = tointeger(x) or x
    end
  end
  return x, e + 1
end

-- JSON whitespace bytes: checked with one table index before a find(),
-- since compact text (what JSON.stringify writes) has none.
local WS = { [32] = true, [9] = true, [10] = true, [13] = true }

local function parse_object(text, pos, depth)
  local t = {}
  pos = pos + 1
  local c = byte(text, pos)
  if WS[c] then
    pos = skip(text, pos)
    c = byte(text, pos)
  end
  if c == 125 then return t, pos + 1 end
  local first, order, n = nil, nil, 0
  while true do
    if c ~= 34 then fail("expected a string key " .. here(text, pos)) end
    local k, v
    k, pos = parse_string(text, pos)
    c = byte(text, pos)
    if WS[c] then
      pos = skip(text, pos)
      c = byte(text, pos)
    end
    if c ~= 58 then fail("expected ':' " .. here(text, pos)) end
    pos = pos + 1
    if WS[byte(text, pos)] then pos = skip(text, pos) end
    v, pos = parse_value(text, pos, depth)
    if t[k] == nil then  -- a duplicate keeps its first position
      n = n + 1
      if n == 1 then
        first = k
      elseif n == 2 then
        order = { first, k }
      else
        order[n] = k
      end
    end
    t[k] = v
    c = byte(text, pos)
    if WS[c] then
      pos = skip(text, pos)
      c = byte(text, pos)
    end
    if c == 44 then
      pos = pos + 1
      c = byte(text, pos)
      if WS[c] then
        pos = skip(text, pos)
        c = byte(text, pos)
      end
    elseif c == 125 then
      if order then ORDER[t] = order end
      return t, pos + 1
    else
      fail("expected ',' or '}' " .. here(text, pos))
    end
  end
end

local function parse_array(text, pos, depth)
  local a = setmetatable({}, ARRAY_MT)
  pos = pos + 1
  local c = byte(text, pos)
  if WS[c] then
    pos = skip(text, pos)
    c = byte(text, pos)
  end
  if c == 93 then return a, pos + 1 end
  local n = 0
  while true do
    local v
    v, pos = parse_value(text, pos, depth)
    n = n + 1
    a[n] = v
    c = byte(text, pos)
    if WS[c] then
      pos = skip(text, pos)
      c = byte(text, pos)
    end
    if c == 44 then
      pos = pos + 1
      if WS[byte(text, pos)] then pos = skip(text, pos) end
    elseif c == 93 then
      return a, pos + 1
    else
      fail("expected ',' or ']' " .. here(text, pos))
    end
  end
end

parse_value = function(text, pos, depth)
  local c = byte(text, pos)
  if c == 34 then return parse_string(text, pos) end
  if c == 123 or c == 91 then
    if depth >= MAX_DEPTH then fail("nested deeper than " .. MAX_DEPTH .. " levels") end
    if c == 123 then return parse_object(text, pos, depth + 1) end
    return parse_array(text, pos, depth + 1)
  end
  if c == 116 then
    if sub(text, pos, pos + 3) == "true" then return true, pos + 4 end
  elseif c == 102 then
    if sub(text, pos, pos + 4) == "false" then return false, pos + 5 end
  elseif c == 110 then
    if sub(text, pos, pos + 3) == "null" then return null, pos + 4 end
  elseif c then
    return parse_number(text, pos)
  end
  fail("unexpected " .. (c and "character " or "end of text ") .. here(text, pos))
end

local function decode_text(text)
  if find(text, "[\128-\255]") and not is_utf8(text) then
    local _, at = check_utf8(text, false)
    fail(format("text is not valid UTF-8 (byte %d)", at))
  end
  local v, pos = parse_value(text, skip(text, 1), 0)
  pos = skip(text, pos)
  if pos <= #text then fail("unexpected text after the value " .. here(text, pos)) end
  return v
end

local function decode_lua(text)
  return caught(pcall(decode_text, text))
end

-- core.js_parse (bindings/core/jsparse.c) is this decoder in C: the same
-- values, refusals and key lists, several times faster on Lua 5.4 (a cache
-- hit decodes its value with it). The Lua one above stays the reference
-- (tests/fuzz/fuzz_jsjson.c compares the two) and the fallback.
local js_parse = core.js_parse

--- jsjson.decode(text) -> value | nil, err
-- JSON.parse(text) in ddbkit's terms (see the header). err says what was
-- wrong and at which byte. Cost: one pass; one table per object or array,
-- plus a key list per object of two keys or more.
function _M.decode(text)
  if type(text) ~= "string" then
    error("bad argument #1 to 'decode' (string expected, got " .. type(text) .. ")", 2)
  end
  if js_parse then return js_parse(text, ORDER) end
  return decode_lua(text)
end

_M._decode_lua = decode_lua   -- the reference decoder, for the specs and the fuzz target

-- stringify -------------------------------------------------------------

local write

local function key_text(k)
  local tk = type(k)
  if tk == "string" then return k end
  if tk == "number" then return js_number(k) end
  fail("object keys must be strings or numbers, got a " .. tk)
end

-- Whether t (a table without a metatable) is an array: every key a
-- positive integer; and its length (the largest key).
local function classify(t)
  local max, count = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    if k > max then max = k end
    count = count + 1
  end
  if count == 0 then return false end
  return true, max, count
end

local function by_index(a, b) return a[1] < b[1] end

-- The keys of object t as JavaScript lists them (Object.keys): array
-- indexes ascending, then the rest in the remembered order (then any
-- added since, sorted), or all sorted by UTF-16 code units. Also returns
-- text -> value.
local function ordered_keys(t)
  -- Fast path: a decoded object with its keys unchanged and none of them
  -- an array index is written in its remembered order (the list itself is
  -- returned: callers only read it).
  local order = ORDER[t]
  if order then
    local cnt, plain = 0, true
    for k in pairs(t) do
      cnt = cnt + 1
      if type(k) ~= "string" or array_index(k) then
        plain = false
        break
      end
    end
    if plain and cnt == #order then
      for i = 1, cnt do
        if t[order[i]] == nil then
          plain = false
          break
        end
      end
      if plain then return order, t end
    end
  else
    -- Fast path: a table built in Lua whose keys are ASCII strings, none an
    -- array index: byte order is UTF-16 order; t itself maps text -> value.
    local keys, n = {}, 0
    for k in pairs(t) do
      if type(k) ~= "string" or array_index(k) or find(k, "[\128-\255]") then
        keys = nil
        break
      end
      n = n + 1
      keys[n] = k
    end
    if keys then
      sort(keys)
      return keys, t
    end
  end
  local texts, all, n = {}, {}, 0
  for k, v in pairs(t) do
    local text = key_text(k)
    if texts[text] ~= nil then fail("two keys with the text " .. quote(text, true)) end
    texts[text] = v
    n = n + 1
    all[n] = text
  end
  local idx, ni = nil, 0
  for i = 1, n do
    local ix = array_index(all[i])
    if ix then
      ni = ni + 1
      idx = idx or {}
      idx[ni] = { ix, all[i] }
    end
  end
  local out, no = {}, 0
  if idx then
    sort(idx, by_index)
    for i = 1, ni do out[i] = idx[i][2] end
    no = ni
  end
  if ni == n then return out, texts end
  local listed
  if order then
    listed = {}
    for _, k in ipairs(order) do
      if type(k) == "string" and t[k] ~= nil and not listed[k] and not array_index(k) then
        listed[k] = true
        no = no + 1
        out[no] = k
      end
    end
    if no == n then return out, texts end
  end
  local rest, nr = {}, 0
  local ascii = true
  for i = 1, n do
    local k = all[i]
    if not (listed and listed[k]) and not array_index(k) then
      nr = nr + 1
      rest[nr] = k
      if ascii and find(k, "[\128-\255]") then ascii = false end
    end
  end
  if ascii then
    sort(rest)
  else
    local sk = {}
    for i = 1, nr do sk[rest[i]] = utf16_sort_key(rest[i]) end
    sort(rest, function(a, b) return sk[a] < sk[b] end)
  end
  for i = 1, nr do out[no + i] = rest[i] end
  return out, texts
end

--- jsjson.keys(t) -> a list of the keys of object t in the order
-- JavaScript enumerates them (Object.keys) and stringify writes them:
-- array indexes ascending, then the remembered order of a decoded object
-- (see the header), then other keys sorted by UTF-16 code units. Number
-- keys are given as their String() text.
function _M.keys(t)
  if type(t) ~= "table" then
    error("bad argument #1 to 'keys' (table expected, got " .. type(t) .. ")", 2)
  end
  local keys, err = caught(pcall(ordered_keys, t))
  if not keys then return nil, err end
  local copy = {}
  for i = 1, #keys do copy[i] = keys[i] end
  return copy
end

local function write_array(v, len, out, n, depth)
  n = n + 1
  out[n] = "["
  for i = 1, len do
    if i > 1 then
      n = n + 1
      out[n] = ","
    end
    local x = v[i]
    if x == nil then
      n = n + 1
      out[n] = "null"
    else
      n = write(x, out, n, depth)
    end
  end
  n = n + 1
  out[n] = "]"
  return n
end

local function sparse(len, count)
  if len > 10 and len > 2 * count then
    fail("an array of length " .. len .. " with " .. count .. " elements (too sparse)")
  end
end

-- Object keys repeat (every element of a list of records has the same
-- ones): their quoted text '"k":' is kept for keys of up to MEMO_KEY
-- bytes, MEMO_MAX of them, then the memo starts over (bounded memory
-- whatever the keys).
local MEMO_MAX, MEMO_KEY = 512, 64
local key_memo, memo_n = {}, 0

write = function(v, out, n, depth)
  local tv = type(v)
  if tv == "string" then
    local q, err = quote(v)
    if not q then fail(err) end
    n = n + 1
    out[n] = q
  elseif tv == "number" then
    n = n + 1
    if v ~= v or v == huge or v == -huge then out[n] = "null" else out[n] = js_number(v) end
  elseif tv == "boolean" then
    n = n + 1
    out[n] = v and "true" or "false"
  elseif v == null or (cjson_null ~= nil and v == cjson_null) then
    n = n + 1
    out[n] = "null"
  elseif tv == "table" then
    if depth >= MAX_DEPTH then fail("nested deeper than " .. MAX_DEPTH .. " levels (a cycle?)") end
    local mt = getmetatable(v)
    if mt == ARRAY_MT then
      local len, count = 0, 0
      for k in pairs(v) do
        if type(k) == "number" and k >= 1 and k == floor(k) then
          count = count + 1
          if k > len then len = k end
        end
      end
      sparse(len, count)
      return write_array(v, len, out, n, depth + 1)
    elseif mt ~= nil then
      fail("a " .. tostring(mt.__name or "table with a metatable") .. " has no JSON form")
    end
    local arr, len, count = classify(v)
    if arr then
      sparse(len, count)
      return write_array(v, len, out, n, depth + 1)
    end
    if next(v) == nil then
      n = n + 1
      out[n] = "{}"
      return n
    end
    local keys, texts = ordered_keys(v)
    n = n + 1
    out[n] = "{"
    for i = 1, #keys do
      local k = keys[i]
      local q = key_memo[k]
      if not q then
        q = quote(k)
        if not q then fail("an object key is not valid UTF-8") end
        q = q .. ":"
        if #k <= MEMO_KEY then
          if memo_n >= MEMO_MAX then key_memo, memo_n = {}, 0 end
          key_memo[k], memo_n = q, memo_n + 1
        end
      end
      n = n + 1
      out[n] = i > 1 and ("," .. q) or q
      n = write(texts[k], out, n, depth + 1)
    end
    n = n + 1
    out[n] = "}"
  else
    fail("a " .. tv .. " has no JSON form")
  end
  return n
end

local function stringify_value(v)
  if v == nil then fail("nil (undefined) has no JSON text") end
  local out = {}
  local n = write(v, out, 0, 0)
  if n == 1 then return out[1] end
  return concat(out, "", 1, n)
end

--- jsjson.stringify(v) -> JSON.stringify(v)'s exact bytes | nil, err
-- See the header for how Lua values map to JavaScript ones. err names
-- what has no JSON form (a function, invalid UTF-8, a cycle...).
function _M.stringify(v)
  return caught(pcall(stringify_value, v))
end

--- jsjson.restringify(text) -> JSON.stringify(JSON.parse(text)) | nil, err
function _M.restringify(text)
  local v, err = _M.decode(text)
  if v == nil then return nil, err end
  return _M.stringify(v)
end

return _M
