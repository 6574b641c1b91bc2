-- The Lua side of credentials (ddbkit.credentials, client.lua, creds.c):
-- a host credentials function in the blocking and coroutine runtimes,
-- rotated across short-lived credentials against DynamoDB Local through the
-- fault proxy, whose signer log proves which key signed each request and
-- that none was expired; a function that raises, fails or returns garbage;
-- client:credentials(); option checks; and no secret in any output.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local credentials = require "ddbkit.credentials"
local corort = require "ddbkit.runtime.coroutine"
local cjson = require "cjson.safe"

local floor = math.floor
local function now_s() return floor(core.now_ms() / 1000) end

-- A host function handing out credentials that expire `life` seconds after
-- each call, with a new key id each time; it records what it gave.
local function rotating(prefix, life)
  local st = { n = 0, given = {} }
  st.fn = function()
    st.n = st.n + 1
    local c = { access_key_id = prefix .. st.n, secret_access_key = "hostsecret" .. prefix .. st.n,
                session_token = "hosttoken" .. prefix .. st.n, expiration = now_s() + life }
    st.given[c.access_key_id] = c
    return c
  end
  return st
end

-- Every signer-log entry since `since` with a key id starting with prefix
-- was a key the function gave and was signed before that key expired.
local function assert_signed_unexpired(since, prefix, st)
  local seen, keys = 0, {}
  for _, s in ipairs(H.proxy_signers(since)) do
    if s.key_id:sub(1, #prefix) == prefix then
      local c = st.given[s.key_id]
      assert.is_truthy(c, "signed with a key the function never gave: " .. s.key_id)
      assert.is_true(s.amz_epoch < c.expiration,
                     s.key_id .. " signed at " .. s.amz_epoch .. ", expired at " .. c.expiration)
      seen = seen + 1
      keys[s.key_id] = true
    end
  end
  local nkeys = 0
  for _ in pairs(keys) do nkeys = nkeys + 1 end
  return seen, nkeys
end

-- Walks v (tables, keys and values) and fails on any string holding one of
-- the needles.
local function assert_no_secret(v, needles, seen)
  seen = seen or {}
  if type(v) == "table" then
    if seen[v] then return end
    seen[v] = true
    for k, x in pairs(v) do assert_no_secret(k, needles, seen) assert_no_secret(x, needles, seen) end
    return
  end
  local s = tostring(v)
  for _, n in ipairs(needles) do
    assert.is_falsy(s:find(n, 1, true), "a secret in the output: " .. s)
  end
end

describe("credentials from a host function", function()
  local proxy_client_opts

  setup(function()
    assert(H.proxy, "the fault proxy is not running")
    proxy_client_opts = { region = "us-east-1", endpoint = H.proxy }
  end)

  local function client(fn, extra)
    local o = { credentials = fn }
    for k, v in pairs(proxy_client_opts) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(ddbkit.client(o))
  end

  it("blocking: rotates across 3 rotations, every request signed with an unexpired key it gave", function()
    local st = rotating("hostblk", 3)
    local c = client(st.fn)
    local since = H.proxy_signer_seq()
    local deadline = core.mono_ms() + 30000
    local calls = 0
    -- Bounded by rotations seen, not by time: the function is called when
    -- the cell says the credentials are due (about 2 s here).
    while st.n < 4 and core.mono_ms() < deadline do
      assert(c:list_tables{})
      calls = calls + 1
      core.sleep_ms(20)   -- pacing of the load, not synchronisation
    end
    assert.is_true(st.n >= 4, "only " .. st.n .. " credential sets in 30 s")
    local seen, nkeys = assert_signed_unexpired(since, "hostblk", st)
    assert.are.equal(calls, seen)
    assert.is_true(nkeys >= 3)
    local info = c:credentials()
    assert.are.equal("host", info.provider)
    assert.are.equal(st.n, info.fetches)
    assert.are.equal(0, info.failures)
    assert.is_number(info.expires_at)
    assert.is_number(info.refresh_at)
    assert.is_true(info.refresh_at <= info.expires_at)
    c:close()
  end)

  it("coroutine: 4 tasks share one call of the function per rotation", function()
    local st = rotating("hostco", 3)
    local c = client(st.fn, { runtime = "coroutine" })
    local since = H.proxy_signer_seq()
    local calls = 0
    local tasks = {}
    for i = 1, 4 do
      tasks[i] = ddbkit.spawn(function()
        local deadline = core.mono_ms() + 30000
        while st.n < 4 and core.mono_ms() < deadline do
          assert(c:list_tables{})
          calls = calls + 1
          corort.sleep(20)
        end
      end)
    end
    local deadline = core.mono_ms() + 40000
    while core.mono_ms() < deadline do
      local n = assert(ddbkit.step(50))
      if n == 0 then break end
    end
    for i = 1, 4 do assert.is_true((tasks[i]:result())) end
    assert.is_true(st.n >= 4)
    local seen, nkeys = assert_signed_unexpired(since, "hostco", st)
    assert.are.equal(calls, seen)
    assert.is_true(nkeys >= 3)
    -- one call per rotation, not one per task: the cell's fetch count is
    -- the function's call count
    assert.are.equal(st.n, c:credentials().fetches)
    c:close()
  end)

  it("coroutine: a function that yields (a timer inside) is waited for by the other tasks", function()
    local n = 0
    local c = client(function()
      n = n + 1
      corort.sleep(50)
      return { access_key_id = "hostyield" .. n, secret_access_key = "s", expiration = now_s() + 600 }
    end, { runtime = "coroutine" })
    local ok = 0
    for _ = 1, 5 do
      ddbkit.spawn(function() if c:list_tables{} then ok = ok + 1 end end)
    end
    local deadline = core.mono_ms() + 20000
    while core.mono_ms() < deadline and assert(ddbkit.step(50)) > 0 do end
    assert.are.equal(5, ok)
    assert.are.equal(1, n)
    c:close()
  end)

  it("a function that raises keeps the old credentials while they last", function()
    local n, fail = 0, false
    local c = client(function()
      n = n + 1
      if fail then error("vault unreachable") end
      return { access_key_id = "hostkeep" .. n, secret_access_key = "s", expiration = now_s() + 3 }
    end)
    assert(c:list_tables{})
    fail = true
    -- Until the cell says the old ones are due: then the function fails,
    -- the call still goes through with the old ones.
    local deadline = core.mono_ms() + 10000
    while n < 2 and core.mono_ms() < deadline do
      assert(c:list_tables{})
      core.sleep_ms(20)
    end
    assert.are.equal(2, n)
    assert(c:list_tables{})   -- in the backoff: no call of the function, old keys
    assert.are.equal(2, n)
    local info = c:credentials()
    assert.are.equal(1, info.failures)
    assert.matches("vault unreachable", info.last_error, 1, true)
    -- Once they have expired: CredentialsError naming the host provider.
    local err
    deadline = core.mono_ms() + 10000
    repeat
      local res
      res, err = c:list_tables{}
      core.sleep_ms(50)
    until err or core.mono_ms() > deadline
    assert.is_truthy(err, "still signing after the credentials expired")
    assert.are.equal("CredentialsError", err.code)
    assert.matches("host", err.message, 1, true)
    c:close()
  end)

  it("a function returning nil, err or garbage: a clear error, no call sent", function()
    local cases = {
      { function() return nil, "no token yet" end, "no token yet" },
      { function() return "AKID" end, "returned string instead of a table" },
      { function() return { access_key_id = "a" } end, "no secret_access_key" },
      { function() return { access_key_id = "a", secret_access_key = "s\r\nX: y" } end,
        "secret_access_key with a control character" },
      { function() return { access_key_id = "a", secret_access_key = "s", expiration = "soon" } end,
        "expiration that is not epoch seconds" },
      { function() return { access_key_id = "a", secret_access_key = "s", extra = 1 } end,
        "unknown field extra" },
      { function() return { access_key_id = "a", secret_access_key = "s", expiration = now_s() - 10 } end,
        "refused" },
    }
    for _, case in ipairs(cases) do
      local c = client(case[1])
      local since = H.proxy_signer_seq()
      local res, err = c:list_tables{}
      assert.is_nil(res)
      assert.are.equal("CredentialsError", err.code)
      assert.matches(case[2], err.message, 1, true)
      assert.are.equal(0, #H.proxy_signers(since))
      -- in the backoff: fails at once with the same error, the function not called again
      local _, err2 = c:list_tables{}
      assert.are.equal("CredentialsError", err2.code)
      assert.are.equal(1, c:credentials().failures)
      c:close()
    end
  end)

  it("locks and stores go through the same check (call_raw)", function()
    local st = rotating("hostlock", 600)
    local admin = H.client()
    local T = H.create_table(admin, H.unique("credlock"))
    local c = client(st.fn)
    local since = H.proxy_signer_seq()
    local locks = ddbkit.lock.new{ client = c, table_name = T, key = { pk = "k", sk = "L" } }
    local h = assert(locks:acquire{ lease_ms = 5000 })
    assert(h:release())
    assert.are.equal(1, st.n)
    local seen = assert_signed_unexpired(since, "hostlock", st)
    assert.is_true(seen >= 2)   -- the acquire and the release, signed with the function's key
    c:close()
    admin:delete_table{ TableName = T }
  end)

  it("no secret or token in client:credentials(), stats, errors or tostring", function()
    local n = 0
    local c = client(function()
      n = n + 1
      if n > 1 then error("refresh failed") end
      return { access_key_id = "hostnosecret", secret_access_key = "TOPSECRETVALUE",
               session_token = "TOPSECRETTOKEN", expiration = now_s() + 3 }
    end)
    assert(c:list_tables{})
    local _, err = c:get_item{ TableName = "missing-" .. H.unique(), Key = { pk = "a" } }
    local needles = { "TOPSECRETVALUE", "TOPSECRETTOKEN" }
    assert_no_secret(c:credentials(), needles)
    assert_no_secret(c:stats(), needles)
    assert_no_secret(err, needles)
    assert_no_secret(tostring(err), needles)
    assert_no_secret(tostring(c.core), needles)
    assert_no_secret(c, needles)   -- the client table (its state) holds none either
    c:close()
  end)
end)

describe("credentials: options and shapes", function()
  it("client:credentials() for static keys", function()
    local c = H.client()
    local info = c:credentials()
    assert.are.equal("config", info.provider)
    assert.is_nil(info.expires_at)
    assert.is_nil(info.last_error)
    assert_no_secret(info, { H.credentials.secret_access_key })
    c:close()
  end)

  it("misuse raises, naming the option", function()
    local base = { region = "us-east-1", endpoint = H.endpoint }
    local function bad(extra, msg)
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      for k, v in pairs(extra) do o[k] = v end
      local ok, err = pcall(ddbkit.client, o)
      assert.is_false(ok)
      assert.matches(msg, err, 1, true)
    end
    bad({ credentials = "AKID" }, "opts.credentials must be a table or a function")
    bad({ ca_file = 5 }, "opts.ca_file must be a non-empty string")
    bad({ use_fips_endpoint = "yes" }, "opts.use_fips_endpoint must be a boolean")
    bad({ use_dualstack_endpoint = 1 }, "opts.use_dualstack_endpoint must be a boolean")
    bad({ credentials_dict = "creds" }, "opts.credentials_dict is for the openresty runtime")
    bad({ credentials_dict = 3 }, "opts.credentials_dict must be a non-empty string")
  end)

  it("ca_file that cannot be read: an error naming the option, not a raise", function()
    local c, err = ddbkit.client{ region = "us-east-1", endpoint = H.endpoint,
                                  credentials = H.credentials, ca_file = "/nonexistent/ca.pem" }
    assert.is_nil(c)
    assert.matches("/nonexistent/ca.pem", err.message, 1, true)
  end)

  it("use_fips_endpoint / use_dualstack_endpoint pick the default endpoint", function()
    local c = assert(ddbkit.client{ region = "eu-west-1", credentials = H.credentials,
                                    use_fips_endpoint = true })
    assert.matches("dynamodb-fips.eu-west-1", c:endpoint(), 1, true)
    c:close()
    c = assert(ddbkit.client{ region = "eu-west-1", credentials = H.credentials,
                              use_dualstack_endpoint = true })
    assert.matches("api.aws", c:endpoint(), 1, true)
    c:close()
  end)

  it("validate: what a host function may return", function()
    assert.is_truthy(credentials.validate{ access_key_id = "a", secret_access_key = "b" })
    assert.is_truthy(credentials.validate{ access_key_id = "a", secret_access_key = "b",
                                           session_token = "t", expiration = 2e9 })
    local _, why = credentials.validate{ access_key_id = "a", secret_access_key = "SECRETX\0" }
    assert.matches("control character", why, 1, true)
    assert.is_falsy(why:find("SECRETX", 1, true))
    _, why = credentials.validate{ access_key_id = "a", secret_access_key = "b", expiration = 0 / 0 }
    assert.matches("expiration", why, 1, true)
  end)

  it("core.cred_set refuses on a chain client's expired input and cred_begin needs no fetch for static keys", function()
    local c = H.client()
    assert.is_nil(core.cred_begin(c.core))
    assert.are.equal("fresh", core.cred_state(c.core))
    local ok, err = core.cred_set(c.core, { access_key_id = "a", secret_access_key = "b",
                                            expiration = now_s() - 5 })
    assert.is_nil(ok)
    assert.are.equal("CredentialsError", err.code)
    assert.is_string(core.cred_id(c.core))
    c:close()
  end)
end)

describe("the engine's machine driven from Lua (as in OpenResty), outside nginx", function()
  it("fetches with the runtime's request, shares through the dict, gives back a dropped claim", function()
    assert(H.fakemeta and H.fakemeta ~= "", "the fake credential services are not running")
    H.fake_control{ reset = true, ttl = { container = 600 }, container_token = "luaworker-token" }
    local before = H.fake_get("stats").endpoints.container.issued
    local env = {
      AWS_CONTAINER_CREDENTIALS_FULL_URI = H.fakemeta .. "/container/creds",
      AWS_CONTAINER_AUTHORIZATION_TOKEN = "luaworker-token",
      AWS_REGION = "us-east-1", DDBKIT_TEST_PROXY = H.proxy, PATH = os.getenv("PATH"),
      HOME = "/nonexistent",
    }
    local e = {}
    for k, v in pairs(env) do e[#e + 1] = H.shell_quote(k .. "=" .. v) end
    for _, k in ipairs{ "LUA_PATH", "LUA_CPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
      local v = os.getenv(k)
      if v and v ~= "" then e[#e + 1] = H.shell_quote(k .. "=" .. v) end
    end
    local cmd = "env -u LD_PRELOAD timeout -k 5 60 env -i " .. table.concat(e, " ") .. " "
      .. H.interpreter() .. " " .. H.shell_quote(H.spec_dir() .. "/credentials_lua_worker.lua") .. " 2>&1"
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    local R = cjson.decode(out:match("RESULT ([^\n]*)") or "null")
    assert.is_table(R, out)
    assert.is_true(R.first, out)
    assert.are.equal("container", R.info1.provider)
    assert.are.equal(1, R.info1.fetches)
    assert.are.equal(1, R.requests_after_first)
    assert.are.equal(1, R.dict_entries)
    assert.is_true(R.second)
    assert.are.equal(1, R.requests_after_second)   -- from the dict, no fetch
    assert.are.equal(R.info1.expires_at, R.info2.expires_at)
    assert.is_true(R.began)
    assert.are.equal("http", R.first_action)
    assert.matches("not done", R.take_early, 1, true)
    assert.matches("a fetch of this client expected", R.end_other, 1, true)
    assert.is_false(R.while_claimed)
    assert.is_true(R.after_gc)
    assert.is_true(R.done)
    assert.are.same({ "access_key_id", "expiration", "secret_access_key", "session_token" }, R.take_fields)
    assert.is_true(R.ended)
    assert.matches("has ended", R.used_after_end, 1, true)
    assert.are.equal("fresh", R.state3)
    assert.is_true(R.third)
    -- Two issues: c1's and c3's; c2 took c1's from the dict, and the
    -- dropped fetch never sent its request (dropped after next).
    assert.are.equal(before + 2, H.fake_get("stats").endpoints.container.issued)
    for _, iss in ipairs(H.fake_get("issued?endpoint=container")) do
      assert.is_falsy(out:find(iss.secret_access_key, 1, true))
      assert.is_falsy(out:find(iss.session_token, 1, true))
    end
  end)
end)
