-- ddbkit.repl.records.idem: `:idem KEY`, the idempotency table's items of
-- cache key KEY (compat.md B, ddbkit/idempotency/record.lua): the record
-- and the Node layout's lock item "lock:"..KEY, 2 GetItems; its state
-- (none, in progress, completed, expired, released), the lease's owner
-- and the stored result.
local pretty = require "ddbkit.pretty"
local R = require "ddbkit.repl.records"

local type = type
local format = string.format
local escape = pretty.escape
local when, rows_text, value_text, number, get = R.when, R.rows_text, R.value_text, R.number, R.get

local _M = { _VERSION = "0.1.0" }

local function idem_view(s, o)
  local idem = rawget(_G, "idem")
  if type(idem) ~= "table" or type(idem.table_name) ~= "string" then
    return nil, "the idempotency store (idem) is not loaded"
  end
  local record = require "ddbkit.idempotency.record"
  local tbl = idem.table_name
  local item, err = get(s, tbl, { cacheKey = o.arg })
  if item == nil then return nil, err end
  local lock
  lock, err = get(s, tbl, { cacheKey = record.LOCK_PREFIX .. o.arg })
  if lock == nil then return nil, err end
  local now = idem.runtime.now_ms()
  local v = { key = o.arg, table = tbl }
  local rstate = record.classify(idem, item or nil, now)
  local lstate = record.classify(idem, lock or nil, now)
  -- The lease is on the record item (fast mode) or on the lock item (the
  -- Node layout, compat mode).
  local lease = (rstate == "held" and item) or (lstate == "held" and lock) or nil
  if rstate == "record" then
    v.state = "completed"
  elseif lease then
    v.state = "in progress"
  elseif rstate == "expired" or lstate == "expired" or lstate == "node_expired"
         or rstate == "node_expired" then
    v.state = "expired"
  elseif item or lock then
    v.state = "released"
  else
    v.state = "none"
  end
  if lease then
    v.owner = lease.lockOwner or "a Node adapter (no owner token)"
    v.fence = number(lease.fence)
    local e = number(lease.expiresAt)
    v.lease_expires_at_ms = e and e * 1000
    v.lock_item = lease == lock and record.LOCK_PREFIX .. o.arg or o.arg
  end
  if item and item.response ~= nil then
    v.created_at_ms = number(item.createdAt)
    local created, ttl = number(item.createdAt), number(item.ttl)
    v.expires_at_ms = created and ttl and created + ttl
    v.status_code = number(item.statusCode)
    v.headers = item.headers
    local r = item.response
    if type(r) == "table" and r["@@idempotency/error"] == true then
      v.error = { name = r.name, message = r.message }
    else
      v.response = r
    end
  end
  return v
end

local function idem_text(v, now)
  local rows = { { "key", escape(v.key) .. "  (table " .. escape(v.table) .. ")" },
                 { "state", v.state == "none" and "none (KEY is the cache key as stored: "
                   .. "idem:cache_key(key, ctx) gives it)" or v.state } }
  if v.owner then rows[#rows + 1] = { "owner", value_text(v.owner) } end
  if v.fence then rows[#rows + 1] = { "fence", value_text(v.fence) } end
  if v.lease_expires_at_ms then
    rows[#rows + 1] = { "lease ends", when(v.lease_expires_at_ms, now) }
  end
  if v.created_at_ms then rows[#rows + 1] = { "stored", when(v.created_at_ms, now) } end
  if v.expires_at_ms then rows[#rows + 1] = { "expires", when(v.expires_at_ms, now) } end
  if v.status_code then rows[#rows + 1] = { "status", value_text(v.status_code) } end
  if v.headers then rows[#rows + 1] = { "headers", value_text(v.headers) } end
  if v.error then
    rows[#rows + 1] = { "error", value_text(v.error.name) .. ": " .. value_text(v.error.message) }
  end
  local out = rows_text(rows)
  if v.response ~= nil then out = out .. "response\n" .. pretty.format(v.response) .. "\n" end
  return out
end

_M.view, _M.text = idem_view, idem_text

return _M
