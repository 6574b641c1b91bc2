-- ddbkit.idempotency.adapter: the Node StorageAdapter face of an
-- idempotency store, on its table: get / set / delete / acquire_lock /
-- release_lock / wait_for_lock (and no-op connect / disconnect). Keys are
-- cache keys; records are in the Node layout; locks are ddbkit locks on the
-- Node lock item "lock:<key>". Unlike the Node adapter's, release_lock only
-- releases a lock this adapter took.
local store = require "ddbkit.store"
local record = require "ddbkit.idempotency.record"
local errors = require "ddbkit.idempotency.errors"
local compat = require "ddbkit.idempotency.compat"

local type, error, setmetatable, tonumber, ceil = type, error, setmetatable, tonumber, math.ceil

local _M = {}
local mt = { __index = _M }

local NAME = "ddbkit.idempotency"

--- adapter.new(idem) -> the StorageAdapter of the idempotency store idem.
function _M.new(idem)
  return setmetatable({ idem = idem, held = {} }, mt)
end

function _M.connect() return true end
function _M.disconnect() return true end

--- adapter:get(key) -> record { response, statusCode?, headers?, createdAt, ttl } | nil | nil, err
-- An expired record reads as missing and is deleted, as the Node adapter does.
function _M:get(key)
  local idem = self.idem
  local item, err = record.get(idem, key)
  if item == nil then return nil, errors.storage(err, "reading the record") end
  if not item then return nil end
  if idem.runtime.now_ms() > (tonumber(item.createdAt) or 0) + (tonumber(item.ttl) or 0) then
    idem.client:delete_item{ TableName = idem.table_name, Key = { cacheKey = key } }
    return nil
  end
  return { response = item.response, statusCode = item.statusCode, headers = item.headers,
           createdAt = item.createdAt, ttl = item.ttl }
end

--- adapter:set(key, record) -> true | nil, err
function _M:set(key, rec)
  if type(rec) ~= "table" then error(NAME .. ": adapter:set takes a record table", 2) end
  local idem = self.idem
  local item = record.fields(rec)
  item.cacheKey = key
  item.createdAt = rec.createdAt or idem.runtime.now_ms()
  item.ttl = rec.ttl or idem.ttl_ms
  item.expiresAt = ceil((item.createdAt + item.ttl) / 1000)
  local ok, err = idem.client:put_item{ TableName = idem.table_name, Item = item }
  if not ok then
    if errors.refused_value(err) then return nil, errors.serialization(err) end
    return nil, errors.storage(err, "storing the record")
  end
  return true
end

--- adapter:delete(key) -> true | nil, err
function _M:delete(key)
  local idem = self.idem
  local ok, err = idem.client:delete_item{ TableName = idem.table_name, Key = { cacheKey = key } }
  if not ok then return nil, errors.storage(err, "deleting the record") end
  return true
end

--- adapter:acquire_lock(key, ttl_ms) -> true | false | nil, err
function _M:acquire_lock(key, ttl_ms)
  local idem = self.idem
  local h, err = compat.lock_of(idem, key):acquire{ lease_ms = ttl_ms or idem.lock_ttl_ms }
  if h then
    self.held[key] = h
    return true
  end
  if err.code == "busy" then return false end
  return nil, errors.storage(err, "acquiring the lock")
end

--- adapter:release_lock(key) -> true | nil, err (code "not_owner" when this
-- adapter does not hold it: another holder's lock is never touched)
function _M:release_lock(key)
  local h = self.held[key]
  if not h then return nil, store.err("not_owner", "this adapter does not hold the lock on " .. key) end
  local ok, err = h:release()
  -- Forgotten once it is released or not ours any more; after a transient
  -- failure the adapter still holds it, and a retry can release it.
  if ok or err.code == "not_owner" then self.held[key] = nil end
  if not ok and err.code ~= "not_owner" then return nil, errors.storage(err, "releasing the lock") end
  return ok, err
end

--- adapter:wait_for_lock(key, timeout_ms, poll_ms) -> true | nil, err (LOCK_TIMEOUT)
function _M:wait_for_lock(key, timeout_ms, poll_ms)
  local idem = self.idem
  local deadline = idem.runtime.mono_ms() + (timeout_ms or idem.lock_timeout_ms)
  while true do
    local item, err = record.get(idem, record.LOCK_PREFIX .. key)
    if item == nil then return nil, errors.storage(err, "waiting for the lock") end
    if record.classify(idem, item or nil, idem.runtime.now_ms()) ~= "held" then return true end
    if idem.runtime.mono_ms() >= deadline then
      return nil, errors.fail("LOCK_TIMEOUT", "timed out waiting for the lock on " .. key)
    end
    idem.runtime.sleep(poll_ms or idem.poll_ms)
  end
end

return _M
