-- Credentials from the chain inside OpenResty: nginx with 2 workers
-- (tests/nginx/credentials.conf.in, handlers tests/nginx/credapp.lua) gets
-- them from the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI with
-- an authorization token, as ECS and EKS Pod Identity give), played by the
-- fake (tests/harness/fakemeta.py) with 6 s credentials, so a run of a few
-- hundred requests spans at least 3 rotations. The fetches run on cosockets
-- (ddbkit.credentials driving the engine's machine); with credentials_dict
-- the workers share one fetch per rotation: the fake's issue log must show
-- issues a rotation apart, never two at once. Every DynamoDB request goes
-- through the fault proxy, whose signer log proves each was signed with a
-- key the fake issued, before it expired. This file only drives nginx from
-- outside (curl), so it runs the same under Lua 5.4 and LuaJIT.
local H = require "test_helper"
local cjson = require "cjson.safe"

local q = H.shell_quote
local DRIVER = H.spec_dir() .. "/../nginx/driver.sh"
local CONF = H.spec_dir() .. "/../nginx/credentials.conf.in"
local TTL = 6               -- seconds the fake's credentials live
local TOKEN = "ctok-openresty-spec"

local sh = H.sh

-- Issues of an endpoint of the fake, oldest first.
local function issued(after_seq, endpoint)
  local out = {}
  for _, e in ipairs(H.fake_get("issued?endpoint=" .. (endpoint or "container"))) do
    if e.seq > (after_seq or 0) then out[#out + 1] = e end
  end
  table.sort(out, function(a, b) return a.seq < b.seq end)
  return out
end

local function last_issue_seq()
  local all = H.fake_get("issued")
  local m = 0
  for _, e in ipairs(all) do if e.seq > m then m = e.seq end end
  return m
end

-- Requests base .. path until the fake has issued `rotations` + 1 sets
-- from `endpoint` for this phase (bounded: 60 s). Returns the answers and
-- the pids seen.
local function run(base, path, after_seq, rotations, endpoint)
  local answers, pids = {}, {}
  local deadline = os.time() + 60
  while os.time() < deadline do
    for _ = 1, 10 do
      local st, body = H.http("GET", base .. path)
      assert.are.equal(200, st, body)
      local a = assert(cjson.decode(body), body)
      answers[#answers + 1] = { a = a, body = body }
      pids[a.pid] = true
      sh("sleep 0.05")   -- pacing of the load, not synchronisation
    end
    if #issued(after_seq, endpoint) >= rotations + 1 then break end
  end
  return answers, pids
end

-- Every signer-log entry since `since` names a key the fake issued and
-- was made before that key expired; returns how many.
local function assert_signed_unexpired(since)
  local by_key = {}
  for _, e in ipairs(H.fake_get("issued")) do by_key[e.access_key_id] = e end
  local n = 0
  for _, s in ipairs(H.proxy_signers(since)) do
    local e = by_key[s.key_id]
    assert.is_truthy(e, "a request signed with a key the fake never issued: " .. tostring(s.key_id))
    assert.is_true(s.amz_epoch < e.expires_at,
      s.key_id .. " signed at " .. s.amz_epoch .. ", expired at " .. e.expires_at)
    n = n + 1
  end
  return n
end

-- The requests are sequential, one DynamoDB request each: signer-log
-- entry i is answer i's. key id -> the set of worker pids that signed
-- with it; and how many keys both workers used.
local function keys_by_worker(answers, since)
  local log = H.proxy_signers(since)
  assert.are.equal(#answers, #log)
  local pids_of, shared = {}, 0
  for i, s in ipairs(log) do
    local t = pids_of[s.key_id] or {}
    pids_of[s.key_id] = t
    if not t[answers[i].a.pid] then
      t[answers[i].a.pid] = true
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      if n == 2 then shared = shared + 1 end
    end
  end
  return pids_of, shared
end

local function assert_no_secret(answers)
  for _, e in ipairs(H.fake_get("issued")) do
    for _, x in ipairs(answers) do
      assert.is_falsy(x.body:find(e.secret_access_key, 1, true))
      assert.is_falsy(x.body:find(e.session_token, 1, true))
    end
  end
end


describe("OpenResty credentials from the container endpoint", function()
  local prefix, base

  setup(function()
    assert(H.fakemeta and H.fakemeta ~= "", "the fake credential services are not running")
    assert(H.proxy, "the fault proxy is not running")
    H.fake_control{ reset = true, ttl = { container = TTL }, container_token = TOKEN }
    prefix = H.mktemp_dir()
    local out, ok = sh(string.format(
      "NGINX_CONF_IN=%s DDBKIT_TEST_PROXY=%s AWS_CONTAINER_CREDENTIALS_FULL_URI=%s "
      .. "AWS_CONTAINER_AUTHORIZATION_TOKEN=%s AWS_REGION=us-east-1 bash %s start %s",
      q(CONF), q(H.proxy), q(H.fakemeta .. "/container/creds"), q(TOKEN), q(DRIVER), q(prefix)))
    local pid, port = out:match("(%d+) (%d+)%s*$")
    assert(ok and pid, "nginx did not start:\n" .. out)
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if prefix then
      local out, ok = sh("bash " .. q(DRIVER) .. " stop " .. q(prefix))
      assert(ok, "nginx did not stop:\n" .. out)
    end
  end)

  it("with credentials_dict: one fetch per rotation for the whole nginx, across 3 rotations", function()
    local seq0, since = last_issue_seq(), H.proxy_signer_seq()
    local answers, pids = run(base, "/call?dict=1", seq0, 3)
    for _, x in ipairs(answers) do assert.is_true(x.a.ok, x.body) end
    local npids = 0
    for _ in pairs(pids) do npids = npids + 1 end
    assert.are.equal(2, npids, "both workers served requests")
    local iss = issued(seq0)
    assert.is_true(#iss >= 4, "only " .. #iss .. " issues: fewer than 3 rotations")
    -- One fetch per rotation: each issue comes a rotation after the one
    -- before (the earliest refresh is 3/8 of the lifetime before expiry,
    -- ~3.7 s here), never two at once as two workers fetching each would.
    for i = 2, #iss do
      local gap = iss[i].issued_at - iss[i - 1].issued_at
      assert.is_true(gap > TTL / 3, string.format("issues %d and %d %.2f s apart", i - 1, i, gap))
    end
    assert.are.equal(#answers, assert_signed_unexpired(since))
    -- The same keys signed in both workers: one fetched, the other took
    -- them from the shared dict.
    local _, shared = keys_by_worker(answers, since)
    assert.is_true(shared >= 3, "only " .. shared .. " keys used by both workers")
    assert_no_secret(answers)
    -- client:credentials() in a worker: the provider and the expiry, no secret
    local st, body = H.http("GET", base .. "/info?dict=1")
    assert.are.equal(200, st)
    local info = assert(cjson.decode(body))
    assert.are.equal("container", info.provider)
    assert.is_number(info.expires_at)
    assert_no_secret{ { body = body } }
  end)

  it("without a dict: each worker fetches for itself, on cosockets, never signing with expired keys", function()
    local seq0, since = last_issue_seq(), H.proxy_signer_seq()
    local answers = run(base, "/call", seq0, 3)
    for _, x in ipairs(answers) do assert.is_true(x.a.ok, x.body) end
    assert.are.equal(#answers, assert_signed_unexpired(since))
    -- Each worker signs with keys it fetched itself: none is used by both
    -- (what the dict case above rules out the other way round).
    local _, shared = keys_by_worker(answers, since)
    assert.are.equal(0, shared)
    assert_no_secret(answers)
  end)

  it("a host credentials function that yields (ngx.sleep): every worker rotates, none signs expired", function()
    local since = H.proxy_signer_seq()
    local answers, keys = {}, {}
    local deadline = os.time() + 40
    while os.time() < deadline do
      local st, body = H.http("GET", base .. "/host")
      assert.are.equal(200, st, body)
      answers[#answers + 1] = { a = cjson.decode(body), body = body }
      sh("sleep 0.05")   -- pacing of the load, not synchronisation
      if #answers % 10 == 0 then
        keys = {}
        local n = 0
        for _, e in ipairs(H.proxy_signers(since)) do
          if not keys[e.key_id] then keys[e.key_id] = true n = n + 1 end
        end
        if n >= 6 then break end   -- 3 rotations in each of 2 workers
      end
    end
    local n = 0
    for _, x in ipairs(answers) do assert.is_true(x.a.ok, x.body) end
    for _, e in ipairs(H.proxy_signers(since)) do
      -- the function names each key ngxhost<pid>x<n>e<expiration>
      local exp = tonumber(e.key_id:match("^ngxhost%d+x%d+e(%d+)$"))
      assert.is_truthy(exp, "a key the function never gave: " .. e.key_id)
      assert.is_true(e.amz_epoch < exp, e.key_id .. " signed at " .. e.amz_epoch)
      n = n + 1
    end
    assert.are.equal(#answers, n)
    for _ in pairs(keys) do n = n + 1 end
    assert.is_true(n - #answers >= 6, "fewer than 3 rotations per worker")
    for _, x in ipairs(answers) do assert.is_falsy(x.body:find("ngxhostsecret", 1, true)) end
  end)

  it("a refused container token: CredentialsError naming the provider once the keys expire, none signed after", function()
    H.fake_control{ container_token = "another-token" }
    -- A fresh nginx client would be needed to see the first fetch fail; the
    -- running ones hold valid keys, so wait for their expiry through calls.
    local since = H.proxy_signer_seq()
    local deadline = os.time() + 30
    local failed
    while os.time() < deadline and not failed do
      local _, body = H.http("GET", base .. "/call")
      local a = cjson.decode(body)
      if a and not a.ok then failed = a end
      sh("sleep 0.1")
    end
    H.fake_control{ container_token = TOKEN }
    assert.is_truthy(failed, "calls still worked after the keys expired")
    assert.are.equal("CredentialsError", failed.code)
    assert.matches("container", failed.message, 1, true)
    assert_signed_unexpired(since)
  end)
end)

describe("OpenResty credentials from IMDSv2 and a credential_process", function()
  local prefix, base, home

  setup(function()
    assert(H.fakemeta and H.fakemeta ~= "", "the fake credential services are not running")
    H.fake_control{ reset = true, ttl = { imds = TTL, process = 600 } }
    home = H.mktemp_dir()
    H.write_file(home .. "/creds.sh", "#!/bin/sh\nexec curl -s -f -m 5 " .. H.fakemeta .. "/process/nginx\n")
    os.execute("chmod 755 " .. q(home .. "/creds.sh"))
    H.write_file(home .. "/config", "[profile proc]\ncredential_process = " .. home .. "/creds.sh\n")
    prefix = H.mktemp_dir()
    -- No container variables: the chain ends at IMDS (the default profile
    -- has nothing); the profile "proc" runs the command.
    local out, ok = sh(string.format(
      "NGINX_CONF_IN=%s DDBKIT_TEST_PROXY=%s AWS_EC2_METADATA_SERVICE_ENDPOINT=%s "
      .. "AWS_CONFIG_FILE=%s AWS_SHARED_CREDENTIALS_FILE=%s HOME=%s AWS_REGION=us-east-1 bash %s start %s",
      q(CONF), q(H.proxy), q(H.fakemeta), q(home .. "/config"), q(home .. "/none"), q(home),
      q(DRIVER), q(prefix)))
    local pid, port = out:match("(%d+) (%d+)%s*$")
    assert(ok and pid, "nginx did not start:\n" .. out)
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if prefix then
      local out, ok = sh("bash " .. q(DRIVER) .. " stop " .. q(prefix))
      assert(ok, "nginx did not stop:\n" .. out)
    end
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  it("IMDSv2 with credentials_dict: token, role, credentials on cosockets, one fetch per rotation", function()
    local seq0, since = last_issue_seq(), H.proxy_signer_seq()
    local answers = run(base, "/call?dict=1", seq0, 3, "imds")
    for _, x in ipairs(answers) do assert.is_true(x.a.ok, x.body) end
    local iss = issued(seq0, "imds")
    assert.is_true(#iss >= 4, "only " .. #iss .. " issues: fewer than 3 rotations")
    for i = 2, #iss do
      local gap = iss[i].issued_at - iss[i - 1].issued_at
      assert.is_true(gap > TTL / 3, string.format("issues %d and %d %.2f s apart", i - 1, i, gap))
    end
    assert.are.equal(#answers, assert_signed_unexpired(since))
    local _, shared = keys_by_worker(answers, since)
    assert.is_true(shared >= 3, "only " .. shared .. " keys used by both workers")
    assert_no_secret(answers)
    local st, body = H.http("GET", base .. "/info?dict=1")
    assert.are.equal(200, st)
    assert.are.equal("imds", cjson.decode(body).provider)
  end)

  it("credential_process: run with ngx.pipe, or a clear error where ngx.pipe is missing", function()
    local seq0, since = last_issue_seq(), H.proxy_signer_seq()
    local st, body = H.http("GET", base .. "/call?profile=proc")
    assert.are.equal(200, st, body)
    local a = assert(cjson.decode(body))
    if a.ok then
      assert.are.equal(1, #issued(seq0, "process"))
      assert.are.equal(1, assert_signed_unexpired(since))
    else
      -- lua-nginx-module without a working ngx.pipe (OpenResty before
      -- 1.15.8.1, or a distribution's nginx without OpenResty's patches)
      assert.are.equal("CredentialsError", a.code)
      assert.matches("ngx.pipe", a.message, 1, true)
      assert.are.equal(0, #H.proxy_signers(since))
    end
    assert_no_secret{ { body = body } }
  end)
end)
