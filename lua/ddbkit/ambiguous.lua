-- ddbkit.ambiguous: whether a failed write may nevertheless have been
-- applied by DynamoDB, the one rule the stores that own items (dedupe,
-- idempotency) use to decide that they must read their own token back
-- instead of reporting a failure (design.md, Retries).
local type = type

local _M = { _VERSION = "0.1.0" }

--- ambiguous.may_have_applied(err) -> true when the write that failed with
-- err may have taken effect (read back before concluding anything):
--   * err.ambiguous: the engine (and the OpenResty runtime, which parses
--     answers with the engine) sent a request of the call and lost its
--     answer (a timeout, a reset), or got a 5xx answer, which on a write
--     means "it may or may not have been applied".
--   * Timeout / ConnectionError without the flag: a host's own runtime that
--     does not set it; a read-back costs one request, trusting a write that
--     did apply leaves an orphan.
-- A throttle or any other 4xx was refused and applied nothing.
function _M.may_have_applied(err)
  if type(err) ~= "table" then return false end
  if err.ambiguous == true then return true end
  return err.code == "Timeout" or err.code == "ConnectionError"
end

return _M
