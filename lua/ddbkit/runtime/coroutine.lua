-- The coroutine runtime: calls run on the engine's event loop and sleeps are
-- timers, both yielding the calling ddbkit task (ddbkit.spawn) while other
-- tasks go on; the default scheduler of the Lua state (ddbkit.scheduler)
-- resumes it from ddbkit.step. Every store runs unchanged on a client made
-- with `runtime = require "ddbkit.runtime.coroutine"`, inside tasks:
--
--   local client = ddbkit.client{ runtime = require "ddbkit.runtime.coroutine" }
--   local cache = ddbkit.cache.new{ client = client }
--   ddbkit.spawn(function() cache:set("h", { body = "x" }, 60) end)
--   ddbkit.spawn(function() print(client:get_item{ ... }) end)
--   while ddbkit.step(100) > 0 do end
--
-- A call or sleep outside a task raises (it would block every task).
local core = require "ddbkit.core"
local scheduler = require "ddbkit.scheduler"

local _M = { _VERSION = "0.1.0", name = "coroutine" }

-- send(core_client, op, params) -> result | nil, err, in a task.
_M.send = scheduler.send

-- call_raw(core_client, op, json) -> body | nil, err, err_body, in a task
-- (the lock machine's calls).
_M.call_raw = scheduler.call_raw

_M.sleep = scheduler.sleep  -- sleep(ms): a timer of the scheduler, in a task
_M.now_ms = core.now_ms     -- wall clock, epoch milliseconds
_M.mono_ms = core.mono_ms   -- monotonic milliseconds

-- spawn(fn, ...) -> task (task:cancel()): what keepers run in.
_M.spawn = scheduler.spawn

return _M
