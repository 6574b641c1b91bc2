-- The blocking runtime: the engine does the whole call (libcurl keep-alive
-- pool, retries with nanosleep backoff). For the REPL, scripts and hosts
-- that may block. Every store does its I/O, sleeps and clock reads through
-- a runtime object of this shape, so the same store code runs elsewhere.
local core = require "ddbkit.core"

local _M = { _VERSION = "0.1.0", name = "blocking" }

-- send(core_client, op, params) -> result | nil, err: the engine's own call.
_M.send = core.call

-- call_raw(core_client, op, json) -> body | nil, err, err_body: the same
-- call with a JSON body and the response body as is (the lock machine).
_M.call_raw = core.call_raw

_M.sleep = core.sleep_ms   -- sleep(ms)
_M.now_ms = core.now_ms    -- wall clock, epoch milliseconds (TTLs, stored times)
_M.mono_ms = core.mono_ms  -- monotonic milliseconds (intervals, waits)

-- keep_lease(core_client, lock, period_ms) -> keeper (keeper:stop()) | nil, err:
-- renews a lock while the caller's own code blocks, on an engine thread
-- with its own connection.
_M.keep_lease = core.lock_keep

return _M
