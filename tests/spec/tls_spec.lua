-- https with verification on, against a local TLS endpoint whose CA was
-- made for this run (tests/harness/tls_front.sh, in front of DynamoDB
-- Local): `ca_file` and AWS_CA_BUNDLE trust it; another CA, or the
-- system's bundle, does not, and the call fails with an error that says
-- the certificate could not be verified.
local H = require "test_helper"
local ddbkit = require "ddbkit"

local TLS = os.getenv("DDBKIT_TEST_TLS")
local CA = os.getenv("DDBKIT_TEST_TLS_CA")

local function other_ca()
  return (assert(CA, "DDBKIT_TEST_TLS_CA is not set"):gsub("ca%.pem$", "other-ca.pem"))
end

local function tls_client(opts)
  assert(TLS and TLS ~= "", "the TLS front is not running (DDBKIT_TEST_TLS)")
  local o = { region = "us-east-1", endpoint = TLS, credentials = H.credentials,
    max_attempts = 1, timeout_ms = 10000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(ddbkit.client(o))
end

-- What a failed handshake must say: which error, and why in words a
-- reader recognises (curl says "SSL certificate problem: unable to get
-- local issuer certificate").
local function assert_verification_error(err)
  assert.is_table(err)
  assert.are.equal("ConnectionError", err.code)
  local m = (err.message or ""):lower()
  assert.is_truthy(m:find("certificate", 1, true) or m:find("verif", 1, true),
    "the message does not say verification failed: " .. tostring(err.message))
  -- The same certificate would be refused again.
  assert.is_falsy(err.retryable, "a refused certificate is retried")
end

describe("TLS to a local endpoint with a CA made for the test", function()
  it("(the front itself: curl verifies it with the CA, not with the other one)", function()
    assert(TLS and TLS ~= "", "the TLS front is not running (DDBKIT_TEST_TLS)")
    local st, body = H.http("POST", TLS .. "/", { extra = "--cacert " .. H.shell_quote(CA),
      headers = { "X-Amz-Target: DynamoDB_20120810.ListTables" }, body = "{}" })
    assert.are.equal(400, st)                       -- DynamoDB Local: no signature
    assert.is_truthy(body:find("MissingAuthenticationToken", 1, true))
    local st2, _, rc = H.http("POST", TLS .. "/", { extra = "--cacert " .. H.shell_quote(other_ca()) })
    assert.are.equal(0, st2)
    assert.are.equal(60, rc)                        -- curl: peer certificate not verified
  end)

  it("works with ca_file naming that CA (verification on)", function()
    local c = tls_client{ ca_file = CA }
    local res, err = c:list_tables{ Limit = 1 }
    assert.is_table(res, err and err.message)
    c:close()
  end)

  it("fails with another CA, saying the certificate did not verify", function()
    local c = tls_client{ ca_file = other_ca() }
    local res, err = c:list_tables{ Limit = 1 }
    assert.is_nil(res)
    assert_verification_error(err)
    c:close()
  end)

  it("fails with the system's bundle (no ca_file)", function()
    local c = tls_client()
    local res, err = c:list_tables{ Limit = 1 }
    assert.is_nil(res)
    assert_verification_error(err)
    c:close()
  end)

  it("refuses a ca_file that does not exist, naming the option", function()
    local c, cerr = ddbkit.client{ region = "us-east-1", endpoint = TLS, credentials = H.credentials,
      max_attempts = 1, ca_file = "/nonexistent/ddbkit-ca.pem" }
    local err = cerr
    if c then
      local res
      res, err = c:list_tables{ Limit = 1 }
      assert.is_nil(res)
      c:close()
    end
    assert.is_table(err)
    local m = (err.message or ""):lower()
    assert.is_truthy(m:find("ca_file", 1, true) or m:find("cafile", 1, true)
      or m:find("ca file", 1, true) or m:find("certificate", 1, true),
      "the message does not name the CA file: " .. tostring(err.message))
  end)

  describe("AWS_CA_BUNDLE (a process with that environment)", function()
    local function run(bundle)
      local env = {
        PATH = "/usr/bin:/bin", HOME = "/nonexistent",
        AWS_REGION = "us-east-1", AWS_ENDPOINT_URL_DYNAMODB = TLS,
        AWS_ACCESS_KEY_ID = H.credentials.access_key_id,
        AWS_SECRET_ACCESS_KEY = H.credentials.secret_access_key,
        AWS_EC2_METADATA_DISABLED = "true",
        AWS_CA_BUNDLE = bundle,
      }
      local res, out, code = H.env_worker_wait(H.env_worker(env, { calls = 1 }, 60))
      assert.are.equal(0, code, out)
      assert.is_table(res, out)
      return res, out
    end

    it("trusts the CA it names", function()
      local res, out = run(CA)
      assert.is_nil(res.client_error, out)
      assert.are.same({ 1, 0 }, { res.ok, res.failed }, out)
    end)

    it("another CA fails verification", function()
      local res, out = run(other_ca())
      assert.is_nil(res.client_error, out)
      assert.are.equal(1, res.failed, out)
      assert_verification_error(res.errors[1])
    end)
  end)
end)
