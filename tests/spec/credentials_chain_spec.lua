-- The credential chain end to end: each case is a process
-- (credentials_worker.lua) whose environment and HOME hold only what EC2,
-- ECS, EKS (IRSA, Pod Identity), a laptop with SSO or a developer's shared
-- files would give, pointed at the fake credential services
-- (tests/harness/fakemeta.py) and, for DynamoDB, at the fault proxy in front
-- of DynamoDB Local. The worker makes `ddbkit.client{}` and calls.
--
-- Rotation cases run until the fake has issued ROTATIONS + 1 credential
-- sets with a short TTL, then hold every DynamoDB request the proxy saw
-- (its signer log) against the fake's issue log: signed with a key the fake
-- issued to that case, with that key's session token, X-Amz-Date before its
-- expiry; one fetch per rotation (the fake's count equals the client's
-- fetches, and no two fetches of one client come close together). The
-- rotation cases run in two waves of parallel workers, each worker on
-- endpoints no other one of its wave uses, so the suite waits for the
-- rotations once per wave rather than once per case.
--
-- Every case greps all the worker printed for every secret and token the
-- fake issued or the case configured.
local H = require "test_helper"
local cjson = require "cjson.safe"

local FAKE = H.fakemeta
local TTL = 10                 -- seconds: refresh comes 6-8 s after a fetch
local ROTATIONS = 3
local ROLE = "arn:aws:iam::111122223333:role/"
local WAVE_SECONDS = 120       -- bound on a rotation worker

-- Secrets the spec itself handed out (static secret keys, bearer tokens);
-- the fake's issue log has the rest.
local secrets = {}
local function secret(s) secrets[#secrets + 1] = s return s end

local function assert_no_secrets(out)
  for _, e in ipairs(H.fake_get("issued")) do
    assert.is_nil(out:find(e.secret_access_key, 1, true), "a secret key in the worker's output")
    assert.is_nil(out:find(e.session_token, 1, true), "a session token in the worker's output")
  end
  for _, t in ipairs(H.fake_get("tokens")) do
    assert.is_nil(out:find(t, 1, true), "an IMDS session token in the worker's output")
  end
  for _, s in ipairs(secrets) do
    assert.is_nil(out:find(s, 1, true), "a configured secret in the worker's output")
  end
end

local function sha1_hex(s)
  local p = assert(io.popen("printf '%s' " .. H.shell_quote(s) .. " | env -u LD_PRELOAD sha1sum"))
  local out = p:read("*a")
  p:close()
  return assert(out:match("^(%x+)"))
end

-- "${HOME}" in a file or a variable of a case is the case's HOME.
local function at_home(s, home)
  return (s:gsub("%${HOME}", function() return home end))
end

-- A temporary HOME with files: { [relative path] = text | { text, mode } }.
local function home_with(files)
  local home = H.mktemp_dir()
  for rel, v in pairs(files or {}) do
    local path = home .. "/" .. rel
    local text, mode = v, nil
    if type(v) == "table" then text, mode = v[1], v[2] end
    text = at_home(text, home)
    os.execute("mkdir -p " .. H.shell_quote(path:match("^(.*)/[^/]*$")))
    H.write_file(path, text)
    if mode then os.execute("chmod " .. mode .. " " .. H.shell_quote(path)) end
  end
  return home
end

-- What every case's host has: IMDS (the fake: an EC2 instance underneath
-- everything, so precedence is proven against it), STS and SSO endpoints,
-- DynamoDB through the proxy, a region.
local function base_env(home)
  return {
    PATH = "/usr/bin:/bin",
    HOME = home,
    AWS_REGION = "us-east-1",
    AWS_ENDPOINT_URL_DYNAMODB = H.proxy,
    AWS_EC2_METADATA_SERVICE_ENDPOINT = FAKE,
    AWS_ENDPOINT_URL_STS = FAKE .. "/sts/",
    AWS_ENDPOINT_URL_SSO = FAKE .. "/sso",
    DDBKIT_CREDENTIAL_PROCESS_TIMEOUT_MS = "2000",
  }
end

-- case: { env = { NAME = value | false (unset) }, files = ..., home = dir,
-- (values and file texts may say ${HOME})
-- plan = (worker plan), seconds = bound }
local function start(case)
  local home = case.home or home_with(case.files)
  local env = base_env(home)
  for k, v in pairs(case.env or {}) do
    if v == false then env[k] = nil else env[k] = at_home(v, home) end
  end
  local w = H.env_worker(env, case.plan or { calls = 1 }, case.seconds or 60)
  w.home = home
  return w
end

local function finish(w)
  local res, out, code = H.env_worker_wait(w)
  os.execute("rm -rf " .. H.shell_quote(w.home))
  assert_no_secrets(out)
  assert.are.equal(0, code, "the worker failed:\n" .. out)
  assert.is_table(res, "no RESULT from the worker:\n" .. out)
  assert.is_nil(res.raised, out)
  return res, out
end

local function run(case)
  return finish(start(case))
end

local function issued(query)
  local st, body = H.http("GET", FAKE .. "/_issued?" .. query)
  assert.are.equal(200, st)
  return assert(cjson.decode(body))
end

local function q(endpoint, detail)
  local s = "endpoint=" .. endpoint
  if detail then s = s .. "&detail=" .. detail:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte()) end) end
  return s
end

-- Polls (bounded) until f() is true; false when the bound ran out.
local function eventually(seconds, f)
  local deadline = os.time() + seconds
  while os.time() <= deadline do
    if f() then return true end
    os.execute("sleep 0.1")
  end
  return false
end

local function endpoint_stats(name)
  return H.fake_get("stats").endpoints[name]
end

-- The fake's requests of one route ("imds:PUT token", "sts:AssumeRole", ...).
local function requests_of(route)
  local out = {}
  for _, r in ipairs(H.fake_get("requests")) do
    if r.route == route then out[#out + 1] = r end
  end
  return out
end

local function worker_plan(query, extra)
  local p = { calls = 1, pause_ms = 250, max_seconds = WAVE_SECONDS - 20,
    wait = { url = FAKE, query = query, count = ROTATIONS + 1 } }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

--- The proof of a rotation case (see the head comment).
local function assert_rotated(res, out, query, since, provider)
  assert.is_nil(res.client_error, out)
  assert.is_nil(res.waited_out, "the fake did not issue " .. (ROTATIONS + 1)
    .. " sets in time:\n" .. out)
  assert.are.equal(0, res.failed, out)
  assert.is_true(res.ok >= 1, out)
  local sets = issued(query)
  assert.is_true(#sets >= ROTATIONS + 1, out)
  local by_key = {}
  for _, e in ipairs(sets) do by_key[e.access_key_id] = e end
  local signed = 0
  for _, s in ipairs(H.proxy_signers(since)) do
    local e = by_key[s.key_id]
    if e then
      signed = signed + 1
      assert.are.equal(e.token_sha256, s.token_sha256, "signed without its own session token")
      assert.is_true(s.amz_epoch < e.expires_at, string.format(
        "a request signed at %s with %s, which expired at %d", s.amz_date, s.key_id, e.expires_at))
    end
  end
  assert.is_true(signed >= res.calls, string.format(
    "%d calls but %d requests signed with this case's keys", res.calls, signed))
  -- One fetch per rotation: the fetches the client counted are the sets
  -- the fake issued to it, and none came right after another (a second
  -- fetch of the same rotation would be milliseconds later; a rotation is
  -- at least L - 1.5 * L/4 after the fetch before).
  assert.are.equal(provider, res.info.provider, out)
  assert.are.equal(#sets, res.info.fetches, out)
  table.sort(sets, function(a, b) return a.issued_at < b.issued_at end)
  for i = 2, #sets do
    local gap = sets[i].issued_at - sets[i - 1].issued_at
    assert.is_true(gap >= TTL / 2, string.format("two fetches %.3f s apart", gap))
  end
  assert.is_number(res.info.expires_at, out)
  for k in pairs(res.info) do
    assert.is_nil(k:find("secret", 1, true), "client:credentials() shows " .. k)
  end
end

--- No DynamoDB request since `since` signed with a key the fake did not
-- issue (or, when given, one of `static`), nor after its expiry.
local function assert_all_signed_by_issued(since, static)
  local by_key = {}
  for _, e in ipairs(H.fake_get("issued")) do by_key[e.access_key_id] = e end
  for _, s in ipairs(H.proxy_signers(since)) do
    local e = by_key[s.key_id]
    if not (static and static[s.key_id]) then
      assert.is_table(e, "a DynamoDB request signed with an unknown key " .. tostring(s.key_id))
      assert.is_true(s.amz_epoch < e.expires_at, "a request signed with an expired key")
    end
  end
end

local function assert_message_has(err, ...)
  assert.is_table(err)
  for _, word in ipairs{ ... } do
    assert.is_truthy((err.message or ""):find(word, 1, true),
      string.format("the %s message does not say %q: %s", tostring(err.code), word, tostring(err.message)))
  end
end

local function free_port()
  local p = assert(io.popen("env -u LD_PRELOAD " .. H.shell_quote(H.spec_dir() .. "/../harness/free_port.sh")))
  local port = p:read("*l")
  p:close()
  return assert(port)
end

local function config_text(lines) return table.concat(lines, "\n") .. "\n" end

assert(FAKE and FAKE ~= "", "the fake credential services are not running (DDBKIT_TEST_FAKEMETA)")
assert(H.proxy, "the fault proxy is not running (DDBKIT_TEST_PROXY)")

describe("the credential chain, across rotations", function()
  describe("wave 1: IMDS, container (token file), web identity, SSO, credential_process", function()
    local W, since = {}, 0
    local ctok1, ctok2 = secret("ctokfile1" .. H.unique("x")), secret("ctokfile2" .. H.unique("x"))
    local jwt1, jwt2 = secret("jwt1" .. H.unique("x")), secret("jwt2" .. H.unique("x"))
    local ssotok = secret("ssotoken" .. H.unique("x"))
    local sso_detail = "111122223333 DevRole"
    local wi_detail = "AssumeRoleWithWebIdentity " .. ROLE .. "irsa"

    setup(function()
      H.fake_control{ reset = true, ttl = TTL, container_token = ctok1,
        web_identity_token = jwt1, sso_token = ssotok }
      since = H.proxy_signer_seq()
      W.imds = start{ plan = worker_plan(q("imds")), seconds = WAVE_SECONDS }
      W.container = start{ seconds = WAVE_SECONDS,
        files = { ctoken = ctok1 .. "\n" },
        env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/file",
          AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = "${HOME}/ctoken" },
        plan = worker_plan(q("container", "/container/file")) }
      W.web = start{ seconds = WAVE_SECONDS, files = { ["eks/token"] = jwt1 },
        env = { AWS_ROLE_ARN = ROLE .. "irsa", AWS_ROLE_SESSION_NAME = "ddbkit-spec",
          AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/eks/token" },
        plan = worker_plan(q("sts", wi_detail)) }
      W.sso = start{ seconds = WAVE_SECONDS, env = { AWS_PROFILE = "dev" },
        files = {
          [".aws/config"] = config_text{
            "[profile dev]", "sso_session = corp", "sso_account_id = 111122223333",
            "sso_role_name = DevRole", "region = us-east-1", "",
            "[sso-session corp]", "sso_start_url = https://corp.awsapps.com/start",
            "sso_region = us-east-1", "sso_registration_scopes = sso:account:access" },
          [".aws/sso/cache/" .. sha1_hex("corp") .. ".json"] = cjson.encode{
            startUrl = "https://corp.awsapps.com/start", region = "us-east-1",
            accessToken = ssotok, expiresAt = "2099-01-01T00:00:00Z" },
        },
        plan = worker_plan(q("sso", sso_detail)) }
      W.process = start{ seconds = WAVE_SECONDS,
        files = {
          ["bin/creds.sh"] = { "#!/bin/sh\nexec curl -s -f -m 5 " .. FAKE .. "/process/creds\n", "755" },
          [".aws/config"] = config_text{ "[default]", "credential_process = ${HOME}/bin/creds.sh" },
        },
        plan = worker_plan(q("process")) }
    end)

    teardown(function()
      for _, w in pairs(W) do
        if type(w) == "table" and w.pipe then pcall(H.env_worker_wait, w) end
      end
    end)

    it("IMDSv2 (the session token revoked after the first fetch: 401, new token)", function()
      -- A reboot or a token past its TTL: the next fetch must take a new one.
      eventually(20, function() return #issued(q("imds")) >= 1 end)
      H.fake_control{ revoke_imds_tokens = true }
      local res, out = finish(W.imds)
      W.imds = nil
      assert_rotated(res, out, q("imds"), since, "imds")
    end)

    it("container endpoint, token file rewritten mid-run (re-read at each fetch)", function()
      eventually(20, function() return #issued(q("container", "/container/file")) >= 1 end)
      H.write_file(W.container.home .. "/ctoken", ctok2 .. "\n")
      H.fake_control{ container_token = ctok2 }
      local res, out = finish(W.container)
      W.container = nil
      assert_rotated(res, out, q("container", "/container/file"), since, "container")
      -- The fake refuses the old token now: sets issued after the change
      -- prove the file was read again.
      local refused = endpoint_stats("container").refused
      assert.are.equal(0, refused, "the old token was sent after the file changed")
    end)

    it("web identity (IRSA), token file rewritten mid-run", function()
      eventually(20, function() return #issued(q("sts", wi_detail)) >= 1 end)
      H.write_file(W.web.home .. "/eks/token", jwt2)
      H.fake_control{ web_identity_token = jwt2 }
      local res, out = finish(W.web)
      W.web = nil
      assert_rotated(res, out, q("sts", wi_detail), since, "web-identity")
      for _, r in ipairs(requests_of("sts:AssumeRoleWithWebIdentity")) do
        assert.are.equal(200, r.status, "a web identity exchange was refused (an old token?)")
      end
    end)

    it("SSO (cached token exchanged at the portal)", function()
      local res, out = finish(W.sso)
      W.sso = nil
      assert_rotated(res, out, q("sso", sso_detail), since, "sso")
    end)

    it("credential_process", function()
      local res, out = finish(W.process)
      W.process = nil
      assert_rotated(res, out, q("process"), since, "process")
    end)

    it("no request of the wave signed with an unknown or expired key", function()
      assert_all_signed_by_issued(since)
    end)
  end)

  describe("wave 2: container (token, coroutine runtime), assume-role from static keys, IMDS with 4 tasks", function()
    local W, since = {}, 0
    local ctok = secret("Bearer ctok" .. H.unique("x"))
    local src_secret = secret("srcsecret" .. H.unique("x"))
    local role_detail = "AssumeRole " .. ROLE .. "app"

    setup(function()
      H.fake_control{ reset = true, ttl = TTL, container_token = ctok,
        keys = { AKIDSRCSPEC1 = src_secret } }
      since = H.proxy_signer_seq()
      W.container = start{ seconds = WAVE_SECONDS,
        env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/plain",
          AWS_CONTAINER_AUTHORIZATION_TOKEN = ctok },
        plan = worker_plan(q("container", "/container/plain"), { runtime = "coroutine", tasks = 3 }) }
      W.role = start{ seconds = WAVE_SECONDS, env = { AWS_PROFILE = "app" },
        files = {
          [".aws/credentials"] = config_text{ "[src]", "aws_access_key_id = AKIDSRCSPEC1",
            "aws_secret_access_key = " .. src_secret },
          [".aws/config"] = config_text{ "[profile app]", "role_arn = " .. ROLE .. "app",
            "source_profile = src" },
        },
        plan = worker_plan(q("sts", role_detail)) }
      W.imds = start{ seconds = WAVE_SECONDS,
        plan = worker_plan(q("imds"), { runtime = "coroutine", tasks = 4, pause_ms = 100 }) }
    end)

    teardown(function()
      for _, w in pairs(W) do pcall(H.env_worker_wait, w) end
    end)

    it("container endpoint with AWS_CONTAINER_AUTHORIZATION_TOKEN, coroutine runtime, 3 tasks", function()
      local res, out = finish(W.container)
      W.container = nil
      assert_rotated(res, out, q("container", "/container/plain"), since, "container")
    end)

    it("profile role_arn + source_profile: AssumeRole signed with the source's static keys", function()
      local res, out = finish(W.role)
      W.role = nil
      assert_rotated(res, out, q("sts", role_detail), since, "assume-role")
      assert.are.equal("app", res.info.profile)
      local calls = requests_of("sts:AssumeRole")
      assert.are.equal(#issued(q("sts", role_detail)), #calls)
      for _, r in ipairs(calls) do
        assert.are.same({ "AKIDSRCSPEC1", "ok", 200 }, { r.signer, r.signature, r.status })
      end
    end)

    it("IMDSv2, coroutine runtime, 4 tasks calling at once: one fetch per rotation", function()
      local res, out = finish(W.imds)
      W.imds = nil
      assert_rotated(res, out, q("imds"), since, "imds")
      -- One credentials GET per rotation, whatever the number of tasks.
      assert.are.equal(#issued(q("imds")), #requests_of("imds:GET credentials"))
    end)

    it("no request of the wave signed with an unknown or expired key", function()
      assert_all_signed_by_issued(since)
    end)
  end)
end)

describe("the credential chain: failures and precedence", function()
  before_each(function()
    H.fake_control{ reset = true, ttl = 3600 }
  end)

  it("IMDS answering 401 to a session token: a new token, once, and the call succeeds", function()
    H.fake_control{ faults = { { endpoint = "imds", kind = "error", status = 401,
      match = "security-credentials/ddbkit" } } }
    local res, out = run{}
    assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
    assert.are.equal("imds", res.info.provider)
    assert.are.equal(2, #requests_of("imds:PUT token"), out)
    assert.are.equal(1, endpoint_stats("imds").issued)
  end)

  it("IMDS not answering (a closed port): MissingCredentials at once, listing every provider", function()
    local res, out = run{ env = { AWS_EC2_METADATA_SERVICE_ENDPOINT = "http://127.0.0.1:" .. free_port() } }
    local err = res.client_error or res.errors[1]
    assert.is_table(err, out)
    assert.are.equal("MissingCredentials", err.code, out)
    assert_message_has(err, "environment", "web-identity", "profile", "container", "imds")
    -- Refused at once: no waiting out the 1 s timeouts more than twice.
    if res.first_ms then assert.is_true(res.first_ms < 5000, out) end
  end)

  it("IMDS that never answers is asked once, not on every call (the failure is remembered)", function()
    H.fake_control{ faults = { { endpoint = "imds", kind = "refuse", forever = true } } }
    local res1, out1 = run{ plan = { calls = 1 } }
    assert.are.equal(1, res1.failed, out1)
    local one = endpoint_stats("imds").requests
    assert.is_true(one >= 1)
    H.fake_control{ reset = true }
    H.fake_control{ faults = { { endpoint = "imds", kind = "refuse", forever = true } } }
    local res5, out5 = run{ plan = { calls = 5, pause_ms = 0 } }
    assert.are.equal(5, res5.failed, out5)
    assert.are.equal(one, endpoint_stats("imds").requests, out5)
    assert.are.equal(res5.errors[1].code, res1.errors[1].code)
  end)

  it("AWS_EC2_METADATA_DISABLED and nothing else: MissingCredentials, IMDS never asked", function()
    local res, out = run{ env = { AWS_EC2_METADATA_DISABLED = "true" } }
    local err = res.client_error or res.errors[1]
    assert.are.equal("MissingCredentials", err and err.code, out)
    assert_message_has(err, "environment", "imds")
    assert.are.equal(0, endpoint_stats("imds").requests)
  end)

  it("container endpoint with a wrong token: CredentialsError naming the provider, no token shown", function()
    local good, bad = secret("Bearer good" .. H.unique("x")), secret("Bearer bad" .. H.unique("x"))
    H.fake_control{ container_token = good }
    local res, out = run{ env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/creds",
      AWS_CONTAINER_AUTHORIZATION_TOKEN = bad } }
    assert.are.equal(1, res.failed, out)
    assert.are.equal("CredentialsError", res.errors[1].code, out)
    assert_message_has(res.errors[1], "container")
    assert.are.equal(0, endpoint_stats("container").issued)
    assert.are.equal(0, endpoint_stats("imds").requests, "fell through to IMDS")
  end)

  it("credential_process that hangs: a timeout error, the process killed", function()
    local res, out = run{ files = {
      ["bin/hang.sh"] = { "#!/bin/sh\nexec sleep 60\n", "755" },
      [".aws/config"] = config_text{ "[default]", "credential_process = ${HOME}/bin/hang.sh" } } }
    assert.are.equal(1, res.failed, out)
    assert.are.equal("CredentialsError", res.errors[1].code, out)
    assert_message_has(res.errors[1], "process")
    local m = res.errors[1].message:lower()
    assert.is_truthy(m:find("time", 1, true), "the message does not say it timed out: " .. m)
  end)

  it("credential_process printing garbage: CredentialsError, nothing of its output shown", function()
    local junk = secret("notjson" .. H.unique("x"))
    local res, out = run{ files = {
      ["bin/junk.sh"] = { "#!/bin/sh\necho '" .. junk .. " {'\n", "755" },
      [".aws/config"] = config_text{ "[default]", "credential_process = ${HOME}/bin/junk.sh" } } }
    assert.are.equal(1, res.failed, out)
    assert.are.equal("CredentialsError", res.errors[1].code, out)
    assert_message_has(res.errors[1], "process")
  end)

  it("SSO with an expired cached token: CredentialsError telling to log in, portal not asked", function()
    local tok = secret("ssoexpired" .. H.unique("x"))
    local res, out = run{ env = { AWS_PROFILE = "dev" }, files = {
      [".aws/config"] = config_text{ "[profile dev]", "sso_start_url = https://corp.awsapps.com/start",
        "sso_region = us-east-1", "sso_account_id = 111122223333", "sso_role_name = DevRole" },
      [".aws/sso/cache/" .. sha1_hex("https://corp.awsapps.com/start") .. ".json"] = cjson.encode{
        startUrl = "https://corp.awsapps.com/start", region = "us-east-1",
        accessToken = tok, expiresAt = "2020-01-01T00:00:00Z" } } }
    assert.are.equal(1, res.failed + (res.client_error and 1 or 0), out)
    local err = res.client_error or res.errors[1]
    assert.are.equal("CredentialsError", err.code, out)
    assert_message_has(err, "sso", "aws sso login")
    assert.are.equal(0, endpoint_stats("sso").requests)
  end)

  it("STS AccessDenied: the service's code and the provider named", function()
    H.fake_control{ web_identity_token = "jwt", faults = { { endpoint = "sts", kind = "error",
      code = "AccessDenied", message = "Not authorized to perform sts:AssumeRoleWithWebIdentity",
      forever = true } } }
    local res, out = run{ files = { token = "jwt" }, env = { AWS_ROLE_ARN = ROLE .. "irsa",
      AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/token" } }
    assert.are.equal(1, res.failed, out)
    local err = res.errors[1]
    assert.is_truthy(err.code == "AccessDenied"
      or (err.code == "CredentialsError" and err.message:find("AccessDenied", 1, true)), out)
    assert_message_has(err, "web-identity")
    -- Not retried: a refusal is an answer.
    assert.are.equal(1, endpoint_stats("sts").requests)
  end)

  it("STS failing twice with 500, then answering: retried, the call succeeds", function()
    H.fake_control{ web_identity_token = "jwt", faults = { { endpoint = "sts", kind = "status",
      status = 500, count = 2 } } }
    local res, out = run{ files = { token = "jwt" }, env = { AWS_ROLE_ARN = ROLE .. "irsa",
      AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/token" } }
    assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
    assert.are.equal("web-identity", res.info.provider)
    local st = endpoint_stats("sts")
    assert.are.same({ 3, 1 }, { st.requests, st.issued })
  end)

  it("web identity token refused by STS as expired: the service's code, the provider named", function()
    H.fake_control{ faults = { { endpoint = "sts", kind = "error", status = 400,
      code = "ExpiredTokenException", message = "Token expired: current date/time 1 must be before the expiration date/time 0",
      forever = true } } }
    local res, out = run{ files = { token = "oldjwt" }, env = { AWS_ROLE_ARN = ROLE .. "irsa",
      AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/token" } }
    assert.are.equal(1, res.failed, out)
    local err = res.errors[1]
    assert.is_truthy(err.code == "ExpiredTokenException"
      or (err.code == "CredentialsError" and err.message:find("ExpiredToken", 1, true)), out)
    assert_message_has(err, "web-identity")
  end)

  it("web identity token file missing: an error naming the provider and the variable, not a crash", function()
    local res, out = run{ env = { AWS_ROLE_ARN = ROLE .. "irsa",
      AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/no-such-token" } }
    local err = res.client_error or res.errors[1]
    assert.is_table(err, out)
    assert.is_truthy(err.code == "CredentialsError" or err.code == "MissingCredentials", out)
    assert_message_has(err, "web-identity")
    assert.are.equal(0, endpoint_stats("sts").requests)
  end)

  it("STS throttling twice, then answering: retried, the call succeeds", function()
    H.fake_control{ web_identity_token = "jwt", faults = { { endpoint = "sts", kind = "throttle", count = 2 } } }
    local res, out = run{ files = { token = "jwt" }, env = { AWS_ROLE_ARN = ROLE .. "irsa",
      AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/token" } }
    assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
    assert.are.same({ 3, 1 }, { endpoint_stats("sts").requests, endpoint_stats("sts").issued })
  end)

  it("IMDS answering garbage: CredentialsError naming IMDS", function()
    H.fake_control{ faults = { { endpoint = "imds", kind = "garbage", forever = true,
      match = "security-credentials/ddbkit" } } }
    local res, out = run{}
    assert.are.equal(1, res.failed, out)
    assert.are.equal("CredentialsError", res.errors[1].code, out)
    assert_message_has(res.errors[1], "imds")
  end)

  it("a container endpoint that never answers in time: a timeout error naming the provider", function()
    H.fake_control{ faults = { { endpoint = "container", kind = "delay", ms = 30000, forever = true } } }
    local res, out = run{ env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/slow" },
      seconds = 90 }
    assert.are.equal(1, res.failed, out)
    assert.are.equal("CredentialsError", res.errors[1].code, out)
    assert_message_has(res.errors[1], "container")
    assert.is_truthy(res.errors[1].message:lower():find("time", 1, true), out)
    assert.are.equal(0, endpoint_stats("imds").requests, "fell through to IMDS")
  end)

  it("a refresh that keeps failing: the old credentials until they expire, then CredentialsError", function()
    H.fake_control{ ttl = TTL }
    local since = H.proxy_signer_seq()
    local w = start{ seconds = WAVE_SECONDS,
      env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/failing" },
      plan = { calls = 1, pause_ms = 200, until_failed = 3, max_seconds = WAVE_SECONDS - 20 } }
    assert.is_true(eventually(20, function() return endpoint_stats("container").issued >= 1 end))
    H.fake_control{ faults = { { endpoint = "container", kind = "status", status = 500, forever = true } } }
    local res, out = finish(w)
    assert.is_nil(res.waited_out, out)
    assert.are.equal(3, res.failed, out)
    -- Calls went on with the first set while its refresh failed.
    assert.is_true(res.ok >= 2, out)
    local sets = issued(q("container", "/container/failing"))
    assert.are.equal(1, #sets)
    local signed = 0
    for _, s in ipairs(H.proxy_signers(since)) do
      if s.key_id == sets[1].access_key_id then
        signed = signed + 1
        assert.is_true(s.amz_epoch < sets[1].expires_at, "signed with expired credentials")
      end
    end
    assert.are.equal(res.ok, signed, "a failed call still went to DynamoDB")
    local err = res.errors[1]
    assert.are.equal("CredentialsError", err.code, out)
    assert_message_has(err, "container")
    assert.are.equal(1, #res.errors, "each failed call said the same")
    -- Backoff: a failed fetch is not tried again on every call.
    assert.is_true(endpoint_stats("container").requests >= 2, out)
    assert.are.equal(1, res.info.fetches, out)
    assert.is_true(res.info.failures >= 1, out)
    assert.is_true(res.info.failures < res.calls, string.format(
      "%d failed fetches for %d calls: no backoff", res.info.failures, res.calls))
    local last = res.info.last_error
    if type(last) == "table" then last = last.message end
    assert.is_truthy(tostring(last):find("container", 1, true), out)
  end)

  describe("precedence", function()
    local env_secret = secret("envsecret" .. H.unique("x"))
    local prof_secret = secret("profsecret" .. H.unique("x"))

    -- Every source at once: env keys, web identity, a profile with static
    -- keys, a container endpoint, IMDS (base_env).
    local function everything(extra)
      local c = {
        files = {
          token = "jwt",
          [".aws/credentials"] = config_text{ "[default]", "aws_access_key_id = profdefault1",
            "aws_secret_access_key = " .. prof_secret, "", "[other]",
            "aws_access_key_id = profother1", "aws_secret_access_key = " .. prof_secret },
        },
        env = {
          AWS_ACCESS_KEY_ID = "envkeyspec1", AWS_SECRET_ACCESS_KEY = env_secret,
          AWS_ROLE_ARN = ROLE .. "irsa", AWS_WEB_IDENTITY_TOKEN_FILE = "${HOME}/token",
          AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/creds",
        },
      }
      for k, v in pairs(extra or {}) do c.env[k] = v end
      return c
    end

    local function signer_of(since)
      local log = H.proxy_signers(since)
      assert.is_true(#log >= 1)
      return log[#log]
    end

    local function nothing_asked()
      for _, e in pairs(H.fake_get("stats").endpoints) do
        assert.are.equal(0, e.requests, "a provider after the chosen one was asked")
      end
    end

    it("environment keys beat everything after them (AWS_PROFILE too)", function()
      H.fake_control{ web_identity_token = "jwt" }
      local since = H.proxy_signer_seq()
      local res, out = run(everything{ AWS_PROFILE = "other" })
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("environment", res.info.provider)
      assert.are.equal("envkeyspec1", signer_of(since).key_id)
      nothing_asked()
    end)

    it("web identity beats the shared files, the container endpoint and IMDS", function()
      H.fake_control{ web_identity_token = "jwt" }
      local res, out = run(everything{ AWS_ACCESS_KEY_ID = false, AWS_SECRET_ACCESS_KEY = false })
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("web-identity", res.info.provider)
      local st = H.fake_get("stats").endpoints
      assert.are.same({ 1, 0, 0 }, { st.sts.issued, st.container.requests, st.imds.requests })
    end)

    it("the shared files beat the container endpoint and IMDS; AWS_PROFILE picks the profile", function()
      local base = { AWS_ACCESS_KEY_ID = false, AWS_SECRET_ACCESS_KEY = false,
        AWS_ROLE_ARN = false, AWS_WEB_IDENTITY_TOKEN_FILE = false }
      local since = H.proxy_signer_seq()
      local res, out = run(everything(base))
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("profile", res.info.provider)
      assert.are.equal("profdefault1", signer_of(since).key_id)
      base.AWS_PROFILE = "other"
      since = H.proxy_signer_seq()
      res, out = run(everything(base))
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("other", res.info.profile)
      assert.are.equal("profother1", signer_of(since).key_id)
      nothing_asked()
    end)

    it("the container endpoint beats IMDS", function()
      local res, out = run{ env = { AWS_CONTAINER_CREDENTIALS_FULL_URI = FAKE .. "/container/creds" } }
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("container", res.info.provider)
      assert.are.equal(0, endpoint_stats("imds").requests)
    end)

    -- As `aws --profile app`: a profile named explicitly (the client's
    -- `profile` option) passes over the environment's keys, which the
    -- profile then uses as its source. With only AWS_PROFILE the keys
    -- would win (the case above), as in the AWS CLI and boto3.
    it("credential_source = Environment: AssumeRole signed with the environment's keys", function()
      local env_src_secret = secret("envsrcsecret" .. H.unique("x"))
      H.fake_control{ keys = { AKIDENVSRC1 = env_src_secret } }
      local res, out = run{ plan = { calls = 1, profile = "app" },
        env = { AWS_ACCESS_KEY_ID = "AKIDENVSRC1", AWS_SECRET_ACCESS_KEY = env_src_secret },
        files = { [".aws/config"] = config_text{ "[profile app]", "role_arn = " .. ROLE .. "envrole",
          "credential_source = Environment" } } }
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
      assert.are.equal("assume-role", res.info.provider)
      local calls = requests_of("sts:AssumeRole")
      assert.are.equal(1, #calls)
      assert.are.same({ "AKIDENVSRC1", "ok", 200 }, { calls[1].signer, calls[1].signature, calls[1].status })
    end)
  end)

  it("the ddbkit command on an EC2 host: credentials from IMDS, nothing configured", function()
    local root = H.spec_dir() .. "/../.."
    local bin = root .. "/build/ddbkit"
    local preload = os.getenv("LD_PRELOAD") or ""
    if preload:find("asan", 1, true) and H.read_file(root .. "/build/ddbkit-asan") then
      bin = root .. "/build/ddbkit-asan"
    end
    local home = home_with{ ["list.lua"] = table.concat({
      "local r, err = client:list_tables{ Limit = 1 }",
      "print(r and 'ok' or ('failed ' .. tostring(err and err.code)))",
      "local ok, info = pcall(client.credentials, client)",
      "print('provider=' .. tostring(ok and info and info.provider))" }, "\n") }
    local env = base_env(home)
    env.XDG_CONFIG_HOME, env.XDG_STATE_HOME = home .. "/config", home .. "/state"
    local parts = { "env -u LD_PRELOAD timeout -k 5 60 env -i" }
    for k, v in pairs(env) do parts[#parts + 1] = H.shell_quote(k .. "=" .. v) end
    if preload ~= "" then parts[#parts + 1] = H.shell_quote("LD_PRELOAD=" .. preload) end
    parts[#parts + 1] = H.shell_quote(bin) .. " run " .. H.shell_quote(home .. "/list.lua")
    local since = H.proxy_signer_seq()
    local p = assert(io.popen(table.concat(parts, " ") .. " 2>&1; echo \"EXIT:$?\""))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. H.shell_quote(home))
    assert_no_secrets(out)
    assert.is_truthy(out:find("EXIT:0", 1, true), out)
    assert.is_truthy(out:find("ok\nprovider=imds\n", 1, true), out)
    local sets = issued(q("imds"))
    assert.are.equal(1, #sets)
    local log = H.proxy_signers(since)
    assert.are.same({ sets[1].access_key_id, sets[1].token_sha256 },
      { log[#log].key_id, log[#log].token_sha256 })
  end)

  it("the region from the profile when no AWS_REGION is set", function()
    local since = H.proxy_signer_seq()
    local res, out = run{ env = { AWS_REGION = false, AWS_PROFILE = "eu" }, files = {
      [".aws/config"] = config_text{ "[profile eu]", "region = eu-west-1" },
      [".aws/credentials"] = config_text{ "[eu]", "aws_access_key_id = regionkey1",
        "aws_secret_access_key = " .. secret("regionsecret" .. H.unique("x")) } } }
    assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
    local log = H.proxy_signers(since)
    assert.are.same({ "regionkey1", "eu-west-1" }, { log[#log].key_id, log[#log].region })
  end)
end)
