-- The native rate-limit layout's own figures (the side-by-side Node/native
-- benchmark of `make bench` is separate):
--
--   lua5.4|luajit tests/bench/bench_ratelimit_native.lua ENDPOINT [PROXY_URL] [RUN_MS]
--
-- (LUA_PATH/LUA_CPATH as for the specs: lua/, tests/spec/, the matching
-- build/{lua54,luajit}/core.so.) Creates a table, then:
-- * steady: 4 processes at 200 decisions/s each, a limit of 10,000 per
--   1000 ms (demand below it): the share of decisions with no request;
-- * local: one process, a limit of 1,000,000 per 60 s, 1,000,000 acquires
--   in a loop: CPU us per decision (os.clock) and requests;
-- * for limits 10, 1,000 and 1,000,000 per 1000 ms: 8 worker processes
--   (tests/spec/ratelimit_native_worker.lua), each calling acquire every
--   PACE us (demand above the limit; as fast as it can for 1,000,000, for
--   1.5 s only) for RUN_MS (default 5000): grants, utilisation (grants / (limit x span /
--   window)), decisions/s, requests per decision, % decisions with no
--   request, throttled requests, CPU us per decision, windows over the
--   limit (every sliding window of the grants' wall-clock times checked);
-- * with PROXY_URL, the limit 1,000 and 1,000,000 cases again through the
--   fault proxy with its partition simulator on (1,000 WCU / 3,000 RCU per
--   partition, real-time refill): throttled requests as DynamoDB would
--   answer them, decisions/s on one hot resource.
-- CPU us per decision of the paced cases includes the pacing's sleeps; the
-- "local" case is the decision alone.
-- Prints one line per case.
local endpoint, proxy, run_ms = arg[1], arg[2], tonumber(arg[3] or "5000")
if not endpoint then
  io.stderr:write("usage: bench_ratelimit_native.lua ENDPOINT [PROXY_URL] [RUN_MS]\n")
  os.exit(2)
end
if proxy == "" or proxy == "-" then proxy = nil end

local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local creds = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" }
local function client(ep) return assert(ddbkit.client{ region = "us-east-1", endpoint = ep, credentials = creds }) end

local admin = client(endpoint)
local T = string.format("bench-rln-%d-%d", os.time(), math.random(1, 1e6))
assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
assert(admin:wait_for_table(T, 30000))

local lua = arg[-1]
local here = arg[0]:match("^(.*)/") or "."
local worker = here .. "/../spec/ratelimit_native_worker.lua"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function control(method, path, body)
  local cmd = string.format("env -u LD_PRELOAD curl -s -m 10 -X %s %s/__proxy/partitions%s", method, proxy, path)
  if body then cmd = cmd .. " -d " .. q(body) end
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

-- local decision cost
do
  local c = client(endpoint)
  local rl = ddbkit.ratelimit.new{ client = c, table_name = T, layout = "native",
                                   default_config = { limit = 1000000, window_ms = 60000 } }
  assert(rl:acquire("local"))
  c:reset_stats()
  local n, grants = 1000000, 0
  local t0 = os.clock()
  for _ = 1, n do if rl:acquire("local") then grants = grants + 1 end end
  local cpu = os.clock() - t0
  print(string.format("RESULT case=local decisions=%d grants=%d requests=%d cpu_us_per_decision=%.3f",
                      n, grants, c:stats().requests, cpu * 1e6 / n))
  c:close()
end

local function case(name, ep, limit, window_ms, procs, pace_us, ms)
  local res = name .. "-" .. limit
  local pipes = {}
  for i = 1, procs do
    local out = string.format("%s/%s-%d.txt", dir, res, i)
    local cmd = table.concat({ "timeout 120", lua, q(worker), q(ep), q(T), q(res), q(out), tostring(ms or run_ms),
                               tostring(limit), tostring(window_ms), tostring(pace_us) }, " ")
    pipes[i] = { out = out, p = assert(io.popen(cmd .. " 2>&1; echo EXIT:$?")) }
  end
  local grants, calls, quiet, requests, throttled, cpu, first, last = {}, 0, 0, 0, 0, 0, math.huge, -math.huge
  for i, w in ipairs(pipes) do
    local log = w.p:read("*a")
    w.p:close()
    assert(log:match("EXIT:0"), "worker " .. i .. ": " .. log)
    for line in io.lines(w.out) do
      local g = line:match("^G (%d+)$")
      if g then grants[#grants + 1] = tonumber(g)
      else
        local s = { line:match("^S (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$") }
        calls, quiet = calls + s[1], quiet + s[3]
        requests, throttled, cpu = requests + s[4], throttled + s[5], cpu + s[6]
        first, last = math.min(first, tonumber(s[7])), math.max(last, tonumber(s[8]))
      end
    end
  end
  table.sort(grants)
  local over = 0
  for i = 1, #grants - limit do
    if grants[i + limit] - grants[i] < window_ms then over = over + 1 end
  end
  local span = last - first
  local possible = limit * span / window_ms
  print(string.format("RESULT case=%s limit=%d window_ms=%d procs=%d grants=%d utilisation=%.1f%% "
    .. "decisions_per_s=%.0f granted_per_s=%.0f requests_per_decision=%.4f no_request=%.1f%% "
    .. "throttled=%d cpu_us_per_decision=%.2f windows_over_limit=%d",
    name, limit, window_ms, procs, #grants, 100 * math.min(#grants, possible) / possible,
    calls * 1000 / span, #grants * 1000 / span, requests / calls, 100 * quiet / calls, throttled,
    cpu / calls, over))
end

-- steady load below the limit: 4 processes at 200 decisions/s each
case("steady", endpoint, 10000, 1000, 4, 5000)
case("direct", endpoint, 10, 1000, 8, 2000)
case("direct", endpoint, 1000, 1000, 8, 1000)
-- as fast as they can: 1.5 s only (each grant is a line of the workers' files)
case("direct", endpoint, 1000000, 1000, 8, 0, 1500)
if proxy then
  control("POST", "", '{"wcu": 1000, "rcu": 3000}')
  case("partition-sim", proxy, 1000, 1000, 8, 1000)
  case("partition-sim-hot", proxy, 1000000, 1000, 8, 0, 1500)
  control("DELETE", "")
end

admin:delete_table{ TableName = T }
admin:close()
os.execute("rm -rf " .. q(dir))
