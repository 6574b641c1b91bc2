-- The handlers of tests/nginx/nginx.conf.in (ddbkit inside OpenResty), one
-- function per location. Clients and stores are made once per worker, on
-- first use; ddbkit.client picks the OpenResty runtime by itself here.
local ddbkit = require "ddbkit"
local resty = require "ddbkit.resty"
local cjson = require "cjson.safe"

local ngx = ngx
local env = os.getenv
local dict = ngx.shared.ddbkit_test

local _M = {}

local CREDENTIALS = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" }

local W  -- this worker's clients and stores

local function worker()
  if W then return W end
  local function client(endpoint, extra)
    local o = { region = "us-east-1", endpoint = endpoint, credentials = CREDENTIALS }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(ddbkit.client(o))
  end
  local direct = client(env("DDBKIT_TEST_ENDPOINT"))
  -- Through the fault proxy, where the spec makes GetItem slow.
  local proxied = client(env("DDBKIT_TEST_PROXY"), { timeout_ms = 20000 })
  -- Through the proxy too, with a short timeout and quick retries.
  local short = client(env("DDBKIT_TEST_PROXY"), { timeout_ms = 300, max_attempts = 2,
                                                    base_delay_ms = 10, max_backoff_ms = 20 })
  local store_table = env("DDBKIT_NGX_STORE_TABLE")
  local native_client = client(env("DDBKIT_TEST_ENDPOINT"))
  W = {
    direct = direct,
    proxied = proxied,
    short = short,
    store_table = store_table,
    run = env("DDBKIT_NGX_RUN"),
    limiter = ddbkit.ratelimit.new{ client = direct, table_name = store_table,
                                    default_config = { limit = 10, window_ms = 600000 } },
    cache = ddbkit.cache.new{ client = direct, table_name = store_table },
    -- the native layout, its leases shared by both workers; its own client
    -- so each worker can say how many requests its decisions cost
    native_client = native_client,
    native = ddbkit.ratelimit.new{ client = native_client, table_name = store_table,
                                   layout = "native", shared_dict = "ddbkit_rl", lease_ms = 600000,
                                   default_config = { limit = 40, window_ms = 600000 } },
    -- the same, short windows: every sliding window is checked
    native_fast = ddbkit.ratelimit.new{ client = native_client, table_name = store_table,
                                        layout = "native", shared_dict = "ddbkit_rl",
                                        default_config = { limit = 200, window_ms = 500 } },
    idem = ddbkit.idempotency.new{ client = direct, table_name = env("DDBKIT_NGX_IDEM_TABLE"),
                                   lock_ttl_ms = 10000, lock_timeout_ms = 20000 },
  }
  return W
end

local function json(status, v)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(v))
end

-- init_worker: a call right here is refused (cosockets do not exist in
-- this phase) and the error is logged; the same call from a timer works.
-- A test double for the blocking read of a spooled request body: opens of
-- nginx's client-body temp files are counted (per worker, summed in the
-- shared dict) and then done as usual.
local real_open = io.open
local function counting_open(path, ...)
  if type(path) == "string" and path:find("/temp/client_body/", 1, true) then
    dict:incr("body_file_opens", 1, 0)
  end
  return real_open(path, ...)
end

function _M.init_worker()
  io.open = counting_open
  local w = worker()
  local ok, err = pcall(w.direct.list_tables, w.direct, { Limit = 1 })
  if ok then
    ngx.log(ngx.ERR, "ddbkit call in init_worker unexpectedly ran")
  else
    ngx.log(ngx.ERR, "ddbkit call in init_worker refused: ", tostring(err))
  end
  ngx.timer.at(0, function(premature)
    if premature then return end
    local res, terr = w.direct:list_tables{ Limit = 1 }
    dict:set("timer:" .. ngx.worker.pid(), res and "ok" or tostring(terr))
  end)
end

function _M.init_worker_report()
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    if k:sub(1, 6) == "timer:" then out[k:sub(7)] = dict:get(k) end
  end
  json(200, out)
end

function _M.plain()
  ngx.say("plain")
end

-- One GetItem through the proxy (made slow by the spec's delay fault).
function _M.slow()
  local w = worker()
  local res, err = w.proxied:get_item{ TableName = w.store_table, Key = { pk = "slow", sk = "slow" } }
  if not res then return json(500, { error = tostring(err) }) end
  json(200, { ok = true, worker = ngx.worker.pid() })
end

-- A DynamoDB call of another operation through the same proxy (not delayed).
function _M.fast()
  local w = worker()
  local res, err = w.proxied:describe_table{ TableName = w.store_table }
  if not res then return json(500, { error = tostring(err) }) end
  json(200, { status = res.Table.TableStatus })
end

-- /calls?client=proxied|short&op=DescribeTable|GetItem&n=N: N calls in a
-- row in this request; each call's outcome ("ok" or the error code, and
-- whether the error was ambiguous) and the requests and retries they cost
-- (the client's stats before and after).
function _M.calls()
  local w = worker()
  local c = w[ngx.var.arg_client or "proxied"]
  local op = ngx.var.arg_op or "DescribeTable"
  local params = op == "GetItem" and { TableName = w.store_table, Key = { pk = "slow", sk = "slow" } }
                 or { TableName = w.store_table }
  local before = c:stats()
  local out, ambiguous = {}, {}
  for i = 1, tonumber(ngx.var.arg_n or 1) do
    local res, err = c:call(op, params)
    out[i] = res and "ok" or err.code
    ambiguous[i] = not res and err.ambiguous == true
  end
  local after = c:stats()
  json(200, { results = out, ambiguous = ambiguous, requests = after.requests - before.requests,
              retries = after.retries - before.retries })
end

-- /hostile?answer=N&op=M: operation M of tests/hostile/cases.lua against
-- the hostile double (DDBKIT_TEST_HOSTILE), whose answer N the spec
-- (tests/spec/openresty_hostile_spec.lua) has already scripted, with a
-- client of the OpenResty runtime. 200 with the outcome cases.run describes;
-- 500 with the message when anything raised (a raise must not escape into
-- nginx's own 500, where the spec could not tell it from a crash).
function _M.hostile()
  local cases = require "cases"
  local a = cases.ANSWERS[tonumber(ngx.var.arg_answer) or 0]
  local op = cases.OPS[tonumber(ngx.var.arg_op) or 0]
  if not (a and op) then return json(400, { error = "no such answer or op" }) end
  local ok, out = pcall(cases.run, a.name, op.name, "openresty", env("DDBKIT_TEST_HOSTILE"))
  if not ok then return json(500, { raised = tostring(out) }) end
  if out.raised then return json(500, out) end
  json(200, out)
end

-- runtime.spawn: a light thread that finishes, and one cancelled mid-sleep.
function _M.spawn()
  local runtime = worker().direct.runtime
  local key = "spawned:" .. ngx.var.request_id
  local finished = runtime.spawn(function(a, b) return a + b, "sum" end, 1, 2)
  local sleeper = runtime.spawn(function()
    dict:incr(key, 1, 0)
    runtime.sleep(5000)
    dict:incr(key, 1, 0)   -- never: cancelled first
  end)
  runtime.sleep(100)
  local running = not sleeper:done()
  sleeper:cancel()
  runtime.sleep(50)
  json(200, { finished = { finished:result() }, running_before_cancel = running,
              cancelled = { sleeper:result() }, done = sleeper:done(), count = dict:get(key) })
end

-- This worker's proxied client stats (engine counters fed by the runtime).
function _M.stats()
  local s = worker().proxied:stats()
  json(200, { worker = ngx.worker.pid(), requests = s.requests, retries = s.retries,
              getitem_calls = s.operations.GetItem and s.operations.GetItem.calls or 0,
              latency_count = s.latency_us.count })
end

function _M.counter()
  json(200, { n = dict:get(ngx.var.arg_name or "") or 0 })
end

function _M.limit()
  ngx.header["X-Worker"] = tostring(ngx.worker.pid())
  resty.rate_limit{ store = worker().limiter, resource = worker().run .. "-api" }
end

-- /native_limited?r=NAME: one decision of the shared-lease native limit
-- on resource NAME of this run (a 429 ends the request here).
function _M.native_limit()
  local w = worker()
  ngx.header["X-Worker"] = tostring(ngx.worker.pid())
  resty.rate_limit{ store = w.native, resource = w.run .. "-" .. (ngx.var.arg_r or "native") }
end

-- /native_hammer?r=NAME&ms=N&dir=D: acquire on the short-window native
-- limit for N ms as fast as it can (1 ms pause after a refusal), then
-- write the wall-clock time of each grant (taken when acquire returned:
-- at or after the spend) to a file of its own in D. Several of these at
-- once, over both workers, give the spec every grant of the machine.
function _M.native_hammer()
  local w = worker()
  local core = require "ddbkit.core"
  local resource = w.run .. "-" .. ngx.var.arg_r
  local stop = core.mono_ms() + tonumber(ngx.var.arg_ms)
  local ts, calls = {}, 0
  while core.mono_ms() < stop do
    local ok, err = w.native_fast:acquire(resource)
    if ok == nil then return json(500, { error = tostring(err) }) end
    calls = calls + 1
    if ok then ts[#ts + 1] = ("%.3f"):format(core.now_ms())
    else ngx.sleep(0.001) end
    if calls % 64 == 0 then ngx.sleep(0) end   -- the worker's other requests run too
  end
  local f = assert(io.open(ngx.var.arg_dir .. "/g-" .. ngx.worker.pid() .. "-" .. ngx.var.connection, "w"))
  f:write(table.concat(ts, "\n"), "\n")
  f:close()
  json(200, { worker = ngx.worker.pid(), grants = #ts, calls = calls })
end

-- Its header filter (so also on a 429): what this worker's decisions have
-- cost in requests so far.
function _M.native_header()
  ngx.header["X-Native-Requests"] = tostring(worker().native_client:stats().requests)
end

function _M.granted()
  ngx.say("granted")
end

function _M.orders()
  resty.idempotent{ idem = worker().idem, location = "/__work" }
end

-- The work behind /orders: counts its runs (all workers share the dict)
-- and takes a moment, so concurrent requests overlap it.
function _M.work()
  local n = dict:incr("upstream", 1, 0)
  ngx.sleep(0.3)
  ngx.req.read_body()
  ngx.header["X-Order-Run"] = tostring(n)
  json(201, { run = n, token = ddbkit.hash_request("token", { t = ngx.now(), p = ngx.worker.pid() }),
              request = ngx.req.get_body_data() })
end

function _M.cached()
  resty.cache_proxy{ cache = worker().cache, location = "/__origin", ttl_seconds = 300 }
end

-- The upstream behind /cached/: counts its runs (all of them, and per
-- URI); ?vary=V adds a Vary header (nginx.conf gzips text/plain for a
-- client that asks, with Vary: Accept-Encoding).
-- cache_proxy in front of a stand-in cache that always hits with one
-- fixed entry: what the helper itself allocates per hit, without the
-- store and the runtime (measured by /alloc).
local HIT = { status = 200, headers = { ["Content-Type"] = "text/plain" }, body = "stub hit" }
local STUB_CACHE = { get = function() return HIT end, set = function() return true end }
local STUB_OPTS = { cache = STUB_CACHE, location = "/__origin", ttl_seconds = 300 }
function _M.cached_stub()
  resty.cache_proxy(STUB_OPTS)
end

function _M.origin()
  dict:incr("origin", 1, 0)
  local n = dict:incr("origin:" .. ngx.var.uri, 1, 0)
  if ngx.var.arg_vary then ngx.header["Vary"] = ngx.var.arg_vary end
  ngx.header["X-Origin-Run"] = tostring(n)
  ngx.header["Content-Type"] = "text/plain"
  -- With its length, as most upstreams send it (and a HEAD gets it too).
  local body = "origin body for " .. ngx.var.uri .. "?" .. (ngx.var.args or "") .. " run " .. n .. "\n"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

-- Idempotent POSTs in front of upstreams whose bodies are not UTF-8 text:
-- /idem/gz (gzip whatever the request says, like a precompressed file),
-- /idem/bin (every byte value) and /idem/big (480 KB of text); anything
-- else answers "ok". Each says how many request-body bytes it received. The work (/__blob/idem/...) counts
-- its runs per Idempotency-Key and says which Accept-Encoding it saw.
function _M.idem_blob()
  resty.idempotent{ idem = worker().idem, location = "/__blob" }
end

-- gzip of '{"order":"gzipped","items":[1,2,3]}\n' (python gzip, mtime 0)
local GZIP_BODY = "\31\139\8\0\0\0\0\0\2\3\171\86\202\47\74\73\45\82\178\82\74\175\202\44\40"
  .. "\72\77\81\210\81\202\44\73\205\45\86\178\138\54\212\49\210\49\142\173\229\2\0\120\239\235"
  .. "\185\36\0\0\0"

local ALL_BYTES
do
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  ALL_BYTES = table.concat(t)
end

-- How many request-body bytes this (sub)request received; a spooled body
-- is measured with the real io.open (not counted: this is the upstream).
local function body_bytes()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return #data end
  local path = ngx.req.get_body_file()
  if not path then return 0 end
  local f = assert(real_open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

function _M.blob()
  local n = dict:incr("blob:" .. (ngx.var.http_idempotency_key or ""), 1, 0)
  ngx.header["X-Body-Bytes"] = tostring(body_bytes())
  ngx.header["X-Blob-Run"] = tostring(n)
  ngx.header["X-Seen-Accept-Encoding"] = ngx.var.http_accept_encoding or "none"
  if ngx.var.uri:find("/big$") then   -- more than a DynamoDB item holds
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(string.rep("0123456789abcdef", 30000))
  elseif ngx.var.uri:find("/gz$") then
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Encoding"] = "gzip"
    ngx.print(GZIP_BODY)
  elseif ngx.var.uri:find("/bin$") then
    ngx.header["Content-Type"] = "application/octet-stream"
    ngx.print(ALL_BYTES)
  else
    ngx.header["Content-Type"] = "text/plain"
    ngx.print("ok")
  end
end

-- /alloc?path=P&n=N: the Lua memory this worker allocates per request to
-- P (a subrequest here, so it runs in this worker's VM), N times in a row,
-- with the collector stopped: KB per request. Measures allocation, not time.
function _M.alloc()
  local path, n = ngx.var.arg_path, tonumber(ngx.var.arg_n) or 50
  for _ = 1, n do ngx.location.capture(path) end  -- warm: first-use tables, pools, traces
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local statuses = {}
  for i = 1, n do statuses[i] = ngx.location.capture(path).status end
  local kb = (collectgarbage("count") - before) / n
  collectgarbage("restart")
  json(200, { kb_per_request = kb, status = statuses[n] })
end

return _M
