-- ddbkit inside OpenResty: the cosocket runtime (ddbkit.runtime.openresty)
-- and the nginx helpers (ddbkit.resty), proved on a real nginx with
-- lua-nginx-module that this spec starts itself (tests/nginx/driver.sh:
-- a temp prefix, 2 workers, one loopback port, stopped by PID in teardown).
-- The workers talk to DynamoDB Local directly, and through the fault proxy
-- where a call has to be slow. This file only drives nginx from outside
-- (curl), so it runs the same under Lua 5.4 and LuaJIT.
local H = require "test_helper"
local read_file = H.read_file
local ddbkit = require "ddbkit"
local cjson = require "cjson.safe"
local schema = require "ddbkit.schema"

local q = H.shell_quote
local DRIVER = H.spec_dir() .. "/../nginx/driver.sh"

local sh = H.sh


local function lines_of(path)
  local out = {}
  for line in (read_file(path) or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- A bounded poll: f() truthy within `seconds`, or the test fails with `what`.
local function wait_for(what, seconds, f)
  local deadline = os.time() + seconds
  while true do
    local v = f()
    if v then return v end
    if os.time() > deadline then error("timed out waiting for " .. what, 2) end
    sh("sleep 0.05")
  end
end

-- Runtime selection, without nginx ---------------------------------------------

describe("the OpenResty runtime outside nginx", function()
  local saved
  before_each(function() saved = rawget(_G, "ngx") end)
  after_each(function() rawset(_G, "ngx", saved) end)

  it("is chosen by ddbkit.client when ngx (sockets and phases) is there", function()
    rawset(_G, "ngx", { socket = {}, get_phase = function() return "init_worker" end })
    local c = H.client()
    assert.are.equal("openresty", c.runtime.name)
    c:close()
    rawset(_G, "ngx", nil)
    c = H.client()
    assert.are.equal("blocking", c.runtime.name)
    c:close()
  end)

  it("is named by opts.runtime; an unknown name raises", function()
    local c = H.client{ runtime = "openresty" }
    assert.are.equal("openresty", c.runtime.name)
    c:close()
    rawset(_G, "ngx", { socket = {}, get_phase = function() return "content" end })
    c = H.client{ runtime = "blocking" }
    assert.are.equal("blocking", c.runtime.name)
    c:close()
    assert.has_error(function() H.client{ runtime = "evented" } end,
      'ddbkit.client: opts.runtime must be "blocking", "coroutine", "openresty" or a runtime table, got string')
  end)

  it("refuses a call where cosockets do not exist, saying what to do", function()
    rawset(_G, "ngx", { socket = {}, get_phase = function() return "init_worker" end })
    local c = H.client()
    local ok, err = pcall(c.get_item, c, { TableName = "t", Key = { pk = "a" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("ddbkit: cosockets are not available in the init_worker "
      .. "phase; run this from a timer: ngx.timer.at(0, fn)", 1, true))
    rawset(_G, "ngx", nil)
    ok, err = pcall(c.runtime.send, c.core, "GetItem", {})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("runs only inside OpenResty", 1, true))
    c:close()
  end)

  it("pools a TLS connection only with clients of the same TLS settings", function()
    -- The cosocket pool is the worker's: a connection a verify_tls = false
    -- client opened must never reach a client that verifies.
    local rt = require "ddbkit.runtime.openresty"
    local url = "https://dynamodb.eu-west-1.amazonaws.com/"
    local verified, unverified = rt.pool_name(url, true), rt.pool_name(url, false)
    assert.is_string(verified)
    assert.are_not.equal(verified, unverified)
    assert.are.equal(verified, rt.pool_name(url, nil))            -- verification is the default
    assert.truthy(verified:find("sni=dynamodb.eu-west-1.amazonaws.com", 1, true))
    assert.are_not.equal(verified, rt.pool_name("https://other.example:443/", true))
    assert.are_not.equal(verified, rt.pool_name("https://dynamodb.eu-west-1.amazonaws.com:8443/", true))
    -- Plain http has no TLS setting to keep apart.
    assert.are.equal(rt.pool_name("http://127.0.0.1:8000/", true),
                     rt.pool_name("http://127.0.0.1:8000/", false))
    assert.is_nil((rt.pool_name("ftp://x/", true)))

    -- And connect asks for that pool: a stand-in ngx records what each
    -- client's connect was given (and refuses it, so nothing goes further).
    local pools = {}
    local sock = {
      settimeouts = function() end,
      connect = function(_, _, _, o) pools[#pools + 1] = o.pool return nil, "connection refused" end,
    }
    rawset(_G, "ngx", { socket = { tcp = function() return sock end },
                        get_phase = function() return "content" end, sleep = function() end })
    for _, verify in ipairs{ false, true } do
      local c = H.client{ runtime = "openresty", endpoint = "https://dynamodb.eu-west-1.amazonaws.com",
                          verify_tls = verify, max_attempts = 1 }
      local res, err = c:get_item{ TableName = "t", Key = { pk = "a" } }
      assert.is_nil(res)
      assert.are.equal("ConnectionError", err.code)
      assert.is_nil(err.ambiguous)                    -- nothing was sent
      c:close()
    end
    assert.are.same({ unverified, verified }, pools)
  end)
end)

-- nginx ----------------------------------------------------------------------

describe("ddbkit in nginx (2 workers)", function()
  local admin, store_table, idem_table, prefix, port, base, run

  setup(function()
    assert(H.proxy and H.proxy ~= "", "the fault proxy is not running (DDBKIT_TEST_PROXY)")
    admin = H.client()
    store_table = H.store_table(admin, "ngx")
    idem_table = H.unique("ngx-idem")
    assert(admin:create_table(schema.create_table_params(ddbkit.IDEMPOTENCY_TABLE_SCHEMA, idem_table)))
    assert(admin:wait_for_table(idem_table, 30000))
    run = H.unique("run")
    prefix = H.mktemp_dir()
    local out, ok = sh(string.format(
      "env DDBKIT_TEST_ENDPOINT=%s DDBKIT_TEST_PROXY=%s DDBKIT_NGX_STORE_TABLE=%s "
      .. "DDBKIT_NGX_IDEM_TABLE=%s DDBKIT_NGX_RUN=%s bash %s start %s",
      q(H.endpoint), q(H.proxy), q(store_table), q(idem_table), q(run), q(DRIVER), q(prefix)))
    local pid, p = out:match("(%d+) (%d+)%s*$")
    assert(ok and pid, "nginx did not start:\n" .. out)
    port = tonumber(p)
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if prefix then
      for _, d in ipairs{ "slow", "idem", "native", "hammer" } do sh("bash " .. q(DRIVER) .. " reap " .. q(prefix .. "/" .. d)) end
      local out, ok = sh("bash " .. q(DRIVER) .. " stop " .. q(prefix))
      if not ok then print(out) end
    end
    H.clear_faults()
    if admin then
      if store_table then admin:delete_table{ TableName = store_table } end
      if idem_table then admin:delete_table{ TableName = idem_table } end
      admin:close()
    end
    if prefix and prefix:match("^/tmp/") then sh("rm -rf " .. q(prefix)) end
  end)

  -- A test that fails half-way must not leave faults armed for the next.
  after_each(function() H.clear_faults() end)

  -- GET (or other) with curl; -> status, headers (lowercase names), body
  local function request(path, args)
    local tmp = prefix .. "/req.headers"
    local out = sh(string.format("curl -s -m 30 -D %s %s %s", q(tmp), args or "", q(base .. path)))
    local status, headers = nil, {}
    for line in (read_file(tmp) or ""):gmatch("[^\r\n]+") do
      local s = line:match("^HTTP/%d[%.%d]* (%d%d%d)")
      if s then status = tonumber(s) end
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    end
    return status, headers, out
  end

  -- The [error] lines of nginx's error.log (the last few), for failure messages.
  local function log_errors()
    local out = {}
    for _, line in ipairs(lines_of(prefix .. "/logs/error.log")) do
      if line:find("[error]", 1, true) and not line:find("init_worker", 1, true) then
        out[#out + 1] = line:sub(1, 400)
      end
    end
    return table.concat(out, "\n", math.max(1, #out - 2))
  end

  local function headers_of(path)
    local h = {}
    for line in (read_file(path) or ""):gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then h[k:lower()] = v end
    end
    return h
  end

  it("serves other requests while 50 requests wait on slow DynamoDB calls", function()
    local dir = prefix .. "/slow"
    H.reset_proxy_stats()
    -- Held until released (15 s at most, under the client's 20 s timeout),
    -- so the order below does not depend on how fast a loaded machine
    -- serves the two quick requests (a timed 1.5 s delay failed in CI).
    H.faults{ { kind = "delay", hold = true, ms = 15000, count = 50, match = "GetItem" } }
    sh(string.format("bash %s burst %s slow 50 %s", q(DRIVER), q(dir), q(base .. "/slow")))
    -- All 50 are inside DynamoDB calls (held by the proxy) ...
    wait_for("the proxy to hold 50 GetItems", 20, function()
      local applied = H.proxy_stats().faults_applied
      return (applied.delay or 0) >= 50
    end)
    -- ... while the same workers answer a request without DynamoDB and one
    -- with another DynamoDB call (through the same proxy, not delayed).
    sh(string.format("bash %s one %s plain %s", q(DRIVER), q(dir), q(base .. "/plain")))
    sh(string.format("bash %s one %s fast %s", q(DRIVER), q(dir), q(base .. "/fast")))
    H.release_held()
    local order = wait_for("the 50 slow requests to finish", 30, function()
      local l = lines_of(dir .. "/order.log")
      return #l >= 52 and l
    end)
    local pos = {}
    for i, line in ipairs(order) do
      local tag, _, code = line:match("^(%S+) (%d+) (%d+)$")
      assert.are.equal("200", code, "request " .. line)
      pos[tag] = pos[tag] or {}
      table.insert(pos[tag], i)
    end
    assert.are.equal(50, #pos.slow)
    -- Completion order: both quick ones finished before any slow one did.
    assert.are.same({ 1, 2 }, { math.min(pos.plain[1], pos.fast[1]), math.max(pos.plain[1], pos.fast[1]) })
    assert.are.equal(50, H.proxy_stats().faults_applied.delay)
    -- The runtime fed the engine's stats of the worker's client.
    local _, _, body = request("/stats")
    local s = assert(cjson.decode(body))
    assert.is_true(s.getitem_calls >= 1)
    assert.is_true(s.latency_count >= s.getitem_calls)
    assert.are.equal(0, s.retries)
    H.clear_faults()
  end)

  it("retries throttling with backoff, signing each attempt afresh", function()
    H.faults{ { kind = "throttle", count = 2, match = "DescribeTable" } }
    local _, _, body = request("/calls?client=proxied&op=DescribeTable&n=1")
    local r = assert(cjson.decode(body), body)
    assert.are.same({ "ok" }, r.results)
    assert.are.equal(3, r.requests)
    assert.are.equal(2, r.retries)
    H.clear_faults()
  end)

  it("gives up with Timeout after max_attempts slow attempts", function()
    H.faults{ { kind = "delay", ms = 1000, count = 2, match = "GetItem" } }
    local _, _, body = request("/calls?client=short&op=GetItem&n=1")
    local r = assert(cjson.decode(body), body)
    assert.are.same({ "Timeout" }, r.results)
    assert.are.equal(2, r.requests)
    assert.are.equal(1, r.retries)
    H.clear_faults()
  end)

  it("keeps working when the server closes a pooled connection", function()
    H.faults{ { kind = "close_after", count = 3, match = "DescribeTable" } }
    local _, _, body = request("/calls?client=proxied&op=DescribeTable&n=4")
    local r = assert(cjson.decode(body), body)
    assert.are.same({ "ok", "ok", "ok", "ok" }, r.results)
    -- A request sent on a connection closed under it is an attempt of its
    -- own, retried by the policy: each call had one answered attempt.
    assert.are.equal(4, r.requests - r.retries)
    H.clear_faults()
  end)

  it("counts a send whose answer was lost on a pooled connection as an attempt", function()
    -- The first DescribeTable passes (and leaves its connection pooled),
    -- the second is forwarded and its answer dropped: DynamoDB saw it, so
    -- the resend is a counted retry, and the proxy saw as many as the stats.
    H.reset_proxy_stats()
    H.faults{ { kind = "delay", ms = 0, count = 1, match = "DescribeTable" },
              { kind = "drop_response", count = 1, match = "DescribeTable" } }
    local _, _, body = request("/calls?client=proxied&op=DescribeTable&n=2")
    local r = assert(cjson.decode(body), body)
    assert.are.same({ "ok", "ok" }, r.results)
    assert.are.equal(3, r.requests)
    assert.are.equal(1, r.retries)
    assert.are.equal(3, H.proxy_stats().requests)
    -- Every send dropped: max_attempts sends at most, the error ambiguous.
    H.faults{ { kind = "delay", ms = 0, count = 1, match = "DescribeTable" },
              { kind = "drop_response", count = 10, match = "DescribeTable" } }
    H.reset_proxy_stats()
    _, _, body = request("/calls?client=short&op=DescribeTable&n=2")
    r = assert(cjson.decode(body), body)
    assert.are.same({ "ok", "ConnectionError" }, r.results)
    assert.are.same({ false, true }, r.ambiguous)
    assert.are.equal(3, r.requests)                 -- 1 + max_attempts (2)
    assert.are.equal(3, H.proxy_stats().requests)
    H.clear_faults()
  end)

  it("runs tasks in light threads (runtime.spawn) and cancels them", function()
    local status, _, body = request("/spawn")
    assert.are.equal(200, status, body)
    local r = assert(cjson.decode(body), body)
    assert.are.same({ true, 3, "sum" }, r.finished)
    assert.is_true(r.running_before_cancel)
    assert.are.same({ false, "cancelled" }, r.cancelled)
    assert.is_true(r.done)
    assert.are.equal(1, r.count)
  end)

  it("rate limits with 429 exactly past the limit across both workers", function()
    local codes, workers, retry_after = {}, {}, {}
    for i = 1, 20 do
      local status, h = request("/limited")
      codes[i] = status
      if h["x-worker"] then workers[h["x-worker"]] = true end
      if status == 429 then retry_after[#retry_after + 1] = h["retry-after"] end
    end
    local granted, refused = 0, 0
    for i, c in ipairs(codes) do
      if c == 200 then granted = granted + 1 elseif c == 429 then refused = refused + 1 end
      assert.are.equal(i <= 10 and 200 or 429, c, "request " .. i)
    end
    assert.are.equal(10, granted)
    assert.are.equal(10, refused)
    for _, v in ipairs(retry_after) do
      assert.truthy(v and v:match("^%d+$") and tonumber(v) >= 1, "Retry-After " .. tostring(v))
    end
    local nw = 0
    for _ in pairs(workers) do nw = nw + 1 end
    assert.are.equal(2, nw, "both workers answered")
  end)

  -- The native layout with shared_dict: one lease for both workers.
  it("serves both workers from one native lease: exact, and a handful of requests for 60 decisions", function()
    local codes, granted_by, cost = {}, {}, {}
    for i = 1, 60 do
      local status, h = request("/native_limited?r=seq")
      codes[i] = status
      local w = h["x-worker"]
      if status == 200 and w then granted_by[w] = (granted_by[w] or 0) + 1 end
      if w then cost[w] = tonumber(h["x-native-requests"]) end
      if status == 429 then
        assert.truthy(h["retry-after"] and tonumber(h["retry-after"]) >= 1, "Retry-After")
      end
    end
    for i, c in ipairs(codes) do
      assert.are.equal(i <= 40 and 200 or 429, c, "request " .. i .. "\n" .. log_errors())
    end
    local nw, total = 0, 0
    for w, n in pairs(granted_by) do nw = nw + 1; assert.is_true(n > 0, w) end
    for _, n in pairs(cost) do total = total + n end
    assert.are.equal(2, nw, "both workers granted")
    -- a lease of 1, then one of the other 39 spent by both workers, then
    -- the window found full (and the spent lease's record shortened): each
    -- worker taking its own leases would need more
    assert.is_true(total <= 4, total .. " requests for 60 decisions")
  end)

  it("grants exactly the limit to a concurrent burst over both workers; waiters sleep, none fails", function()
    local dir = prefix .. "/native"
    sh(string.format("bash %s burst %s nat 60 %s", q(DRIVER), q(dir), q(base .. "/native_limited?r=burst")))
    local order = wait_for("the 60 requests to finish", 60, function()
      local l = lines_of(dir .. "/order.log")
      return #l >= 60 and l
    end)
    local granted, refused = 0, 0
    for _, line in ipairs(order) do
      local code = line:match("^nat %d+ (%d+)$")
      if code == "200" then granted = granted + 1
      elseif code == "429" then refused = refused + 1
      else error("status " .. tostring(code) .. "\n" .. log_errors()) end
    end
    assert.are.equal(40, granted)
    assert.are.equal(20, refused)
  end)

  it("keeps every sliding window at the limit with six requests hammering one shared lease", function()
    local dir = prefix .. "/hammer"
    sh("mkdir -p " .. q(dir))
    sh(string.format("bash %s burst %s ham 6 %s", q(DRIVER), q(dir),
      q(base .. "/native_hammer?r=ham&ms=2500&dir=" .. dir)))
    local order = wait_for("the 6 hammering requests to finish", 60, function()
      local l = lines_of(dir .. "/order.log")
      return #l >= 6 and l
    end)
    for _, line in ipairs(order) do
      local i, code = line:match("^ham (%d+) (%d+)$")
      assert.are.equal("200", code, "request " .. tostring(i) .. ": "
        .. tostring(read_file(dir .. "/ham." .. tostring(i) .. ".body")) .. "\n" .. log_errors())
    end
    local times, files = {}, 0
    for name in sh("ls " .. q(dir)):gmatch("g%-[^\n]+") do
      files = files + 1
      for _, l in ipairs(lines_of(dir .. "/" .. name)) do
        if l ~= "" then times[#times + 1] = assert(tonumber(l), l) end
      end
    end
    assert.are.equal(6, files)
    table.sort(times)
    -- 2.5 s of demand over a limit of 200 per 500 ms: the first window fills
    assert.is_true(#times >= 200, #times .. " grants")
    H.assert_at_most_per_window(times, 200, 500, "grants of the shared lease")
  end)

  it("runs the upstream once for concurrent idempotent POSTs with one key", function()
    local dir = prefix .. "/idem"
    sh(string.format("bash %s burst %s idem 10 %s -X POST -H %s -H %s --data-binary %s",
      q(DRIVER), q(dir), q(base .. "/orders"), q("Idempotency-Key: order-" .. run),
      q("Content-Type: application/json"), q('{"item":"book","qty":1}')))
    local order = wait_for("the 10 POSTs to finish", 60, function()
      local l = lines_of(dir .. "/order.log")
      return #l >= 10 and l
    end)
    local first_body, replayed = nil, 0
    for _, line in ipairs(order) do
      local i, code = line:match("^idem (%d+) (%d+)$")
      local body = read_file(dir .. "/idem." .. i .. ".body")
      assert.are.equal("201", code, "POST " .. i .. ": " .. tostring(body) .. "\n" .. log_errors())
      first_body = first_body or body
      assert.are.equal(first_body, body)
      local h = headers_of(dir .. "/idem." .. i .. ".headers")
      if h["idempotent-replayed"] == "true" then replayed = replayed + 1 end
      assert.are.equal("1", h["x-order-run"])
    end
    local doc = assert(cjson.decode(first_body))
    assert.are.equal(1, doc.run)
    assert.are.equal('{"item":"book","qty":1}', doc.request)
    assert.are.equal(9, replayed)
    local _, _, counter = request("/counter?name=upstream")
    assert.are.equal(1, assert(cjson.decode(counter)).n)
  end)

  it("refuses a call from init_worker with the clear error in error.log; a timer works", function()
    local log = read_file(prefix .. "/logs/error.log") or ""
    local n = 0
    for _ in log:gmatch("ddbkit call in init_worker refused: [^\n]*ddbkit: cosockets are not available "
                        .. "in the init_worker phase; run this from a timer: ngx%.timer%.at%(0, fn%)") do
      n = n + 1
    end
    assert.are.equal(2, n, "one refusal per worker in error.log:\n" .. log)
    local results = wait_for("both workers' timer calls", 10, function()
      local _, _, body = request("/init_worker")
      local t = cjson.decode(body)
      local count = 0
      for _ in pairs(t or {}) do count = count + 1 end
      return count == 2 and t
    end)
    for pid, r in pairs(results) do assert.are.equal("ok", r, "worker " .. pid) end
  end)

  it("caches a proxied upstream's response in DynamoDB", function()
    local path = "/cached/items/7?color=red&size=2"
    local status, h, body = request(path)
    assert.are.equal(200, status)
    assert.are.equal("MISS", h["x-cache"])
    assert.truthy(body:find("run 1", 1, true))
    -- Stored after the response went out: the entry appears in the table
    -- under the Node toolkit's request hash.
    local cache = ddbkit.cache.new{ client = admin, table_name = store_table }
    local key = ddbkit.hash_request("GET /cached/items/7", { color = "red", size = "2" })
    local entry = wait_for("the cache entry", 10, function() return cache:get(key) end)
    assert.are.equal(200, entry.status)
    local status2, h2, body2 = request(path)
    assert.are.equal(200, status2)
    assert.are.equal("HIT", h2["x-cache"])
    assert.are.equal(body, body2)
    assert.are.equal("1", h2["x-origin-run"])
    local _, _, counter = request("/counter?name=origin")
    assert.are.equal(1, assert(cjson.decode(counter)).n)
  end)
end)
