-- The native rate limit inside nginx, for the rate-limit layouts section
-- of `make bench` (run.sh, rows kind=nginx): each worker of an nginx
-- (rl_nginx.conf.in, 2 workers) runs one timer that calls acquire on ONE
-- resource as fast as it can, with the leases per worker (layout
-- "native") or shared by the workers through lua_shared_dict ddbkit_rl
-- (layout "native-shared"), and writes the same file as
-- bench_ratelimit_worker.lua, so bench_ratelimit_layouts.lua analyze
-- reads it:
--   G <granted_ms>   per grant: the wall clock when acquire returned
--   S decisions=... requests_sent=... (see bench_ratelimit_worker.lua)
-- then an empty file <outfile>.done. The row's parameters come from the
-- environment (env lines in the config): RLN_ENDPOINT, RLN_TABLE,
-- RLN_RESOURCE, RLN_LAYOUT, RLN_LIMIT, RLN_WINDOW_MS, RLN_START_MS,
-- RLN_RUN_MS, RLN_OUT (a folder). Requests per call are counted from
-- client:stats() around it (every attempt, retries included).
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"

local ngx = ngx
local env = os.getenv

local _M = {}

local function run()
  local limit, window_ms = tonumber(env("RLN_LIMIT")), tonumber(env("RLN_WINDOW_MS"))
  local start_ms, run_ms = tonumber(env("RLN_START_MS")), tonumber(env("RLN_RUN_MS"))
  local layout, resource = env("RLN_LAYOUT"), env("RLN_RESOURCE")
  local outfile = env("RLN_OUT") .. "/w" .. ngx.worker.pid() .. ".txt"
  local client = assert(ddbkit.client{
    region = "us-east-1", endpoint = env("RLN_ENDPOINT"), timeout_ms = 5000,
    credentials = { access_key_id = "ddbkitbench", secret_access_key = "x" } })
  local rl = ddbkit.ratelimit.new{ client = client, table_name = env("RLN_TABLE"), layout = "native",
    shared_dict = layout == "native-shared" and "ddbkit_rl" or nil,
    default_config = { limit = limit, window_ms = window_ms } }
  math.randomseed(tonumber(core.uuid():sub(1, 8), 16))

  local wait = start_ms - core.now_ms()
  if wait > 0 then ngx.sleep(wait / 1000) end
  local deadline = core.mono_ms() + (start_ms + run_ms - core.now_ms())
  local ts, ng = {}, 0
  local decisions, refusals, errors, req_grants, req_refusals, zero_req, sent = 0, 0, 0, 0, 0, 0, 0
  local codes, req_call_ms = {}, 0
  local first_ms, c0 = core.now_ms(), os.clock()
  while core.mono_ms() < deadline do
    local s0, m0 = client:stats().requests, core.mono_ms()
    local got, err = rl:acquire(resource)
    local n = client:stats().requests - s0
    sent = sent + n
    if n > 0 then req_call_ms = req_call_ms + (core.mono_ms() - m0) end
    if got == nil then
      errors = errors + 1
      local code = type(err) == "table" and tostring(err.code) or tostring(err)
      codes[code] = (codes[code] or 0) + 1
      ngx.sleep(math.random(0, 5) / 1000)
    else
      decisions = decisions + 1
      if n == 0 then zero_req = zero_req + 1 end
      if got then
        ng = ng + 1
        ts[ng] = core.now_ms()
        req_grants = req_grants + n
        if ng % 256 == 0 then ngx.sleep(0) end   -- let the worker's other events run
      else
        refusals = refusals + 1
        req_refusals = req_refusals + n
        ngx.sleep(math.random(0, 5) / 1000)
      end
    end
  end
  local cpu_s, last_ms = os.clock() - c0, core.now_ms()
  local lines = {}
  for i = 1, ng do lines[i] = ("G %.0f"):format(ts[i]) end
  local ct = {}
  for k, v in pairs(codes) do ct[#ct + 1] = k .. ":" .. v end
  table.sort(ct)
  lines[#lines + 1] = ("S decisions=%d grants=%d refusals=%d errors=%d req_grants=%d req_refusals=%d "
    .. "zero_req=%d cpu_s=%.6f req_call_ms=%.0f first_ms=%.0f last_ms=%.0f requests_stats=%d "
    .. "requests_sent=%d err_codes=%s")
    :format(decisions, ng, refusals, errors, req_grants, req_refusals, zero_req, cpu_s, req_call_ms,
            first_ms, last_ms, client:stats().requests, sent, #ct > 0 and table.concat(ct, ",") or "-")
  local f = assert(io.open(outfile, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  assert(io.open(outfile .. ".done", "w")):close()
  client:close()
end

--- From init_worker: the row runs in a timer (cosockets work there).
function _M.init_worker()
  assert(ngx.timer.at(0, function(premature)
    if premature then return end
    local ok, err = pcall(run)
    if not ok then
      ngx.log(ngx.ERR, "bench_ratelimit_nginx: ", tostring(err))
      local f = io.open(env("RLN_OUT") .. "/w" .. ngx.worker.pid() .. ".txt.done", "w")
      if f then f:write(tostring(err)); f:close() end
    end
  end))
end

return _M
