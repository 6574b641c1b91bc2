-- ddbkit.idempotency.lease_end: how both layouts end a lease with their
-- final write (the record stored, or the lease given back), and what they
-- conclude when that write fails: a failure that may hide an applied write
-- (ddbkit.ambiguous) is resolved by reading the item back (design.md,
-- Retries), never by guessing.
local record = require "ddbkit.idempotency.record"
local errors = require "ddbkit.idempotency.errors"
local may_have_applied = require("ddbkit.ambiguous").may_have_applied

local pairs, tostring = pairs, tostring

local _M = {}

--- lease_end.merged(a, b) -> a new table with a's fields, then b's.
function _M.merged(a, b)
  local t = {}
  for k, v in pairs(a) do t[k] = v end
  for k, v in pairs(b) do t[k] = v end
  return t
end

-- The item the final write ended the lease on says what happened:
-- "applied" (releasedRvn is our record version: only our write sets it),
-- "held" (our lease is still on it: the write did not apply), "taken"
-- (someone else's now), or nil, err when the read fails too or the item
-- cannot tell: a released lock item may be gone (deleted by TTL, or by a
-- Node holder that took it and released) or be a Node holder's (its Put
-- replaced the item whole, releasedRvn included), after our write as well
-- as instead of it.
local function read_back(idem, key, cond)
  local item, err = record.get(idem, key)
  if item == nil then return nil, err end
  if item == false then return nil, "the item is gone: whether the write applied is unknown" end
  if item and item.releasedRvn == cond.rvn then return "applied" end
  if item and item.lockOwner == cond.ExpressionAttributeValues[":ddbkit_o"]
     and item.lockRvn == cond.rvn then
    return "held"
  end
  if item.lockOwner == nil and item.releasedRvn == nil then
    return nil, "a Node lock replaced the item: whether the write applied is unknown"
  end
  return "taken"
end

--- lease_end.failed(idem, h, key, cond, err) -> how a final write on item
-- `key` under the owner condition `cond` ends when it failed with err (not
-- a condition failure: the layout reads those itself). Returns true (it
-- did apply), or nil, err, how: how "refused" (the value: nothing applied),
-- "not_applied" (nothing applied and the lease still ours: the caller gives
-- it back so nobody waits it out), or nil (LOST; or unknown, the read-back
-- failed too: err.ambiguous, and the lease is left to expire).
function _M.failed(idem, h, key, cond, err)
  if errors.refused_value(err) then return nil, err, "refused" end
  if not may_have_applied(err) then
    return nil, errors.storage(err, "storing the result"), "not_applied"
  end
  local state, rerr = read_back(idem, key, cond)
  if state == "applied" then
    h:mark_released()
    return true
  elseif state == "held" then
    return nil, errors.storage(err, "storing the result"), "not_applied"
  elseif state == "taken" then
    h:mark_released()
    return nil, _M.lost()
  end
  local e = errors.storage(err, "storing the result (and reading it back: " .. tostring(rerr) .. ")")
  e.ambiguous = true
  return nil, e
end

--- lease_end.lost(what?) -> the LOST error of a final write whose
-- condition found the lease (or "lock") taken over.
function _M.lost(what)
  return errors.fail("LOST", "the " .. (what or "lease") .. " was taken over before the result was "
                     .. "stored; not stored")
end

return _M
