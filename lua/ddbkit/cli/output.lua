-- ddbkit.cli.output: what the `ddbkit` command prints, as text (the REPL's
-- pretty printer) or, with --output json, as JSON for scripts.
--
--   local o = output.new("json")        -- or "text"
--   o:value(v)                          -- one value, one line of JSON
--   o:error(e)                          -- stderr: {"code":...,"message":...}
--
-- JSON of ddbkit's decoded values (output.plain), the same everywhere:
--   string, boolean       as they are (a string must be UTF-8, as DynamoDB's)
--   number                a JSON number when the number is exact in a double
--                         (every float; an integer within +-2^53), else a
--                         string of its digits ("9007199254740993")
--   ddbkit.decimal        (a number DynamoDB holds that a double cannot) a
--                         string of its digits
--   ddbkit.binary         a string, the bytes in base64 (RFC 4648, padded)
--   ddbkit.set            an array of its elements, converted as above, sorted
--   ddbkit.null           null;  ddbkit.array, sequences: arrays;  tables: objects
--   anything else         (a function, a client) the REPL's text of it, a string
local core = require "ddbkit.core"
local jsjson = require "ddbkit.jsjson"
local pretty = require "ddbkit.pretty"

local type, next, tostring, rawget, pcall = type, next, tostring, rawget, pcall
local byte, sub, concat, sort, floor = string.byte, string.sub, table.concat, table.sort, math.floor

local _M = { _VERSION = "0.1.0" }

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- output.base64(bytes): RFC 4648 base64, padded.
function _M.base64(s)
  local out, n = {}, 0
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local d = { floor(v / 262144) % 64, floor(v / 4096) % 64, floor(v / 64) % 64, v % 64 }
    n = n + 1
    out[n] = sub(B64, d[1] + 1, d[1] + 1) .. sub(B64, d[2] + 1, d[2] + 1)
             .. (b and sub(B64, d[3] + 1, d[3] + 1) or "=") .. (c and sub(B64, d[4] + 1, d[4] + 1) or "=")
  end
  return concat(out)
end

local EXACT = 2 ^ 53

local function number(x)
  if math.type and math.type(x) == "integer" and (x > EXACT or x < -EXACT) then
    return tostring(x)
  end
  return x
end

local function before(a, b)
  if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
  return tostring(a) < tostring(b)
end

-- v as plain Lua values jsjson writes as the JSON above.
local function plain(v, depth)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if t == "number" then return number(v) end
  if t ~= "table" then return pretty.format(v) end
  if v == core.null then return v end
  if core.is_binary(v) then return _M.base64(rawget(v, "value") or "") end
  if core.is_decimal(v) then return tostring(v) end
  if depth > 100 then return "(nested too deep)" end
  local out = core.array()
  if core.is_set(v) then
    local elems = {}
    for _, x in next, v do elems[#elems + 1] = x end
    sort(elems, before)
    for i, x in ipairs(elems) do out[i] = plain(x, depth + 1) end
    return out
  end
  if core.is_array(v) then
    for i = 1, #v do out[i] = plain(v[i], depth + 1) end
    return out
  end
  if next(v) == nil then return {} end
  local n, keys = 0, 0
  for k in next, v do
    keys = keys + 1
    if type(k) == "number" and k >= 1 and k == floor(k) and k > n then n = k end
  end
  if n == keys then   -- a sequence 1..n
    for i = 1, n do out[i] = plain(v[i], depth + 1) end
    return out
  end
  local obj = {}
  for k, x in next, v do
    obj[type(k) == "string" and k or tostring(k)] = plain(x, depth + 1)
  end
  return obj
end

--- output.plain(v): v with ddbkit's wrappers replaced (see the header).
function _M.plain(v) return plain(v, 0) end

--- output.json(v) -> one line of JSON | nil, err
function _M.json(v)
  if v == nil then return "null" end
  local ok, text, err = pcall(jsjson.stringify, plain(v, 0))
  if not ok then return nil, tostring(text) end
  return text, err
end

local Output = {}
Output.__index = Output

--- output.new(format): "text" (the default) or "json"; raises on others.
function _M.new(format)
  return setmetatable({ json = format == "json" }, Output)
end

--- o:value(v): prints v on stdout, one JSON line or the REPL's text.
-- Returns true, or nil and what JSON could not write.
function Output:value(v)
  if not self.json then
    io.stdout:write(pretty.format(v), "\n")
    return true
  end
  local text, err = _M.json(v)
  if not text then return nil, err end
  io.stdout:write(text, "\n")
  io.stdout:flush()   -- NDJSON streams: each line as soon as it is known
  return true
end

--- o:rows(rows, key_of): rows of { name, value, source? } as text columns,
-- or one JSON object { name: value } (source ignored).
function Output:rows(rows)
  if self.json then
    local obj = {}
    for _, r in ipairs(rows) do obj[r[1]] = r[2] end
    return self:value(obj)
  end
  local w, vw = 0, 0
  for _, r in ipairs(rows) do
    w = math.max(w, #r[1])
    if r[3] then vw = math.max(vw, #tostring(r[2])) end
  end
  for _, r in ipairs(rows) do
    local v = tostring(r[2])
    local line = r[1] .. (" "):rep(w - #r[1] + 2) .. v
    if r[3] then line = line .. (" "):rep(vw - #v + 2) .. "(" .. r[3] .. ")" end
    io.stdout:write(pretty.escape(line), "\n")
  end
  return true
end

--- output.error_json(code, message): the JSON error line (no newline).
function _M.error_json(code, message)
  local text = jsjson.stringify({ code = tostring(code), message = tostring(message) })
  return text or '{"code":"Error","message":"(the message is not UTF-8)"}'
end

return _M
