-- Shared by the busted specs: a client for the DynamoDB Local the runner
-- started, unique table names, and control of the fault-injecting proxy.
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local cjson = require "cjson.safe"

local H = {}

H.endpoint = os.getenv("DDBKIT_TEST_ENDPOINT")
  or error("DDBKIT_TEST_ENDPOINT is not set: run the suite with `make test`")
H.proxy = os.getenv("DDBKIT_TEST_PROXY")

-- DynamoDB Local rejects access key ids that are not letters and digits.
H.credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" }

function H.client(opts)
  local o = { region = "us-east-1", endpoint = H.endpoint, credentials = H.credentials }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(ddbkit.client(o))
end

-- A client whose requests go through the fault proxy.
function H.proxied_client(opts)
  assert(H.proxy, "the fault proxy is not running")
  local o = { endpoint = H.proxy }
  for k, v in pairs(opts or {}) do o[k] = v end
  return H.client(o)
end

local seq = 0
-- LuaJIT's math.random is unseeded: two spec processes started in the same
-- second drew the same names ("Cannot create preexisting table" on a
-- shared DynamoDB Local). A table's address differs between processes.
local NONCE = (tostring({}):match("0x(%x+)") or "0"):sub(-8)
function H.unique(prefix)
  seq = seq + 1
  return string.format("%s-%d-%s-%d-%d", prefix or "t", os.time(), NONCE, math.random(1, 1e6), seq)
end

-- Creates a table with a string hash key `pk` and optional range key `sk`.
function H.create_table(client, name, opts)
  opts = opts or {}
  local params = {
    TableName = name,
    AttributeDefinitions = { { AttributeName = "pk", AttributeType = "S" } },
    KeySchema = { { AttributeName = "pk", KeyType = "HASH" } },
    BillingMode = "PAY_PER_REQUEST",
  }
  if opts.range ~= false then
    params.AttributeDefinitions[2] = { AttributeName = "sk", AttributeType = "S" }
    params.KeySchema[2] = { AttributeName = "sk", KeyType = "RANGE" }
  end
  assert(client:create_table(params))
  assert(client:wait_for_table(name, 30000))
  return name
end

local function curl(method, path, body)
  -- env -u: a sanitized run preloads ASan, which must not reach curl.
  local cmd = string.format("env -u LD_PRELOAD curl -s -m 10 -X %s %s%s", method, H.proxy, path)
  if body then
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary @-"
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write(body)
    f:close()
    cmd = cmd .. " < " .. tmp
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    os.remove(tmp)
    return out
  end
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- Arms faults on the proxy, e.g. H.faults{ { kind = "throttle", count = 2 } }.
function H.faults(list)
  curl("DELETE", "/__proxy/faults")
  curl("POST", "/__proxy/faults", cjson.encode(list))
end

-- Lets every request held by a { kind = "delay", hold = true } fault go.
function H.release_held()
  curl("POST", "/__proxy/release")
end

function H.clear_faults()
  curl("DELETE", "/__proxy/faults")
end

function H.proxy_stats()
  return assert(cjson.decode(curl("GET", "/__proxy/stats")))
end

function H.reset_proxy_stats()
  curl("POST", "/__proxy/reset-stats")
end

local function wrapper(v)
  return ddbkit.is_binary(v) or ddbkit.is_set(v) or ddbkit.is_decimal(v) or v == ddbkit.null
end

-- Deep equality: lists and maps by content (a decoded list carries the array
-- marker, a literal one need not), ddbkit's value wrappers by kind and content.
function H.same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if (wrapper(a) or wrapper(b)) and getmetatable(a) ~= getmetatable(b) then return false end
  if ddbkit.is_decimal(a) then return a == b end  -- by value: 1E-3 == 0.001
  if ddbkit.is_set(a) then                        -- DynamoDB keeps no set order
    if #a ~= #b then return false end
    for _, x in ipairs(a) do
      local found = false
      for _, y in ipairs(b) do found = found or H.same(x, y) end
      if not found then return false end
    end
    return true
  end
  for k, v in pairs(a) do if not H.same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- For the store specs ----------------------------------------------------

-- A new table with the store schema (TABLE_SCHEMA), ready to use.
function H.store_table(client, prefix)
  local schema = require "ddbkit.schema"
  local name = H.unique(prefix or "store")
  assert(client:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, name)))
  assert(client:wait_for_table(name, 30000))
  return name
end

-- A client whose wall and monotonic clocks both read state.T, whose sleep
-- returns at once, and whose sends may be intercepted: state.hooks[op]
-- (params) runs before op is sent.
function H.clock_client(state)
  local blocking = require "ddbkit.runtime.blocking"
  return H.client{ runtime = {
    send = function(core, op, params)
      local hook = state.hooks and state.hooks[op]
      if hook then hook(params) end
      return blocking.send(core, op, params)
    end,
    -- no real sleep: the clock stands still; state.slept, when given,
    -- records each sleep asked for
    sleep = function(ms) if state.slept then state.slept[#state.slept + 1] = ms end end,
    now_ms = function() return state.T end,
    mono_ms = function() return state.T end,
  } }
end

-- Runs f and returns how many DynamoDB requests it made, then f's results.
function H.requests(c, f)
  c:reset_stats()
  local a, b = f()
  return c:stats().requests, a, b
end

-- For specs that start worker processes -------------------------------

-- Asserts that no window of window_ms holds more than n of `times` (sorted
-- grant times in ms): the (n+1)-th grant after any grant is window_ms or
-- more after it. `what` names the grants in the message.
function H.assert_at_most_per_window(times, n, window_ms, what)
  for i = 1, #times - n do
    assert(times[i + n] - times[i] >= window_ms, string.format(
      "%s: %d grants within %d ms: from %d to %d", what, n + 1, times[i + n] - times[i],
      times[i], times[i + n]))
  end
end

function H.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command (its stderr with its stdout; a sanitized run's
-- LD_PRELOAD kept from the tools) -> output, whether it exited 0.
function H.sh(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD " .. cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

-- The folder of the calling spec file.
function H.spec_dir()
  local src = debug.getinfo(2, "S").source
  return src:match("^@(.*)/[^/]*$") or "tests/spec"
end

-- The interpreter the suite runs under, so a worker loads the same build of
-- ddbkit.core (LUA_CPATH is set for it).
function H.interpreter()
  local env = os.getenv("LUA_INTERP")
  if env and env ~= "" then return env end
  if type(arg) == "table" and type(arg[-1]) == "string" and arg[-1] ~= "" then return arg[-1] end
  return jit and "luajit" or "lua5.4"
end

-- `cmd` bounded by `timeout`; a sanitized run's LD_PRELOAD reaches only the
-- interpreter, not the coreutils around it.
function H.bounded(cmd, seconds)
  local preload = os.getenv("LD_PRELOAD")
  local prefix = string.format("env -u LD_PRELOAD timeout -k 5 %d ", seconds)
  if preload and preload ~= "" then
    prefix = prefix .. "env LD_PRELOAD=" .. H.shell_quote(preload) .. " "
  end
  return prefix .. cmd
end

-- A whole file's text, or nil when it cannot be read.
function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- H.wait_for_file(path, ms, log) -> its text, once a worker process has
-- published path (an event), waiting up to ms; raises with the worker's log
-- file when it does not come.
function H.wait_for_file(path, ms, log)
  local deadline = core.mono_ms() + ms
  while true do
    local s = H.read_file(path)
    if s then return s end
    if core.mono_ms() > deadline then
      error("timed out waiting for " .. path .. "\nworker log:\n" .. (H.read_file(log) or ""), 2)
    end
    core.sleep_ms(5)
  end
end

--- H.alive(pid) -> whether the process exists and is not a zombie (a killed
-- worker stays one until the `timeout` that started it reaps it).
function H.alive(pid)
  local stat = H.read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("^%d+ %b() (%S)")
  return state ~= "Z" and state ~= "X"
end

function H.mktemp_dir()
  local p = assert(io.popen("env -u LD_PRELOAD mktemp -d"))
  local d = p:read("*l")
  p:close()
  assert(d and d ~= "", "mktemp -d failed")
  return d
end

-- For specs against the hostile double (tests/hostile/hostile.py) ---------

-- Its address, from the runner (tests/run.sh starts it).
H.hostile = os.getenv("DDBKIT_TEST_HOSTILE")

-- The double's control API as DynamoDB operations (HostileScript, ...),
-- through a client of its own: no process to start per call.
local hostile_admin
local function hostile_call(op, body)
  assert(H.hostile and H.hostile ~= "", "the hostile double is not running (DDBKIT_TEST_HOSTILE)")
  if not hostile_admin then
    hostile_admin = H.client{ endpoint = H.hostile, max_attempts = 1 }
  end
  local out, err = core.call_raw(hostile_admin.core, op, body or "{}")
  assert(out, "the double's " .. op .. " failed: " .. tostring(err))
  return out
end

--- H.hostile_script(list): clears the double's queue and counters, then
-- queues the answers (see tests/hostile/hostile.py), e.g.
-- H.hostile_script{ { body = "5", forever = true } }.
function H.hostile_script(list)
  hostile_call("HostileReset")
  local out = hostile_call("HostileScript", cjson.encode(list))
  assert(out:find('"queued"', 1, true), "the double refused the script: " .. out)
end

--- H.hostile_stats() -> { requests, targets = { [X-Amz-Target] = n }, log,
-- answered, unscripted, pending, connections }
function H.hostile_stats()
  local out = hostile_call("HostileStats")
  return assert(cjson.decode(out), "bad stats from the double: " .. out)
end

function H.hostile_reset()
  hostile_call("HostileReset")
end

--- H.hostile_client(opts) -> a client of the double: any credentials do.
function H.hostile_client(opts)
  assert(H.hostile and H.hostile ~= "", "the hostile double is not running (DDBKIT_TEST_HOSTILE)")
  local o = { endpoint = H.hostile }
  for k, v in pairs(opts or {}) do o[k] = v end
  return H.client(o)
end

-- For specs against the fake credential services -------------------------
-- (tests/harness/fakemeta.py: IMDSv2, container, STS, SSO; the runner starts
-- it and exports its address)

H.fakemeta = os.getenv("DDBKIT_TEST_FAKEMETA")

--- H.http(method, url, opts?) -> status (0: no answer), body, curl's exit
-- code. opts: body (string), headers ({ "Name: value", ... }), timeout
-- (seconds, default 10), extra (more curl arguments, already quoted).
function H.http(method, url, opts)
  opts = opts or {}
  local out = os.tmpname()
  local parts = { "env -u LD_PRELOAD curl -s -o", H.shell_quote(out), "-w '%{http_code}'",
    "-m", tostring(opts.timeout or 10), "-X", method }
  for _, h in ipairs(opts.headers or {}) do parts[#parts + 1] = "-H " .. H.shell_quote(h) end
  if opts.extra then parts[#parts + 1] = opts.extra end
  local input
  if opts.body then
    input = os.tmpname()
    H.write_file(input, opts.body)
    parts[#parts + 1] = "--data-binary @" .. H.shell_quote(input)
  end
  parts[#parts + 1] = H.shell_quote(url)
  parts[#parts + 1] = "; echo \" $?\""
  local p = assert(io.popen(table.concat(parts, " ")))
  local res = p:read("*a")
  p:close()
  local body = H.read_file(out) or ""
  os.remove(out)
  if input then os.remove(input) end
  local code, rc = res:match("^(%d*) (%d+)")
  return tonumber(code) or 0, body, tonumber(rc)
end

local function fake_url(path)
  assert(H.fakemeta and H.fakemeta ~= "", "the fake credential services are not running (DDBKIT_TEST_FAKEMETA)")
  return H.fakemeta .. path
end

--- H.fake_control(tbl) -> the fake's answer (raises when it refuses): POST
-- /_control, e.g. H.fake_control{ reset = true, ttl = 20 }.
function H.fake_control(tbl)
  local st, body = H.http("POST", fake_url("/_control"), {
    body = cjson.encode(tbl), headers = { "Content-Type: application/json" } })
  assert(st == 200, "the fake refused the control: " .. tostring(st) .. " " .. body)
  return cjson.decode(body)
end

--- H.fake_get("stats" | "issued" | "requests") -> the decoded answer.
function H.fake_get(what)
  local st, body = H.http("GET", fake_url("/_" .. what))
  assert(st == 200, "the fake's /_" .. what .. " answered " .. tostring(st))
  return assert(cjson.decode(body), "bad JSON from the fake: " .. body)
end

--- H.proxy_signers(since?) -> the fault proxy's signer log (entries with
-- seq > since): { { seq, key_id, token_sha256, amz_date, amz_epoch, target,
-- at }, ... }
function H.proxy_signers(since)
  assert(H.proxy, "the fault proxy is not running")
  local st, body = H.http("GET", H.proxy .. "/__proxy/signers?since=" .. string.format("%d", since or 0))
  assert(st == 200, "the proxy's signer log answered " .. tostring(st))
  return assert(cjson.decode(body))
end

--- H.proxy_signer_seq() -> the seq of the last entry in the signer log (0
-- when empty): read before a case, pass to H.proxy_signers after it.
function H.proxy_signer_seq()
  local log = H.proxy_signers(0)
  return #log > 0 and log[#log].seq or 0
end

--- H.env_worker(env, plan, seconds) -> a running credentials_worker.lua
-- (tests/spec/credentials_worker.lua) in exactly the environment `env`
-- ({ NAME = value }: env -i, so nothing of the suite's own environment
-- leaks in but LUA_PATH, LUA_CPATH and a sanitized run's preload), with
-- `plan` (a table, see the worker). H.env_worker_wait(w) -> its RESULT
-- (decoded), its whole output (stdout and stderr), its exit status.
function H.env_worker(env, plan, seconds)
  local dir = H.mktemp_dir()
  local plan_file = dir .. "/plan.json"
  H.write_file(plan_file, cjson.encode(plan))
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  e.LUA_PATH = e.LUA_PATH or os.getenv("LUA_PATH")
  e.LUA_CPATH = e.LUA_CPATH or os.getenv("LUA_CPATH")
  for _, k in ipairs{ "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
    local v = os.getenv(k)
    if v and v ~= "" and e[k] == nil then e[k] = v end
  end
  local names = {}
  for k in pairs(e) do names[#names + 1] = k end
  table.sort(names)
  local parts = { "env -u LD_PRELOAD timeout -k 5", tostring(seconds), "env -i" }
  for _, k in ipairs(names) do parts[#parts + 1] = H.shell_quote(k .. "=" .. e[k]) end
  parts[#parts + 1] = H.interpreter()
  parts[#parts + 1] = H.shell_quote(H.spec_dir() .. "/credentials_worker.lua")
  parts[#parts + 1] = H.shell_quote(plan_file)
  local cmd = table.concat(parts, " ") .. " 2>&1; echo \"EXIT:$?\""
  return { pipe = assert(io.popen(cmd, "r")), dir = dir }
end

function H.env_worker_wait(w)
  local all = w.pipe:read("*a")
  w.pipe:close()
  os.execute("rm -rf " .. H.shell_quote(w.dir))
  local code = all:match("EXIT:(%d+)%s*$")
  local line = all:match("RESULT ([^\n]*)")
  return line and cjson.decode(line), all, tonumber(code)
end

return H
