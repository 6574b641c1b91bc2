-- The fake credential services (tests/harness/fakemeta.py) and the fault
-- proxy's signer log, tested on their own with curl: the credential-chain
-- specs trust them to refuse what AWS refuses and to log what they issued,
-- so a fake that accepted anything would let a broken provider pass.
local H = require "test_helper"
local core = require "ddbkit.core"
local cjson = require "cjson.safe"

local http, control = H.http, H.fake_control

local function url(path) return H.fakemeta .. path end

local TTL_HDR = "X-aws-ec2-metadata-token-ttl-seconds: 21600"
local ROLE_PATH = "/latest/meta-data/iam/security-credentials/"

local function imds_token()
  local st, tok = http("PUT", url("/latest/api/token"), { headers = { TTL_HDR } })
  assert.are.equal(200, st)
  assert.is_truthy(tok:match("^%w+$"), "token: " .. tok)
  return tok
end

local function imds_get(path, tok)
  return http("GET", url(path), { headers = tok and { "X-aws-ec2-metadata-token: " .. tok } or nil })
end

local function xml_field(body, name)
  return body:match("<" .. name .. ">([^<]*)</" .. name .. ">")
end

local function sts(form, opts)
  opts = opts or {}
  local parts = { "Version=2011-06-15", "RoleArn=arn:aws:iam::111122223333:role/r",
    "RoleSessionName=s" }
  for k, v in pairs(form) do parts[#parts + 1] = k .. "=" .. v end
  return http("POST", url("/sts/"), {
    body = table.concat(parts, "&"),
    headers = opts.headers or { "Content-Type: application/x-www-form-urlencoded; charset=utf-8" },
    extra = opts.extra,
  })
end

-- curl signs SigV4 itself (--aws-sigv4): an implementation that is not ours
-- checks the fake's signature verification.
local function signed(key, secret)
  return "--aws-sigv4 'aws:amz:us-east-1:sts' --user " .. H.shell_quote(key .. ":" .. secret)
end

local function issued_by_key(key)
  for _, e in ipairs(H.fake_get("issued")) do
    if e.access_key_id == key then return e end
  end
end

describe("the fake credential services", function()
  before_each(function()
    control{ reset = true }
  end)

  describe("IMDSv2", function()
    it("refuses a GET without a session token (IMDSv1) and a PUT without a TTL", function()
      assert.are.equal(401, (imds_get(ROLE_PATH)))
      assert.are.equal(400, (http("PUT", url("/latest/api/token"))))
      assert.are.equal(401, (imds_get(ROLE_PATH, "imdstokennotissued")))
    end)

    it("hands out a role, new credentials each time, and the region", function()
      local tok = imds_token()
      local st, role = imds_get(ROLE_PATH, tok)
      assert.are.equal(200, st)
      assert.are.equal("ddbkit-test-role", role:match("^[^\n]+"))
      control{ ttl = { imds = 20 } }
      local _, a = imds_get(ROLE_PATH .. "ddbkit-test-role", tok)
      local _, b = imds_get(ROLE_PATH .. "ddbkit-test-role", tok)
      a, b = assert(cjson.decode(a)), assert(cjson.decode(b))
      assert.are.equal("Success", a.Code)
      assert.are_not.equal(a.AccessKeyId, b.AccessKeyId)
      assert.are_not.equal(a.Token, b.Token)
      local e = assert(issued_by_key(a.AccessKeyId))
      assert.are.equal("imds", e.endpoint)
      assert.are.equal(a.SecretAccessKey, e.secret_access_key)
      assert.are.equal(core.sha256_hex(a.Token), e.token_sha256)
      assert.are.equal(a.Expiration, e.expiration)
      assert.are.equal(20, e.expires_at - math.floor(e.issued_at))
      assert.are.equal(404, (imds_get(ROLE_PATH .. "another-role", tok)))
      local _, region = imds_get("/latest/meta-data/placement/region", tok)
      assert.are.equal("us-west-2", region)
      assert.are.equal(2, H.fake_get("stats").endpoints.imds.issued)
    end)

    it("refuses a revoked session token with 401 and takes a new one", function()
      local tok = imds_token()
      assert.are.equal(200, (imds_get(ROLE_PATH, tok)))
      control{ revoke_imds_tokens = true }
      assert.are.equal(401, (imds_get(ROLE_PATH, tok)))
      assert.are.equal(200, (imds_get(ROLE_PATH, imds_token())))
      assert.are.equal(1, H.fake_get("stats").endpoints.imds.refused)
      assert.are.equal(2, #H.fake_get("tokens"))
    end)
  end)

  describe("the container endpoint", function()
    it("checks the authorization token", function()
      control{ container_token = "Bearer podtoken1" }
      assert.are.equal(401, (http("GET", url("/container/creds"))))
      assert.are.equal(403, (http("GET", url("/container/creds"), { headers = { "Authorization: wrong" } })))
      local st, body = http("GET", url("/container/creds"), { headers = { "Authorization: Bearer podtoken1" } })
      assert.are.equal(200, st)
      local c = assert(cjson.decode(body))
      assert.is_truthy(c.AccessKeyId:match("^ASIAFAKE%d+$"))
      assert.is_truthy(c.Expiration:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
      local s = H.fake_get("stats").endpoints.container
      assert.are.same({ 3, 1, 2 }, { s.requests, s.issued, s.refused })
    end)

    it("asks for nothing when no token is configured", function()
      assert.are.equal(200, (http("GET", url("/container/v2/credentials/x"))))
    end)
  end)

  describe("STS", function()
    it("AssumeRoleWithWebIdentity checks the token and answers the service's XML", function()
      control{ web_identity_token = "jwt-1", ttl = { sts = 30 } }
      local st, body = sts{ Action = "AssumeRoleWithWebIdentity", WebIdentityToken = "jwt-2" }
      assert.are.equal(400, st)
      assert.are.equal("InvalidIdentityToken", xml_field(body, "Code"))
      assert.is_truthy(body:find("<ErrorResponse", 1, true))
      st, body = sts{ Action = "AssumeRoleWithWebIdentity", WebIdentityToken = "jwt-1" }
      assert.are.equal(200, st)
      assert.is_truthy(body:find('<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">', 1, true))
      assert.is_truthy(body:find("<AssumeRoleWithWebIdentityResult>", 1, true))
      local e = assert(issued_by_key(xml_field(body, "AccessKeyId")))
      assert.are.equal(e.session_token, xml_field(body, "SessionToken"))
      assert.are.equal(e.expiration, xml_field(body, "Expiration"))
      assert.are.equal(30, e.expires_at - math.floor(e.issued_at))
    end)

    it("AssumeRole needs a signature, verifies it, and records who signed", function()
      control{ keys = { AKIDSOURCE1 = "sourcesecret1" } }
      local st, body = sts{ Action = "AssumeRole" }
      assert.are.equal(403, st)
      assert.are.equal("MissingAuthenticationToken", xml_field(body, "Code"))
      st, body = sts({ Action = "AssumeRole" }, { extra = signed("AKIDSOURCE1", "not-the-secret") })
      assert.are.equal(403, st)
      assert.are.equal("SignatureDoesNotMatch", xml_field(body, "Code"))
      st, body = sts({ Action = "AssumeRole" }, { extra = signed("AKIDSOURCE1", "sourcesecret1") })
      assert.are.equal(200, st, body)
      assert.is_truthy(body:find("<AssumeRoleResponse", 1, true))
      local key, secret, token = xml_field(body, "AccessKeyId"), xml_field(body, "SecretAccessKey"),
        xml_field(body, "SessionToken")
      -- A hop signed with issued credentials needs their session token.
      st, body = sts({ Action = "AssumeRole" }, { extra = signed(key, secret) })
      assert.are.equal(403, st)
      assert.are.equal("InvalidClientTokenId", xml_field(body, "Code"))
      st = sts({ Action = "AssumeRole" }, {
        extra = signed(key, secret) .. " -H " .. H.shell_quote("X-Amz-Security-Token: " .. token) })
      assert.are.equal(200, st)
      local signers = {}
      for _, r in ipairs(H.fake_get("requests")) do
        if r.action == "AssumeRole" and r.signer then
          signers[#signers + 1] = string.format("%s:%s:%d", r.signer, r.signature, r.status)
        end
      end
      assert.are.same({ "AKIDSOURCE1:bad:403", "AKIDSOURCE1:ok:200", key .. ":bad-token:403",
        key .. ":ok:200" }, signers)
    end)

    it("refuses an unknown action and a missing RoleArn", function()
      local st, body = sts{ Action = "GetCallerIdentity" }
      assert.are.equal(400, st)
      assert.are.equal("InvalidAction", xml_field(body, "Code"))
      st, body = http("POST", url("/sts/"), { body = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15" })
      assert.are.equal(400, st)
      assert.are.equal("ValidationError", xml_field(body, "Code"))
    end)
  end)

  describe("the SSO portal", function()
    it("checks the bearer token and answers roleCredentials with expiration in ms", function()
      control{ sso_token = "ssotoken1", ttl = { sso = 25 } }
      local q = "/sso/federation/credentials?account_id=111122223333&role_name=dev"
      assert.are.equal(401, (http("GET", url(q))))
      assert.are.equal(401, (http("GET", url(q), { headers = { "x-amz-sso_bearer_token: other" } })))
      local st, body = http("GET", url(q), { headers = { "x-amz-sso_bearer_token: ssotoken1" } })
      assert.are.equal(200, st)
      local rc = assert(cjson.decode(body)).roleCredentials
      local e = assert(issued_by_key(rc.accessKeyId))
      assert.are.equal(e.expires_at * 1000, rc.expiration)
      assert.are.equal(e.session_token, rc.sessionToken)
      assert.are.equal(400, (http("GET", url("/sso/federation/credentials?account_id=1"),
        { headers = { "x-amz-sso_bearer_token: ssotoken1" } })))
    end)
  end)

  describe("faults", function()
    it("fail N times with a status, then answer", function()
      control{ faults = { { endpoint = "container", kind = "status", status = 500, count = 2 } } }
      assert.are.equal(500, (http("GET", url("/container/creds"))))
      assert.are.equal(500, (http("GET", url("/container/creds"))))
      assert.are.equal(200, (http("GET", url("/container/creds"))))
      local s = H.fake_get("stats").endpoints.container
      assert.are.same({ 3, 1, 2 }, { s.requests, s.issued, s.faults })
    end)

    it("answer STS errors and throttling in the service's XML", function()
      control{ faults = {
        { endpoint = "sts", kind = "error", code = "AccessDenied", message = "not allowed" },
        { endpoint = "sts", kind = "throttle" },
        { endpoint = "sts", kind = "status", status = 503 },
      } }
      local form = { Action = "AssumeRoleWithWebIdentity", WebIdentityToken = "x" }
      local st, body = sts(form)
      assert.are.same({ 403, "AccessDenied", "not allowed", "Sender" },
        { st, xml_field(body, "Code"), xml_field(body, "Message"), xml_field(body, "Type") })
      st, body = sts(form)
      assert.are.same({ 400, "Throttling" }, { st, xml_field(body, "Code") })
      st, body = sts(form)
      assert.are.same({ 503, "ServiceUnavailable", "Receiver" },
        { st, xml_field(body, "Code"), xml_field(body, "Type") })
      assert.are.equal(200, (sts(form)))
    end)

    it("refuse (close, no answer), answer garbage, apply only where they match", function()
      control{ faults = {
        { endpoint = "imds", kind = "refuse", match = "security-credentials" },
        { endpoint = "sso", kind = "garbage" },
      } }
      local tok = imds_token()                       -- not matched: answered
      local st, _, rc = imds_get(ROLE_PATH, tok)
      assert.are.equal(0, st)
      assert.are_not.equal(0, rc)
      assert.are.equal(200, (imds_get(ROLE_PATH, tok)))
      local body
      st, body = http("GET", url("/sso/federation/credentials?account_id=1&role_name=r"),
        { headers = { "x-amz-sso_bearer_token: t" } })
      assert.are.equal(200, st)
      assert.is_nil(cjson.decode(body))
    end)

    it("delay: a client that gives up sooner gets no answer, one that waits does", function()
      control{ faults = { { endpoint = "container", kind = "delay", ms = 3000, count = 2 } } }
      local st, _, rc = http("GET", url("/container/creds"), { timeout = 0.3 })
      assert.are.equal(0, st)
      assert.are.equal(28, rc)                       -- curl: timed out
      assert.are.equal(200, (http("GET", url("/container/creds"), { timeout = 20 })))
    end)

    it("forever, and cleared", function()
      control{ faults = { { endpoint = "container", kind = "status", status = 503, forever = true } } }
      for _ = 1, 3 do assert.are.equal(503, (http("GET", url("/container/creds")))) end
      control{ clear_faults = true }
      assert.are.equal(200, (http("GET", url("/container/creds"))))
    end)

    it("refuses a control it does not know", function()
      local st, body = http("POST", url("/_control"), { body = '{"tll": 5}' })
      assert.are.equal(400, st)
      assert.is_truthy(body:find("tll", 1, true))
      st = http("POST", url("/_control"), { body = '{"faults":[{"endpoint":"imds","kind":"boom"}]}' })
      assert.are.equal(400, st)
    end)
  end)
end)

describe("the fault proxy's signer log", function()
  it("records the key id, the token's hash and X-Amz-Date of each DynamoDB request", function()
    local since = H.proxy_signer_seq()
    local c = H.proxied_client{ credentials = { access_key_id = "ASIAFAKESIGNER1",
      secret_access_key = "signersecret", session_token = "signertoken1" } }
    local before = os.time()
    assert(c:list_tables{})
    c:close()
    local c2 = H.proxied_client()
    assert(c2:list_tables{})
    c2:close()
    local log = H.proxy_signers(since)
    assert.are.equal(2, #log)
    assert.are.equal("ASIAFAKESIGNER1", log[1].key_id)
    assert.are.equal(core.sha256_hex("signertoken1"), log[1].token_sha256)
    assert.is_truthy(log[1].amz_date:match("^%d+T%d+Z$"))
    -- X-Amz-Date is signed in whole seconds, taken after `before`.
    assert.is_true(log[1].amz_epoch >= before and log[1].amz_epoch <= os.time())
    assert.are.equal("DynamoDB_20120810.ListTables", log[1].target)
    assert.are.equal(H.credentials.access_key_id, log[2].key_id)
    assert.are.equal(cjson.null, log[2].token_sha256)
    assert.are.equal(0, #H.proxy_signers(log[2].seq))
    -- No secret and no token in the log itself.
    local st, raw = H.http("GET", H.proxy .. "/__proxy/signers?since=" .. string.format("%d", since))
    assert.are.equal(200, st)
    assert.is_nil(raw:find("signertoken1", 1, true))
    assert.is_nil(raw:find("signersecret", 1, true))
  end)
end)
