-- ddbkit.repl.inspect: the REPL's views of ddbkit's own records, which no
-- DynamoDB tool understands: the commands' arguments, and each view's
-- rows or, with --output json, one JSON object on one line (for scripts:
-- `echo ':lock job --output json' | ddbkit`). Each view reads its items
-- with a few strongly consistent requests; one file each under
-- ddbkit/repl/records/ (which says what it reads and how many requests):
--
--   :lock NAME [--watch MS]   records/lock.lua
--   :limit RESOURCE           records/limit.lua
--   :idem KEY                 records/idem.lua
--   :cache HASH               records/cache.lua
local jsjson = require "ddbkit.jsjson"

local tonumber, tostring = tonumber, tostring
local format, concat = string.format, table.concat

local _M = { _VERSION = "0.1.0" }

local MAX_WATCH_MS = 600000

-- Arguments ----------------------------------------------------------------------

-- The words of args: runs of non-blanks, or "double quoted" (a name with
-- blanks; \" and \\ inside), or nil and what is wrong.
local function split(args)
  local out, i, n = {}, 1, #args
  while i <= n do
    local c = args:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == '"' then
      local buf, j = {}, i + 1
      while true do
        local d = args:sub(j, j)
        if d == "" then return nil, "unterminated quote in: " .. args end
        if d == '"' then break end
        if d == "\\" then
          j = j + 1
          d = args:sub(j, j)
        end
        buf[#buf + 1] = d
        j = j + 1
      end
      out[#out + 1] = concat(buf)
      i = j + 1
    else
      local e = args:find("%s", i) or n + 1
      out[#out + 1] = args:sub(i, e - 1)
      i = e
    end
  end
  return out
end

local USAGE = {
  lock = ":lock NAME [--watch MS] [--output json]",
  limit = ":limit RESOURCE [--output json]",
  idem = ":idem KEY [--output json]",
  cache = ":cache HASH [--output json]",
}

-- { arg = the one positional word, json = bool, watch = ms } or nil, err.
local function parse(name, args)
  local words, err = split(args)
  if not words then return nil, err end
  local o = {}
  local i = 1
  while i <= #words do
    local w = words[i]
    local flag, value = w:match("^(%-%-?[%a]+)=(.*)$")
    flag = flag or w
    if flag == "--output" or flag == "-o" then
      value = value or words[i + 1]
      if not value then return nil, "--output needs a value (json); usage: " .. USAGE[name] end
      if value ~= "json" then return nil, "--output must be json, not '" .. value .. "'" end
      o.json = true
      i = i + (w:find("=", 1, true) and 1 or 2)
    elseif flag == "--watch" and name == "lock" then
      value = value or words[i + 1]
      local ms = math.tointeger(tonumber(value))
      if not ms or ms < 0 or ms > MAX_WATCH_MS then
        return nil, "--watch must be milliseconds (0-" .. MAX_WATCH_MS .. "), not '"
                    .. tostring(value) .. "'"
      end
      o.watch = ms
      i = i + (w:find("=", 1, true) and 1 or 2)
    elseif w:match("^%-%-") then
      return nil, "unknown option " .. w .. "; usage: " .. USAGE[name]
    elseif o.arg then
      return nil, "unexpected argument '" .. w .. "'; usage: " .. USAGE[name]
    else
      o.arg = w
      i = i + 1
    end
  end
  if not o.arg or o.arg == "" then return nil, "usage: " .. USAGE[name] end
  return o
end

-- Dispatch ------------------------------------------------------------------------


--- inspect.view(s, name, args) -> the view (a table) and the options |
-- nil, err. s: the REPL's state (client, tables).
function _M.view(s, name, args)
  local o, err = parse(name, args)
  if not o then return nil, err end
  local v, verr = require("ddbkit.repl.records." .. name).view(s, o)
  if v == nil then return nil, verr end
  return v, o
end

--- inspect.run(s, name, args) -> the text to print | nil, err
function _M.run(s, name, args)
  local v, o = _M.view(s, name, args)
  if v == nil then return nil, o end
  if o.json then
    local text, err = jsjson.stringify(v)
    if not text then return nil, "the view has no JSON form: " .. tostring(err) end
    -- JSON.stringify escapes C0 controls but leaves DEL and the C1
    -- controls (U+0080-U+009F, CSI among them) as they are: escaped here,
    -- as the same JSON, so that no stored string drives the terminal.
    text = text:gsub("\127", "\\u007f"):gsub("\194([\128-\159])", function(c)
      return format("\\u%04x", c:byte())
    end)
    return text .. "\n"
  end
  return require("ddbkit.repl.records." .. name).text(v, s.client.runtime.now_ms())
end

return _M
