-- ddbkit.idempotency.fast: the "fast" layout, one item per key (ddbkit-only
-- tables). Acquire is a conditional UpdateItem on the record's own item: it
-- succeeds when the item is missing, released or expired, and otherwise
-- fails with the item itself (ALL_OLD), which is either the finished record
-- (a replay: 1 request) or someone's in-progress marker (wait). Completion
-- is one UpdateItem that writes the record and ends the lease, on condition
-- that the lease is still ours. 2 requests on a first call, 1 on a replay.
--
-- The same strategy interface as ddbkit.idempotency.compat (see there).
local lock = require "ddbkit.lock"
local client_mod = require "ddbkit.client"
local errors = require "ddbkit.idempotency.errors"
local lease_end = require "ddbkit.idempotency.lease_end"

local ipairs = ipairs
local concat = table.concat
local merged = lease_end.merged

local _M = { name = "fast" }

-- What a record writes on the item, and what a release clears (its
-- expiresAt is the release's own).
local RECORD_FIELDS = { "response", "statusCode", "headers", "createdAt", "ttl" }
local RECORD = { "response", "statusCode", "headers", "createdAt", "ttl", "expiresAt" }

local function lease_of(idem, ck)
  return lock.new{ client = idem.client, table_name = idem.table_name,
                   key = { cacheKey = ck }, max_clock_skew_ms = idem.skew_ms }
end

-- Nothing to read first: the acquire's answer is the record when there is one.
function _M.lookup() return false end

function _M.acquire(idem, ck)
  local h, err = lease_of(idem, ck):acquire{ lease_ms = idem.lock_ttl_ms, with_item = true }
  if h then return h end
  if err.code == "busy" then return nil, nil, client_mod.item_of(err.item) or false end
  if err.code == "TransactionConflictException" then return nil, nil, false end
  return nil, errors.storage(err, "acquiring the lock")
end

-- The lease is on the record's own item: nobody stored one in between.
function _M.recheck() return false end

function _M.watched(ck) return ck end

-- A free or expired item is ours to take; a released one ended without a
-- record (the next fresh caller takes it).
function _M.settled(_, _, state)
  if state == "expired" or state == "free" then return "again" end
  return false
end

-- Ends the lease on the record's own item with one UpdateItem: writes the
-- record (item non-nil) or clears it (nil), on condition that the lease is
-- still ours.
function _M.finish(idem, h, ck, item)
  -- Without a record the item is released: free at once, and collected by
  -- TTL (set_released then sets expiresAt itself).
  local cond = h:owner_condition{ free = item == nil }
  local names, values = merged(cond.ExpressionAttributeNames, {}), merged(cond.ExpressionAttributeValues, {})
  local sets, removes = { cond.set_released }, { cond.remove_owner }
  for _, attr in ipairs(item and RECORD or RECORD_FIELDS) do
    local v = item and item[attr]
    names["#" .. attr] = attr
    if v ~= nil then
      sets[#sets + 1] = "#" .. attr .. " = :" .. attr
      values[":" .. attr] = v
    else
      removes[#removes + 1] = "#" .. attr
    end
  end
  local res, err = idem.client:update_item{
    TableName = idem.table_name, Key = { cacheKey = ck },
    UpdateExpression = "SET " .. concat(sets, ", ") .. " REMOVE " .. concat(removes, ", "),
    ConditionExpression = cond.ConditionExpression,
    ExpressionAttributeNames = names,
    ExpressionAttributeValues = values,
    ReturnValuesOnConditionCheckFailure = "ALL_OLD",
  }
  if res then
    h:mark_released()
    return true
  end
  if err.code == "ConditionalCheckFailedException" then
    h:mark_released()
    local old = client_mod.item_of(err.item)
    if old and old.releasedRvn == cond.rvn then return true end  -- a retry after it landed
    return nil, lease_end.lost()
  end
  return lease_end.failed(idem, h, ck, cond, err)
end

function _M.release(idem, h, ck)
  return _M.finish(idem, h, ck, nil)
end

return _M
