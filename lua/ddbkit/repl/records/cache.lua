-- ddbkit.repl.records.cache: `:cache HASH`, the cache entry HASH
-- (compat.md A.1): its value, expiry and size (GetItem), and the tags
-- ddbkit wrote for it (a Query of gsi1 by gsi1pk; the Node package's tag
-- items have no gsi1 attributes and are found only by a Scan: not shown).
local core = require "ddbkit.core"
local pretty = require "ddbkit.pretty"
local store = require "ddbkit.store"
local R = require "ddbkit.repl.records"

local type, ipairs = type, ipairs
local format, concat, sort = string.format, table.concat, table.sort
local escape = pretty.escape
local when, rows_text, value_text, number, get, query_all, store_of =
      R.when, R.rows_text, R.value_text, R.number, R.get, R.query_all, R.store_of

local _M = { _VERSION = "0.1.0" }

local function cache_view(s, o)
  local c, serr = store_of("cache")
  if not c then return nil, serr end
  local bad = store.check_part("hash", o.arg)
  if bad then return nil, bad end
  local tbl, terr = c.policy.table("cache", c.table_name)
  if not tbl then return nil, terr end
  local cp, perr = c.policy.prefix("cache")
  if not cp then return nil, perr end
  local tp, tperr = c.policy.prefix("tag")
  if not tp then return nil, tperr end
  local pk = cp .. o.arg
  local item, err = get(s, tbl, { pk = pk, sk = pk })
  if item == nil then return nil, err end
  local tags
  tags, err = query_all(s, { TableName = tbl, IndexName = "gsi1",
    KeyConditionExpression = "gsi1pk = :k", ProjectionExpression = "pk, sk, gsi1sk",
    ExpressionAttributeValues = { [":k"] = pk } })
  if not tags then return nil, err end
  local now = c.runtime.now_ms()
  local v = { hash = o.arg, table = tbl, key = pk, found = item ~= false }
  if item then
    local ttl = number(item.ttl)
    v.ttl = ttl
    v.expires_at_ms = ttl and ttl > 0 and ttl * 1000 or nil
    v.expired = ttl ~= nil and ttl > 0 and now >= ttl * 1000
    v.created_at_ms = number(item.createdAt)
    if item.value == store.UNDEFINED then
      v.undefined = true
    elseif type(item.value) == "string" then
      local ok, value = store.json_decode(item.value)
      if ok then v.value = value else v.value_text, v.undecodable = item.value, true end
      v.size_bytes = #item.value
    end
  end
  local list = {}
  for _, t in ipairs(tags) do
    if t.sk == pk and type(t.pk) == "string" and t.pk:sub(1, #tp) == tp then
      list[#list + 1] = t.pk:sub(#tp + 1)
    end
  end
  sort(list)
  v.tags = core.array(list)
  return v
end

local function cache_text(v, now)
  local rows = { { "hash", escape(v.hash) .. "  (table " .. escape(v.table) .. ", pk = sk = "
                   .. escape(v.key) .. ")" } }
  if not v.found then
    rows[#rows + 1] = { "entry", "none" }
  else
    local state = v.expired and "expired (get treats it as missing)" or "live"
    rows[#rows + 1] = { "entry", state .. (v.size_bytes and ", " .. v.size_bytes .. " bytes of JSON" or "") }
    rows[#rows + 1] = { "expires", v.expires_at_ms and when(v.expires_at_ms, now)
                        or "never (ttl 0)" }
    if v.created_at_ms then rows[#rows + 1] = { "stored", when(v.created_at_ms, now) } end
  end
  local tags = {}
  for i, t in ipairs(v.tags) do tags[i] = escape(t) end
  rows[#rows + 1] = { "tags", #tags > 0 and concat(tags, ", ") or "none (tags a Node service "
                      .. "wrote are found only by a Scan)" }
  local out = rows_text(rows)
  if v.undefined then
    out = out .. "value\nundefined (__UNDEFINED__)\n"
  elseif v.undecodable then
    out = out .. "value (not JSON: get deletes it)\n" .. pretty.quote(v.value_text) .. "\n"
  elseif v.found then
    out = out .. "value\n" .. pretty.format(v.value) .. "\n"
  end
  return out
end

_M.view, _M.text = cache_view, cache_text

return _M
