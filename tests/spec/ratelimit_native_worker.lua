-- One acquirer of ratelimit_native_spec.lua (and of
-- tests/bench/bench_ratelimit_native.lua), run as its own OS process:
--
--   lua ratelimit_native_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS [PACE_US]
--
-- Calls acquire(RESOURCE) of a native-layout ddbkit.ratelimit in a loop for
-- RUN_MS (monotonic clock), demand as fast as it can (PACE_US > 0: one call
-- every PACE_US microseconds at most, through the runtime's sleep), and
-- writes to OUTFILE one line per grant:
--   "G <wall_ms>"   the wall-clock time of the monotonic read that decided
--                   the grant (the last mono_ms the store read in that call:
--                   the lease check, or, for a grant from a new lease, the
--                   read after its write), floored to ms
-- and, last, "S <calls> <grants> <calls_with_no_request> <requests> <throttled>
-- <cpu_us> <first_wall_ms> <last_wall_ms> <mean_request_latency_us>"; requests are HTTP attempts
-- (client:stats()), calls_with_no_request counts calls during which the
-- runtime sent nothing, cpu_us is os.clock() over the loop.
-- Exits 0 when done; on any failure prints why on stderr and exits 1.
local endpoint, table_name, resource, outfile = arg[1], arg[2], arg[3], arg[4]
local run_ms, limit, window_ms = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
local pace_us = tonumber(arg[8] or "0")
if not (endpoint and table_name and resource and outfile and run_ms and limit and window_ms and pace_us) then
  io.stderr:write("usage: ratelimit_native_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS [PACE_US]\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"

local function fail(what, err)
  io.stderr:write(string.format("ratelimit_native_worker: %s: %s\n",
    what, type(err) == "table" and tostring(err.code) .. ": " .. tostring(err.message) or tostring(err)))
  os.exit(1)
end

local now_ms, mono_ms = blocking.now_ms, blocking.mono_ms
local last_wall, sends = 0, 0
local runtime = {
  send = function(...) sends = sends + 1; return blocking.send(...) end,
  sleep = blocking.sleep, now_ms = now_ms,
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
local rl = ddbkit.ratelimit.new{ client = client, table_name = table_name, layout = "native",
                                 default_config = { limit = limit, window_ms = window_ms } }
local out = io.open(outfile, "w") or fail("open", outfile)

local lines, calls, grants, quiet = {}, 0, 0, 0
client:reset_stats()
local first = now_ms()
local deadline = mono_ms() + run_ms
local cpu0 = os.clock()
local next_at = mono_ms()
while mono_ms() < deadline do
  if pace_us > 0 then
    local t = mono_ms()
    if t < next_at then blocking.sleep(next_at - t) end
    next_at = math.max(next_at, t) + pace_us / 1000
  end
  local before = sends
  local ok, err = rl:acquire(resource)
  if ok == nil then fail("acquire", err) end
  calls = calls + 1
  if sends == before then quiet = quiet + 1 end
  if ok then
    grants = grants + 1
    lines[#lines + 1] = string.format("G %d", math.floor(last_wall))
  end
end
local cpu_us = (os.clock() - cpu0) * 1e6
local st = client:stats()
local throttled = 0
for code, n in pairs(st.error_codes or {}) do
  if code:find("Throughput") or code:find("Throttl") then throttled = throttled + n end
end
lines[#lines + 1] = string.format("S %d %d %d %d %d %.0f %.0f %.0f %.0f", calls, grants, quiet, st.requests,
                                  throttled, cpu_us, first, now_ms(), st.latency_us and st.latency_us.mean or 0)
out:write(table.concat(lines, "\n"), "\n")
out:close()
client:close()
os.exit(0)
