-- ddbkit.idempotency.record: the items of the idempotency table as both
-- layouts read them. A record is the Node adapter's (cacheKey, response,
-- statusCode?, headers?, createdAt ms, ttl ms, expiresAt s); a lease adds
-- ddbkit's lock attributes (lockOwner, lockRvn, releasedRvn, ...) or is a
-- Node lock item (acquiredAt + expiresAt). Here: reading an item, dating
-- it (classify), building a record, and replaying one through a shape.
local core = require "ddbkit.core"
local client_mod = require "ddbkit.client"
local errors = require "ddbkit.idempotency.errors"

local type, pairs, ipairs, tonumber, ceil = type, pairs, ipairs, tonumber, math.ceil
local null = core.null

local _M = {}

-- The Node adapter's lock item for a cache key (compat layout; the
-- StorageAdapter's locks too).
_M.LOCK_PREFIX = "lock:"

--- record.classify(idem, item, now) -> the item's state at wall-clock time
-- now: "record" (replayable), "expired", "held" (someone's live lease),
-- "node_expired" (a Node lock whose lease ran out: its holder may still
-- run), "released", or "free" (no item).
function _M.classify(idem, item, now)
  if item == nil then return "free" end
  local exp = tonumber(item.expiresAt) or 0
  local live = exp * 1000 >= now - idem.skew_ms
  if item.lockOwner ~= nil then return live and "held" or "expired" end  -- a ddbkit lease
  -- released by ddbkit (its expiresAt is in the past, for the Node adapter
  -- and TTL; engine/lock.c)
  if item.releasedAt ~= nil then return "released" end
  if item.acquiredAt ~= nil and item.response == nil and exp > 0 then
    if live then return "held" end
    -- no owner and no releasedRvn: a Node lock item (acquiredAt + expiresAt)
    return item.releasedRvn == nil and "node_expired" or "expired"
  end
  if item.createdAt ~= nil and item.ttl ~= nil and item.response ~= nil then
    -- get refuses undatable records; a seen item (a busy lock's) that
    -- cannot be dated is not replayed.
    local created, ttl = tonumber(item.createdAt), tonumber(item.ttl)
    if not created or not ttl or now > created + ttl then return "expired" end
    return "record"
  end
  if exp == 0 then return "released" end  -- released by a ddbkit from before releasedAt
  return live and "held" or "expired"
end

--- record.fields(res) -> the stored fields of a result: response,
-- statusCode, headers.
function _M.fields(res)
  return { response = res.response, statusCode = res.statusCode, headers = res.headers }
end

--- record.item(idem, ck, fields, ttl) -> the record item for a result
-- stored now, in the Node layout.
function _M.item(idem, ck, fields, ttl)
  local now = idem.runtime.now_ms()
  local item = _M.fields(fields)
  item.cacheKey = ck
  item.createdAt = now
  item.ttl = ttl
  item.expiresAt = ceil((now + ttl) / 1000)
  return item
end

local DATED = { "createdAt", "ttl", "expiresAt" }

--- record.get(idem, key) -> the item (strongly consistent) | false (none)
-- | nil, err (a failed read, or a malformed item).
function _M.get(idem, key)
  local res, err = idem.client:get_item{ TableName = idem.table_name, Key = { cacheKey = key },
                                         ConsistentRead = true }
  if not res then return nil, err end
  local item = res.Item
  if not item then return false end
  -- What a server (or another writer) stored is read, never trusted: the
  -- dates of a record are numbers, or the record is malformed.
  for _, f in ipairs(DATED) do
    local v = item[f]
    if v ~= nil and not tonumber(v) then
      return nil, client_mod.malformed("idempotency item " .. f .. " is a " .. type(v)
                                       .. ", not a number")
    end
  end
  return item
end

-- Shapes: how a result becomes record fields and back. `plain` is execute's
-- (the result is the response); `http` is the web helper's.
_M.plain = {
  to_record = function(result) return { response = result } end,
  from_record = function(item) return item.response end,
}

_M.http = {
  -- A response without a body (a 204) is still a record: NULL, read back as "".
  to_record = function(r)
    return { response = r.body == nil and null or r.body, statusCode = r.status, headers = r.headers }
  end,
  from_record = function(item)
    local headers = {}
    for k, v in pairs(type(item.headers) == "table" and item.headers or {}) do headers[k] = v end
    return { status = tonumber(item.statusCode) or 200, headers = headers,
             body = item.response ~= null and item.response or "", replayed = true }
  end,
}

--- record.replay(item, shape) -> what the first caller got: the result in
-- the shape, or nil, err for a stored (tagged) error.
function _M.replay(item, shape)
  if errors.is_tagged(item.response) then return nil, errors.of_tagged(item.response) end
  return shape.from_record(item)
end

return _M
