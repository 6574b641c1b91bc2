-- One acquirer of adaptive_native_spec.lua, run as its own OS process:
--
--   lua adaptive_native_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS VIEW PACE_US
--
-- Calls acquire(RESOURCE, priority) of a native-layout ddbkit.adaptive in a
-- loop for RUN_MS (monotonic clock), alternating "user" and "background",
-- at most one call every PACE_US microseconds. VIEW is how this process
-- splits the limit:
--   fixed:U   a strategy table: user_reserved = U, background_max = LIMIT - U
--   busy      the default strategy with high_activity_threshold = 1,
--             max_user_scaling = 1.8, no pause, recalculated every call:
--             5 / 5 of 10 (min_user_reserved) until its first user grant,
--             then "high activity", 90% for user
--   calm      the default strategy with thresholds no process reaches:
--             "low activity", max(30%, 5) for user
-- It writes one line per grant, "G <wall_ms> <u|b>" (the wall time of the
-- monotonic read that decided it, floored), and last
-- "S <calls> <grants> <requests> <user_share> <background_share>", the
-- shares being get_status's at the end.
-- Exits 0 when done; on any failure prints why on stderr and exits 1.
local endpoint, table_name, resource, outfile = arg[1], arg[2], arg[3], arg[4]
local run_ms, limit, window_ms = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
local view, pace_us = arg[8], tonumber(arg[9] or "0")
if not (endpoint and table_name and resource and outfile and run_ms and limit and window_ms and view and pace_us) then
  io.stderr:write("usage: adaptive_native_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS VIEW PACE_US\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"

local function fail(what, err)
  io.stderr:write(string.format("adaptive_native_worker: %s: %s\n",
    what, type(err) == "table" and tostring(err.code) .. ": " .. tostring(err.message) or tostring(err)))
  os.exit(1)
end

local now_ms, mono_ms = blocking.now_ms, blocking.mono_ms
local last_wall = 0
local runtime = {
  send = blocking.send, sleep = blocking.sleep, now_ms = now_ms,
  mono_ms = function()
    last_wall = now_ms()
    return mono_ms()
  end,
}

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000, runtime = runtime,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end

local opts = { client = client, table_name = table_name, layout = "native",
               default_config = { limit = limit, window_ms = window_ms } }
local fixed = view:match("^fixed:(%d+)$")
if fixed then
  local u = tonumber(fixed)
  opts.strategy = { name = "fixed " .. u, compute = function(_, l)
    return { user_reserved = u, background_max = l - u, background_paused = false, reason = "fixed" }
  end }
elseif view == "busy" then
  opts.adaptive_config = { high_activity_threshold = 1, moderate_activity_threshold = 0.5,
    max_user_scaling = 1.8, background_pause_on_increasing_trend = false, recalculation_interval_ms = 0 }
elseif view == "calm" then
  opts.adaptive_config = { high_activity_threshold = 1e9, moderate_activity_threshold = 1e8,
    recalculation_interval_ms = 0 }
else
  fail("view", view)
end
local arl = ddbkit.adaptive.new(opts)
local out = io.open(outfile, "w") or fail("open", outfile)

local lines, calls, grants = {}, 0, 0
client:reset_stats()
local deadline = mono_ms() + run_ms
local next_at = mono_ms()
while mono_ms() < deadline do
  if pace_us > 0 then
    local t = mono_ms()
    if t < next_at then blocking.sleep(next_at - t) end
    next_at = math.max(next_at, t) + pace_us / 1000
  end
  local priority = calls % 2 == 0 and "user" or "background"
  local ok, err = arl:acquire(resource, priority)
  if ok == nil then fail("acquire", err) end
  calls = calls + 1
  if ok then
    grants = grants + 1
    lines[#lines + 1] = string.format("G %d %s", math.floor(last_wall), priority:sub(1, 1))
  end
end
local requests = client:stats().requests
local st, serr = arl:get_status(resource)
if not st then fail("get_status", serr) end
lines[#lines + 1] = string.format("S %d %d %d %d %d", calls, grants, requests,
                                  st.adaptive.user_reserved, st.adaptive.background_max)
out:write(table.concat(lines, "\n"), "\n")
out:close()
client:close()
os.exit(0)
