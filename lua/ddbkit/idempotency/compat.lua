-- ddbkit.idempotency.compat: the "compat" layout, the Node middleware's
-- (compat.md B), so Node and ddbkit callers exclude each other and replay
-- each other's results. The record item is cacheKey = <cache key>; the lock
-- item is cacheKey = "lock:<cache key>", held with ddbkit's conditional
-- lock (owner and record version, renewals, fencing; the Node adapter reads
-- it as its own: expiresAt in epoch seconds, a second already past once
-- released, so Node takes it at once and DynamoDB's TTL deletes it later).
-- A first call costs 4 requests where the Node adapter pays 5:
--   GetItem record -> UpdateItem lock (acquire) -> GetItem record (someone
--   may have finished between the two) -> TransactWriteItems [ Put record,
--   release the lock if still ours ].
-- The transaction stores the record only while the lock is ours: a holder
-- whose lease ran out cannot overwrite what its successor stored. A replay
-- is 1 GetItem.
--
-- A layout is a strategy with the same small interface as
-- ddbkit.idempotency.fast (every function takes the idempotency store):
--   lookup(idem, ck)          -> record item to replay | false | nil, err  (before the lease)
--   acquire(idem, ck)         -> handle | nil, nil, item seen | false | nil, err
--   recheck(idem, h, ck)      -> record item to replay (lease given back) | false | nil, err
--   finish(idem, h, ck, item) -> true | nil, err, how   (see lease_end.failed)
--   release(idem, h, ck)      -> gives the lease back, storing nothing
--   watched(ck)               -> the key a waiter polls
--   settled(idem, ck, state)  -> after the watched item left "held" (state
--                                not "record"): "again" (take over) | a
--                                record item to replay | false (CONFLICT) | nil, err
--
-- A Node holder's lock is neither renewed nor fenced, and the Node holder
-- stores its record unconditionally: taking over from one whose handler
-- still runs gives the key two answers. So a Node lock (no lockOwner, no
-- releasedRvn) is treated as the Node middleware treats it, and no looser:
-- - a waiter that sees it expire answers CONFLICT (or replays a record the
--   holder stored), as the Node middleware's waiters do (compat.md B), and
--   never runs the handler itself;
-- - a fresh caller that finds it expired answers CONFLICT too, until it has
--   been expired for a whole lock TTL more (lock_ttl_ms, plus the skew
--   margin): then the holder is taken for dead and the lock is taken over
--   (the engine's foreign_grace_ms). The Node middleware's own fresh caller
--   takes it at once; refusing forever would block the key until TTL
--   deleted the item (days on AWS). A Node handler that runs longer than
--   twice its lock TTL can still race the one who takes over, as it races
--   another Node caller today; a mixed fleet should give both sides the
--   same lock TTL, longer than any handler runs.
local lock = require "ddbkit.lock"
local client_mod = require "ddbkit.client"
local record = require "ddbkit.idempotency.record"
local errors = require "ddbkit.idempotency.errors"
local lease_end = require "ddbkit.idempotency.lease_end"

local type = type
local LOCK_PREFIX = record.LOCK_PREFIX

local _M = { name = "compat" }

--- compat.lock_of(idem, ck) -> the ddbkit.lock on "lock:<ck>" (also the
-- StorageAdapter's locks).
function _M.lock_of(idem, ck)
  return lock.new{ client = idem.client, table_name = idem.table_name,
                   key = { cacheKey = LOCK_PREFIX .. ck }, max_clock_skew_ms = idem.skew_ms }
end

-- How long after its expiry a Node lock's holder is still taken to run (see
-- the top of this file).
local function node_grace_ms(idem)
  return idem.lock_ttl_ms
end

-- A record to replay, read now: a Node service may have stored it.
local function current_record(idem, ck)
  local rec, err = record.get(idem, ck)
  if rec == nil then return nil, err end
  if rec and record.classify(idem, rec, idem.runtime.now_ms()) == "record" then return rec end
  return false
end

function _M.lookup(idem, ck)
  return current_record(idem, ck)
end

function _M.acquire(idem, ck)
  local h, err = _M.lock_of(idem, ck):acquire{ lease_ms = idem.lock_ttl_ms,
                                                foreign_grace_ms = node_grace_ms(idem) }
  if h then return h end
  if err.code == "busy" then return nil, nil, false end
  -- The holder's storing transaction was on the item at that moment: it is
  -- as good as busy, and the next look will likely find the record.
  if err.code == "TransactionConflictException" then return nil, nil, false end
  return nil, errors.storage(err, "acquiring the lock")
end

-- Someone may have stored the record between our read and the lock.
function _M.recheck(idem, h, ck)
  local rec, err = current_record(idem, ck)
  if rec == nil or rec then h:release() end
  return rec, err
end

function _M.release(_, h)
  return h:release()
end

function _M.watched(ck)
  return LOCK_PREFIX .. ck
end

-- A lock released (or gone): the record, if the holder stored one. A
-- ddbkit lock that expired is taken over: its holder can no longer store
-- (finish is conditional on the lease). A Node lock that expired
-- ("node_expired") is not: its holder may still run and store.
function _M.settled(idem, ck, state)
  if state == "expired" then return "again" end
  return current_record(idem, ck)
end

-- Stores the record and releases the lock in one transaction that only
-- goes through while the lock is ours.
local TRANSACT_ATTEMPTS = 4

local function conflicted(err)
  if err.code == "TransactionConflictException" then return true end
  local reasons = err.cancellation_reasons
  if type(reasons) ~= "table" then return false end
  for i = 1, #reasons do
    local r = client_mod.reason_of(err, i)
    if r and r.Code == "TransactionConflict" then return true end
  end
  return false
end

function _M.finish(idem, h, ck, item)
  local cond = h:owner_condition{ free = true }
  local req = {
    TransactItems = {
      { Put = { TableName = idem.table_name, Item = item } },
      { Update = {
          TableName = idem.table_name, Key = { cacheKey = LOCK_PREFIX .. ck },
          -- released, free at once and collected by TTL (engine/lock.c)
          UpdateExpression = "SET " .. cond.set_released .. " REMOVE " .. cond.remove_owner,
          ConditionExpression = cond.ConditionExpression,
          ExpressionAttributeNames = cond.ExpressionAttributeNames,
          ExpressionAttributeValues = cond.ExpressionAttributeValues,
      } },
    },
    -- The same token on every retry: a transaction that went through and
    -- lost its answer is not applied twice, it just reports success.
    ClientRequestToken = cond.rvn,
  }
  local res, err
  for attempt = 1, TRANSACT_ATTEMPTS do
    res, err = idem.client:transact_write_items(req)
    if res or not conflicted(err) or attempt == TRANSACT_ATTEMPTS then break end
    -- Another transaction (or a waiter's acquire) touched the lock item at
    -- the same moment: nothing was applied, and the same token makes a
    -- repeat safe.
    idem.runtime.sleep(attempt * 20)
  end
  if res then
    h:mark_released()
    return true
  end
  local second = client_mod.reason_of(err, 2)
  if second and second.Code == "ConditionalCheckFailed" then
    h:mark_released()
    return nil, lease_end.lost("lock")
  end
  -- The lock item tells whether the transaction went through: it sets our
  -- releasedRvn there together with the record.
  return lease_end.failed(idem, h, LOCK_PREFIX .. ck, cond, err)
end

return _M
