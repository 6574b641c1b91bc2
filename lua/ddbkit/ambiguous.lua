-- ddbkit.ambiguous: whether a failed write may nevertheless have been
-- applied by DynamoDB, the one rule the stores that own items (dedupe,
-- idempotency) use to decide that they must read their own token back
-- instead of reporting a failure (design.md, Retries).
--
-- The engine marks every answer that may hide an applied write with
-- err.ambiguous (a request sent and not answered, a timeout, a 5xx after
-- the retries were spent). Until every runtime sets it, this also counts
-- what engine/lock.c counts: any retryable failure or timeout the engine
-- gave up on. Reading back after a throttle that applied nothing costs one
-- read; trusting a 5xx that did apply leaves an orphan.
local type = type

local _M = { _VERSION = "0.1.0" }

--- ambiguous.may_have_applied(err) -> true when the write that failed with
-- err may have taken effect (read back before concluding anything).
function _M.may_have_applied(err)
  if type(err) ~= "table" then return false end
  return err.ambiguous == true or err.retryable == true or err.timeout == true
      or err.code == "Timeout" or err.code == "ConnectionError"
end

return _M
