-- The rate-limit layouts side by side in `make bench` (issue 15): the Node
-- layout and the native layout of ddbkit.ratelimit on ONE resource, 8 OS
-- processes (bench_ratelimit_worker.lua) asking as fast as they can, through
-- the fault proxy's partition simulator (1,000 WCU/s, 3,000 RCU/s per
-- partition key). run.sh starts the servers and the workers; this file
-- prepares the table and turns a row's worker files into one RESULT line.
--
--   bench_ratelimit_layouts.lua setup ENDPOINT TABLE
--     creates TABLE with the store schema unless it exists (ENDPOINT: DynamoDB
--     Local itself, not the proxy).
--
--   bench_ratelimit_layouts.lua analyze KIND LAYOUT LIMIT WINDOW_MS SIM FILE...
--     KIND "procs" (a row of several processes) or "cpu" (one process,
--     reported for its CPU). SIM: "wcu rcu throttled requests", the
--     simulator's totals for the row (its counters were zeroed before it).
--     FILE: the workers' output files. Prints
--       RESULT bench=rl-layouts kind=K layout=L limit=N window_ms=W procs=P
--         elapsed_s decisions grants refusals errors decisions_per_s
--         grants_per_s req_per_decision zero_req_pct min_proc_decisions_per_s
--         wcu_per_grant throttled sim_requests windows_over max_in_window
--         utilisation req_per_refusal cpu_us_per_decision waiting_pct err_codes
--     Exit status 1 when a file is missing or malformed; a window over the
--     limit is reported, not an error here (run.sh fails the run on it).
--
-- Definitions (the README's method section says why):
--   elapsed        from the earliest worker's first call to the latest
--                  worker's last return (wall clock, one machine)
--   windows_over   for every grant, the half-open window [t, t + WINDOW_MS)
--                  starting at its timestamp: how many hold more than LIMIT
--                  grants (of all processes). A window holding the most
--                  grants always starts at a grant, so this checks every
--                  sliding window; max_in_window is that most.
--   utilisation    grants / (LIMIT x elapsed / WINDOW_MS)
--   requests       every HTTP attempt the workers sent (retries included)
--   waiting_pct    the share of the processes' time (procs x elapsed)
--                  spent inside calls that sent a request
local cmd = arg[1]

local function die(fmt, ...)
  io.stderr:write("bench_ratelimit_layouts: " .. fmt:format(...) .. "\n")
  os.exit(1)
end

if cmd == "setup" then
  local ddbkit = require "ddbkit"
  local schema = require "ddbkit.schema"
  local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
  local endpoint, tname = arg[2], arg[3]
  if not (endpoint and tname) then die("usage: setup ENDPOINT TABLE") end
  local c = common.client(endpoint)
  local _, derr = c:describe_table{ TableName = tname }
  if derr and derr.code == "ResourceNotFoundException" then
    local ok, cerr = c:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, tname))
    if not ok then die("create_table %s: %s", tname, tostring(cerr)) end
    local desc, werr = c:wait_for_table(tname, 30000)
    if not desc then die("wait_for_table %s: %s", tname, tostring(werr)) end
  elseif derr then
    die("describe_table %s: %s", tname, tostring(derr))
  end
  c:close()
  os.exit(0)
end

if cmd ~= "analyze" then
  io.stderr:write("usage: bench_ratelimit_layouts.lua setup ENDPOINT TABLE\n"
    .. "       bench_ratelimit_layouts.lua analyze procs|cpu LAYOUT LIMIT WINDOW_MS 'WCU RCU THROTTLED REQUESTS' FILE...\n")
  os.exit(2)
end

local kind, layout, limit, window_ms, sim = arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6]
if not (kind and layout and limit and window_ms and sim and arg[7]) then die("analyze: missing arguments") end
local wcu, rcu, throttled, sim_requests = sim:match("^(%S+) (%S+) (%S+) (%S+)$")
wcu, rcu, throttled, sim_requests = tonumber(wcu), tonumber(rcu), tonumber(throttled), tonumber(sim_requests)
if not (wcu and rcu and throttled and sim_requests) then die("analyze: bad simulator totals '%s'", sim) end

local ts = {}
local T = { decisions = 0, grants = 0, refusals = 0, errors = 0, req_grants = 0, req_refusals = 0,
            zero_req = 0, cpu_s = 0, requests_sent = 0, req_call_ms = 0 }
local first, last, min_rate = math.huge, -math.huge, math.huge
local codes = {}
local files = 0
for i = 7, #arg do
  local f = io.open(arg[i]) or die("cannot read %s", arg[i])
  local S
  for line in f:lines() do
    local g = line:match("^G (%d+)$")
    if g then
      ts[#ts + 1] = tonumber(g)
    elseif line:sub(1, 2) == "S " then
      S = {}
      for k, v in line:gmatch("([%w_]+)=(%S+)") do S[k] = v end
    end
  end
  f:close()
  if not (S and tonumber(S.decisions) and tonumber(S.first_ms) and tonumber(S.last_ms)) then
    die("%s: no summary line", arg[i])
  end
  for k in pairs(T) do T[k] = T[k] + tonumber(S[k]) end
  local f0, l0 = tonumber(S.first_ms), tonumber(S.last_ms)
  if f0 < first then first = f0 end
  if l0 > last then last = l0 end
  local rate = tonumber(S.decisions) / math.max(1e-3, (l0 - f0) / 1000)
  if rate < min_rate then min_rate = rate end
  if S.err_codes ~= "-" then
    for code, n in S.err_codes:gmatch("([^,:]+):(%d+)") do codes[code] = (codes[code] or 0) + tonumber(n) end
  end
  files = files + 1
end
if #ts ~= T.grants then die("%d grant lines for %d grants", #ts, T.grants) end

-- Every sliding window: the one starting at each grant (two pointers).
table.sort(ts)
local over, most, j = 0, 0, 1
for i = 1, #ts do
  if j < i then j = i end
  while j <= #ts and ts[j] < ts[i] + window_ms do j = j + 1 end
  local n = j - i
  if n > limit then over = over + 1 end
  if n > most then most = n end
end

local elapsed = math.max(1e-3, (last - first) / 1000)
local calls = T.decisions + T.errors
local ct = {}
for k, v in pairs(codes) do ct[#ct + 1] = k .. ":" .. v end
table.sort(ct)
local function ratio(a, b, fmt) return b > 0 and (fmt or "%.3f"):format(a / b) or "n/a" end

print(("RESULT bench=rl-layouts kind=%s layout=%s limit=%d window_ms=%d procs=%d elapsed_s=%.3f decisions=%d "
  .. "grants=%d refusals=%d errors=%d decisions_per_s=%.0f grants_per_s=%.0f req_per_decision=%s "
  .. "zero_req_pct=%s min_proc_decisions_per_s=%.0f wcu_per_grant=%s rcu_per_decision=%s throttled=%d "
  .. "sim_requests=%d requests=%d windows_over=%d max_in_window=%d utilisation=%.3f req_per_refusal=%s "
  .. "cpu_us_per_decision=%s waiting_pct=%.1f err_codes=%s")
  :format(kind, layout, limit, window_ms, files, elapsed, T.decisions, T.grants, T.refusals, T.errors,
          T.decisions / elapsed, T.grants / elapsed, ratio(T.requests_sent, calls),
          ratio(100 * T.zero_req, T.decisions, "%.2f"), min_rate, ratio(wcu, T.grants, "%.4f"),
          ratio(rcu, calls), throttled, sim_requests, T.requests_sent, over, most,
          T.grants / (limit * elapsed * 1000 / window_ms), ratio(T.req_refusals, T.refusals),
          ratio(T.cpu_s * 1e6, calls, "%.1f"), 100 * T.req_call_ms / (files * elapsed * 1000), #ct > 0 and table.concat(ct, ",") or "-"))
