-- ddbkit.repl.records: what the REPL's record views (ddbkit.repl.inspect,
-- one file per view under ddbkit/repl/records/) share: strongly
-- consistent reads, the REPL's stores, and the text of times and rows.
-- Every string read from an item is printed through pretty's escaping.
local pretty = require "ddbkit.pretty"

local type, tonumber, tostring, ipairs, floor, max = type, tonumber, tostring, ipairs, math.floor, math.max
local format, concat = string.format, table.concat
local escape = pretty.escape

local _M = { _VERSION = "0.1.0" }

-- Text ---------------------------------------------------------------------------

function _M.seconds(ms)
  ms = math.abs(ms)
  if ms < 1000 then return format("%d ms", floor(ms + 0.5)) end
  if ms < 120000 then return format("%.1f s", ms / 1000) end
  if ms < 7200000 then return format("%.1f min", ms / 60000) end
  return format("%.1f h", ms / 3600000)
end

-- "in 2.7 s" / "3.1 s ago" for an epoch ms against now, with the UTC time.
function _M.when(ms, now)
  if type(ms) ~= "number" then return tostring(ms) end
  local rel = ms >= now and "in " .. _M.seconds(ms - now) or _M.seconds(now - ms) .. " ago"
  -- An item's date may be anything: os.date refuses what time_t cannot hold.
  local ok, date = pcall(os.date, "!%Y-%m-%dT%H:%M:%SZ", floor(ms / 1000))
  return rel .. " (" .. (ok and date or "not a date") .. ")"
end

-- Rows { label, text } as aligned lines.
function _M.rows_text(rows)
  local w = 0
  for _, r in ipairs(rows) do w = max(w, #r[1]) end
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = r[1] .. (" "):rep(w - #r[1] + 2) .. r[2]
  end
  return concat(out, "\n") .. "\n"
end

-- A value as one escaped line of Lua (items' strings come from anyone).
function _M.value_text(v)
  if type(v) == "string" then return escape(v) end
  return (pretty.format(v):gsub("\n%s*", " "))
end

function _M.number(v) return tonumber(v) end

-- Reads ---------------------------------------------------------------------------

function _M.get(s, tbl, key)
  local res, err = s.client:get_item{ TableName = tbl, Key = key, ConsistentRead = true }
  if not res then return nil, err end
  return res.Item or false
end

function _M.query_all(s, params)
  params.ConsistentRead = params.IndexName == nil or nil
  return s.client:query_all(params)
end

-- The REPL's store (a global that ddbkit.cli put there), or nil, err.
function _M.store_of(field)
  local v = rawget(_G, field)
  if type(v) ~= "table" or type(v.policy) ~= "table" then
    return nil, "the stores are not loaded (fix the policy script and :reload)"
  end
  return v
end

return _M
