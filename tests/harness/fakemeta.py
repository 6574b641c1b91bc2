#!/usr/bin/env python3
"""fakemeta: AWS's credential services, played on loopback for ddbkit's tests.

    fakemeta.py --listen PORT [--port-file F] [--max-seconds N] [--verbose]

One process plays, on 127.0.0.1:PORT, what a host on EC2, ECS, EKS or an SSO
laptop asks for credentials, as the real services answer (shapes, headers,
status codes); tests/harness/fakemeta.sh runs it by PID. Every credential
set it hands out is new (a unique AccessKeyId ASIAFAKE<n>, secret and
session token) and expires `ttl` seconds later (controllable, per endpoint),
so a test sees each rotation; it keeps a log of what it issued, which the
fault proxy's signer log (tests/faultproxy/faultproxy.py, GET
/__proxy/signers) is checked against: every DynamoDB request signed with a
key issued here, before that key's expiry.

Endpoints (point the SDK variables at them):

  imds       AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT
             PUT  /latest/api/token            needs the header
                  X-aws-ec2-metadata-token-ttl-seconds (1..21600) -> token
             GET  /latest/meta-data/iam/security-credentials/   -> role name
             GET  /latest/meta-data/iam/security-credentials/<role> -> JSON
                  {Code: "Success", LastUpdated, Type, AccessKeyId,
                   SecretAccessKey, Token, Expiration}
             GET  /latest/meta-data/placement/region            -> region
             Every GET needs X-aws-ec2-metadata-token: a token from the PUT,
             not expired, not revoked; else 401 (so IMDSv1 is refused).
  container  AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/container/creds
             GET /container/<anything>: Authorization must equal the
             configured container_token (missing: 401, wrong: 403; no
             check when container_token is null) -> JSON {AccessKeyId,
             SecretAccessKey, Token, Expiration, RoleArn}
  sts        AWS_ENDPOINT_URL_STS=http://127.0.0.1:PORT/sts/
             POST /sts/<anything>, form body:
             Action=AssumeRole: SigV4 Authorization (service sts) required;
               the signing key id is recorded (GET /_requests, "signer");
               a key issued here must come with its X-Amz-Security-Token
               and be unexpired; the signature is checked when the secret
               is known (issued here, or given in "keys"), else logged as
               "unverified".
             Action=AssumeRoleWithWebIdentity: unsigned; WebIdentityToken
               must equal web_identity_token (when set).
             Answers <AssumeRoleResponse>/<AssumeRoleWithWebIdentityResponse>
             XML like the real service; errors as <ErrorResponse>.
  process    GET /process/<anything> -> what a credential_process prints:
             {Version: 1, AccessKeyId, SecretAccessKey, SessionToken,
             Expiration}; a test's credential_process script curls it, so
             its credentials are in the issue log too
  sso        AWS_ENDPOINT_URL_SSO=http://127.0.0.1:PORT/sso
             GET /sso/federation/credentials?account_id=..&role_name=..
             with x-amz-sso_bearer_token equal to sso_token (when set; else
             401 UnauthorizedException) -> JSON {roleCredentials:
             {accessKeyId, secretAccessKey, sessionToken, expiration (ms)}}

Control API (never counted, never consumes a fault):

  POST /_control   a JSON object; any of these fields, applied in this order:
      "reset": true             back to the start: defaults, no faults,
                                counters, logs and tokens cleared
      "ttl": n | {endpoint: n}  seconds until issued credentials expire
                                (default 3600), all endpoints or some
      "imds_token_ttl": n       cap on an IMDS session token's life (s)
      "revoke_imds_tokens": true  every IMDS token given so far now gets 401
                                (an expired session token, as after a reboot)
      "container_token": s|[s]|null, "web_identity_token": s|[s]|null,
      "sso_token": s|[s]|null   what the endpoint expects (null: no check; a
                                list: any of them, for a rotation without a
                                window where the fake and the file disagree)
      "role_name": s            the IMDS role (default "ddbkit-test-role")
      "region": s               the IMDS region (default "us-west-2")
      "keys": {key_id: secret}  secrets of static keys, so AssumeRole
                                signatures made with them are verified
      "faults": [fault, ...]    appended to the endpoint's FIFO queue
      "clear_faults": true      empty every queue (applied before "faults")
    answers {"ok": true, ...} or 400 {"error": why}.

  A fault: {"endpoint": "imds"|"container"|"sts"|"sso"|"process", "kind": K,
            "count": n (1), "forever": bool, "match": s (only requests
            whose path or STS Action contains s; others pass by), ...}
      status    answer "status" (500) with the endpoint's error shape
                (STS: <ErrorResponse>, code InternalFailure /
                ServiceUnavailable / "code" given)
      error     "status" (400), "code", "message": the endpoint's error
                shape (STS AccessDenied: status 403, code AccessDenied)
      throttle  STS: 400 <Code>Throttling</Code> "Rate exceeded";
                others: 429
      delay     wait "ms" then answer normally (a slow endpoint); after
                a reset in the meantime: closed, unanswered, unlogged
      refuse    read the request, close the connection (RST), no answer
      garbage   200 with "body" (default: not JSON, not XML)

  GET /_stats    {"endpoints": {name: {"requests", "issued", "refused"
                  (auth failures: 401/403), "faults"}}, "routes":
                  {route: n}}
  GET /_issued   [{seq, endpoint, detail (imds: the role; container,
                   process: the path; sts: "<Action> <RoleArn>"; sso:
                   "<account> <role>"), access_key_id, secret_access_key,
                   session_token, token_sha256, issued_at (epoch s, float),
                   expires_at (epoch s), expiration (ISO 8601)}, ...]
                  (it holds the secrets on purpose: a test greps output for
                  every one of them); ?endpoint=E&detail=D keep only those
  GET /_tokens   every IMDS session token handed out (a test greps for them
                  too)
  GET /_requests [{seq, endpoint, route, method, path, status, at,
                   signer?, signer_token_sha256?, signature?, action?}, ...]

Exits on SIGTERM/SIGINT and by itself after --max-seconds. Loopback only.
Standard library only.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape as xml_escape

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback_http  # noqa: E402

ENDPOINTS = ("imds", "container", "sts", "sso", "process")
FAULT_KINDS = ("status", "error", "throttle", "delay", "refuse", "garbage")
MAX_BODY = 1024 * 1024
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$")


def iso8601(epoch):
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_hex(s):
    return hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest()


def defaults():
    return {
        "ttl": {e: 3600 for e in ENDPOINTS},
        "imds_token_ttl": 21600,
        "container_token": None,
        "web_identity_token": None,
        "sso_token": None,
        "role_name": "ddbkit-test-role",
        "region": "us-west-2",
        "keys": {},
    }


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            # A request that arrived before a reset (one held by a delay
            # fault) is neither answered nor logged after it: it belongs
            # to the test before.
            self.epoch = getattr(self, "epoch", 0) + 1
            self.cfg = defaults()
            self.faults = {e: [] for e in ENDPOINTS}
            self.stats = {e: {"requests": 0, "issued": 0, "refused": 0, "faults": 0}
                          for e in ENDPOINTS}
            self.routes = {}
            self.issued = []          # the issue log
            self.by_key = {}          # access key id -> its issue entry
            self.requests = []
            self.imds_tokens = {}     # token -> expires (monotonic)
            self.imds_given = []      # every IMDS token handed out, for /_tokens
            # The counter is not reset: a key id is never handed out twice
            # in one run, so a request signed before a reset cannot match
            # a key issued after it.
            if not hasattr(self, "counter"):
                self.counter = 0

    # -- issuing -----------------------------------------------------------

    def issue(self, endpoint, detail):
        with self.lock:
            self.counter += 1
            n = self.counter
            now = time.time()
            ttl = self.cfg["ttl"][endpoint]
            e = {
                "seq": len(self.issued) + 1,
                "endpoint": endpoint,
                "detail": detail,
                # Letters and digits only: DynamoDB Local refuses others.
                "access_key_id": "ASIAFAKE%08d" % n,
                "secret_access_key": "fakesecret%d%s" % (n, secrets.token_hex(12)),
                "session_token": "faketoken%d%s" % (n, secrets.token_hex(24)),
                "issued_at": now,
                "expires_at": int(now) + int(ttl),
            }
            e["token_sha256"] = sha256_hex(e["session_token"])
            e["expiration"] = iso8601(e["expires_at"])
            self.issued.append(e)
            self.by_key[e["access_key_id"]] = e
            self.stats[endpoint]["issued"] += 1
            return dict(e)

    # -- faults ------------------------------------------------------------

    def take_fault(self, endpoint, what):
        with self.lock:
            q = self.faults[endpoint]
            for i, f in enumerate(q):
                m = f.get("match")
                if m is not None and m not in what:
                    continue
                if not f.get("forever"):
                    f["remaining"] -= 1
                    if f["remaining"] <= 0:
                        del q[i]
                self.stats[endpoint]["faults"] += 1
                return dict(f)
            return None

    # -- counting ----------------------------------------------------------

    def count(self, endpoint, route):
        with self.lock:
            self.stats[endpoint]["requests"] += 1
            self.routes[route] = self.routes.get(route, 0) + 1

    def log(self, entry):
        with self.lock:
            entry["seq"] = len(self.requests) + 1
            entry["at"] = time.time()
            if len(self.requests) < 100000:
                self.requests.append(entry)
            if entry.get("status") in (401, 403):
                self.stats[entry["endpoint"]]["refused"] += 1

    def snapshot(self, what):
        with self.lock:
            if what == "stats":
                return {"endpoints": json.loads(json.dumps(self.stats)),
                        "routes": dict(self.routes)}
            if what == "issued":
                return [dict(e) for e in self.issued]
            if what == "tokens":
                return list(self.imds_given)
            return [dict(e) for e in self.requests]

    # -- control -----------------------------------------------------------

    def control(self, obj):
        if not isinstance(obj, dict):
            raise ValueError("the control body must be a JSON object")
        known = {"reset", "ttl", "imds_token_ttl", "revoke_imds_tokens", "container_token",
                 "web_identity_token", "sso_token", "role_name", "region", "keys",
                 "faults", "clear_faults"}
        extra = set(obj) - known
        if extra:
            raise ValueError("unknown control field(s): %s" % ", ".join(sorted(extra)))
        faults = [validate_fault(f) for f in obj.get("faults") or []]
        if obj.get("reset"):
            self.reset()
        with self.lock:
            cfg = self.cfg
            if "ttl" in obj:
                t = obj["ttl"]
                if isinstance(t, dict):
                    for e, v in t.items():
                        if e not in ENDPOINTS:
                            raise ValueError("ttl: unknown endpoint %r" % e)
                        cfg["ttl"][e] = positive("ttl." + e, v)
                else:
                    v = positive("ttl", t)
                    for e in ENDPOINTS:
                        cfg["ttl"][e] = v
            if "imds_token_ttl" in obj:
                cfg["imds_token_ttl"] = positive("imds_token_ttl", obj["imds_token_ttl"])
            if obj.get("revoke_imds_tokens"):
                self.imds_tokens.clear()
            for k in ("container_token", "web_identity_token", "sso_token"):
                if k in obj:
                    v = obj[k]
                    if isinstance(v, str):
                        v = [v]
                    if v is not None and (not isinstance(v, list) or not v or not all(
                            isinstance(x, str) for x in v)):
                        raise ValueError("%s must be a string, a list of strings or null" % k)
                    cfg[k] = v
            for k in ("role_name", "region"):
                if k in obj:
                    if not isinstance(obj[k], str) or not obj[k]:
                        raise ValueError("%s must be a non-empty string" % k)
                    cfg[k] = obj[k]
            if "keys" in obj:
                if not isinstance(obj["keys"], dict):
                    raise ValueError("keys must be an object {key_id: secret}")
                cfg["keys"].update({str(k): str(v) for k, v in obj["keys"].items()})
            if obj.get("clear_faults"):
                for e in ENDPOINTS:
                    self.faults[e] = []
            for f in faults:
                self.faults[f["endpoint"]].append(f)
            pending = {e: len(self.faults[e]) for e in ENDPOINTS}
        return {"ok": True, "faults_pending": pending}


def positive(name, v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
        raise ValueError("%s must be a positive number" % name)
    return v


def validate_fault(obj):
    if not isinstance(obj, dict):
        raise ValueError("a fault must be a JSON object")
    f = dict(obj)
    if f.get("endpoint") not in ENDPOINTS:
        raise ValueError("fault endpoint must be one of %s" % ", ".join(ENDPOINTS))
    if f.get("kind") not in FAULT_KINDS:
        raise ValueError("fault kind must be one of %s" % ", ".join(FAULT_KINDS))
    count = f.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")
    f["remaining"] = count
    if "match" in f and not isinstance(f["match"], str):
        raise ValueError("match must be a string")
    st = f.get("status")
    if st is not None and (not isinstance(st, int) or isinstance(st, bool)
                           or not 200 <= st <= 599):
        raise ValueError("status must be an integer 200..599")
    if f["kind"] == "delay":
        positive("ms", f.get("ms", 0) or 0.001)
    return f


class Handler(loopback_http.Handler):
    name = "fakemeta"
    timeout = 60

    def _send(self, status, body=b"", headers=(), reason=None, close=False):
        if isinstance(body, str):
            body = body.encode()
        self._head(status, headers, len(body), reason=reason, close=close)
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _read_body(self):
        # Its hash is what an AssumeRole signature covers (_check_sigv4).
        self._body_hash = sha256_hex(b"")
        cl = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise ValueError("chunked bodies are not played")
        if not cl:
            return b""
        n = int(cl)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("client closed mid-body")
        self._body_hash = sha256_hex(data)
        return data

    def _dispatch(self):
        try:
            body = self._read_body()
        except ValueError as e:
            self._send(400, str(e) + "\n", [("Content-Type", "text/plain")], close=True)
            return
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        st = self.server.state
        if path.startswith("/_"):
            return self._control(path, body)
        if path.startswith("/latest/"):
            ep = "imds"
        elif path.startswith("/container/") or path == "/container":
            ep = "container"
        elif path.startswith("/sts"):
            ep = "sts"
        elif path.startswith("/sso/"):
            ep = "sso"
        elif path.startswith("/process/"):
            ep = "process"
        else:
            self._send(404, "no such endpoint\n", [("Content-Type", "text/plain")])
            return
        form = {}
        what = path
        if ep == "sts":
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"),
                                               keep_blank_values=True))
            what = path + " " + form.get("Action", "")
        route = ep + ":" + (form.get("Action") or self.command + " " + route_of(path))
        epoch = st.epoch
        st.count(ep, route)
        entry = {"endpoint": ep, "route": route, "method": self.command, "path": path}
        if form.get("Action"):
            entry["action"] = form["Action"]
        fault = st.take_fault(ep, what)
        if fault:
            entry["fault"] = fault["kind"]
            k = fault["kind"]
            if k == "delay":
                if st.stopping.wait(fault.get("ms", 0) / 1000.0) or st.epoch != epoch:
                    return self._hard_close(rst=False)
            elif k == "refuse":
                entry["status"] = 0
                st.log(entry)
                return self._hard_close(rst=True)
            else:
                status, ctype, out = fault_answer(ep, fault)
                entry["status"] = status
                st.log(entry)
                return self._send(status, out, [("Content-Type", ctype)])
        status, ctype, out, extra = getattr(self, "_" + ep)(path, u.query, form, entry)
        entry["status"] = status
        st.log(entry)
        self._send(status, out, [("Content-Type", ctype)] + list(extra))

    # -- IMDSv2 ------------------------------------------------------------

    def _imds(self, path, query, form, entry):
        st = self.server.state
        text = "text/plain"
        if path == "/latest/api/token":
            if self.command != "PUT":
                return 405, text, "", ()
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if ttl is None or not ttl.strip().isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, text, "", ()
            tok = "imdstoken" + secrets.token_hex(16)
            with st.lock:
                life = min(int(ttl), st.cfg["imds_token_ttl"])
                st.imds_tokens[tok] = time.monotonic() + life
                st.imds_given.append(tok)
            return 200, text, tok, [("X-aws-ec2-metadata-token-ttl-seconds", str(int(life)))]
        if self.command != "GET":
            return 405, text, "", ()
        tok = self.headers.get("X-aws-ec2-metadata-token")
        with st.lock:
            exp = st.imds_tokens.get(tok) if tok else None
            role = st.cfg["role_name"]
            region = st.cfg["region"]
        if exp is None or exp < time.monotonic():
            # IMDSv1 (no token), a wrong token and an expired one alike.
            return 401, text, "", ()
        base = "/latest/meta-data/iam/security-credentials"
        if path in (base, base + "/"):
            return 200, text, role + "\n", ()
        if path.startswith(base + "/"):
            if path[len(base) + 1:].rstrip("/") != role:
                return 404, text, "", ()
            e = st.issue("imds", role)
            return 200, text, json.dumps({
                "Code": "Success",
                "LastUpdated": iso8601(e["issued_at"]),
                "Type": "AWS-HMAC",
                "AccessKeyId": e["access_key_id"],
                "SecretAccessKey": e["secret_access_key"],
                "Token": e["session_token"],
                "Expiration": e["expiration"],
            }, indent=2), ()
        if path == "/latest/meta-data/placement/region":
            return 200, text, region, ()
        return 404, text, "", ()

    # -- container (ECS, EKS Pod Identity) ---------------------------------

    def _container(self, path, query, form, entry):
        st = self.server.state
        js = "application/json"
        with st.lock:
            want = st.cfg["container_token"]
        if want is not None:
            got = self.headers.get("Authorization")
            if got is None:
                return 401, js, json.dumps({"code": "Unauthorized",
                                            "message": "missing authorization"}), ()
            if not one_of(got, want):
                return 403, js, json.dumps({"code": "AccessDenied",
                                            "message": "invalid authorization token"}), ()
        if self.command != "GET":
            return 405, js, "", ()
        e = st.issue("container", path)
        return 200, js, json.dumps({
            "RoleArn": "arn:aws:iam::123456789012:role/ddbkit-task-role",
            "AccessKeyId": e["access_key_id"],
            "SecretAccessKey": e["secret_access_key"],
            "Token": e["session_token"],
            "Expiration": e["expiration"],
        }), ()

    # -- STS ---------------------------------------------------------------

    def _sts(self, path, query, form, entry):
        st = self.server.state
        xml = "text/xml"
        if self.command != "POST":
            return sts_error(400, "InvalidAction", "STS is called with POST")
        action = form.get("Action")
        if form.get("Version") != "2011-06-15":
            return sts_error(400, "InvalidParameterValue", "Version must be 2011-06-15")
        if not form.get("RoleArn"):
            return sts_error(400, "ValidationError", "RoleArn is required")
        if not form.get("RoleSessionName"):
            return sts_error(400, "ValidationError", "RoleSessionName is required")
        if action == "AssumeRole":
            bad = self._check_sigv4(entry)
            if bad:
                return bad
        elif action == "AssumeRoleWithWebIdentity":
            with st.lock:
                want = st.cfg["web_identity_token"]
            got = form.get("WebIdentityToken")
            if not got:
                return sts_error(400, "ValidationError", "WebIdentityToken is required")
            if want is not None and not one_of(got, want):
                return sts_error(400, "InvalidIdentityToken",
                                 "Couldn't retrieve verification key from your identity provider")
            if self.headers.get("Authorization"):
                entry["signed"] = True
        else:
            return sts_error(400, "InvalidAction", "Could not find operation %s" % action)
        e = st.issue("sts", "%s %s" % (action, form["RoleArn"]))
        role = form["RoleArn"]
        session = form["RoleSessionName"]
        role_name = role.rsplit("/", 1)[-1]
        account = (role.split(":") + [""] * 5)[4] or "123456789012"
        extra = ""
        if action == "AssumeRoleWithWebIdentity":
            extra = ("<SubjectFromWebIdentityToken>system:serviceaccount:default:ddbkit"
                     "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>"
                     "<Provider>arn:aws:iam::%s:oidc-provider/fake</Provider>" % account)
        body = (
            '<{a}Response xmlns="{ns}">\n'
            "  <{a}Result>\n"
            "    {extra}<AssumedRoleUser>\n"
            "      <AssumedRoleId>AROAFAKE:{s}</AssumedRoleId>\n"
            "      <Arn>arn:aws:sts::{acct}:assumed-role/{rn}/{s}</Arn>\n"
            "    </AssumedRoleUser>\n"
            "    <Credentials>\n"
            "      <AccessKeyId>{k}</AccessKeyId>\n"
            "      <SecretAccessKey>{sk}</SecretAccessKey>\n"
            "      <SessionToken>{t}</SessionToken>\n"
            "      <Expiration>{x}</Expiration>\n"
            "    </Credentials>\n"
            "    <PackedPolicySize>6</PackedPolicySize>\n"
            "  </{a}Result>\n"
            "  <ResponseMetadata>\n"
            "    <RequestId>{rid}</RequestId>\n"
            "  </ResponseMetadata>\n"
            "</{a}Response>\n").format(
                a=action, ns=STS_NS, extra=extra, s=xml_escape(session),
                acct=xml_escape(account), rn=xml_escape(role_name),
                k=e["access_key_id"], sk=e["secret_access_key"], t=e["session_token"],
                x=e["expiration"], rid=uuid.uuid4())
        return 200, xml, body, [("x-amzn-RequestId", str(uuid.uuid4()))]

    def _check_sigv4(self, entry):
        """Records who signed an AssumeRole; refuses what STS refuses. None
        when it may go on, else the error answer."""
        st = self.server.state
        auth = self.headers.get("Authorization")
        if not auth:
            return sts_error(403, "MissingAuthenticationToken",
                             "Request is missing Authentication Token")
        m = AUTH_RE.match(auth.strip())
        if not m:
            entry["signature"] = "malformed"
            return sts_error(400, "IncompleteSignature",
                             "Authorization header is not a well-formed SigV4 header")
        key_id, date, region, service, signed, sig = m.groups()
        entry["signer"] = key_id
        tok = self.headers.get("X-Amz-Security-Token")
        if tok is not None:
            entry["signer_token_sha256"] = sha256_hex(tok)
        amz_date = self.headers.get("X-Amz-Date") or ""
        hdrs = signed.split(";")
        if (service != "sts" or not amz_date.startswith(date) or "host" not in hdrs
                or "x-amz-date" not in hdrs or hdrs != sorted(hdrs)
                or (tok is not None and "x-amz-security-token" not in hdrs)):
            entry["signature"] = "malformed"
            return sts_error(400, "IncompleteSignature",
                             "the credential scope, X-Amz-Date or SignedHeaders is wrong")
        with st.lock:
            issued = st.by_key.get(key_id)
            secret = issued["secret_access_key"] if issued else st.cfg["keys"].get(key_id)
        if issued:
            if tok is None or not hmac.compare_digest(tok.encode(),
                                                      issued["session_token"].encode()):
                entry["signature"] = "bad-token"
                return sts_error(403, "InvalidClientTokenId",
                                 "The security token included in the request is invalid.")
            if time.time() >= issued["expires_at"]:
                entry["signature"] = "expired"
                return sts_error(400, "ExpiredToken",
                                 "The security token included in the request is expired")
        if secret is None:
            entry["signature"] = "unverified"
            return None
        want = sigv4_signature(self.command, self.path, self.headers, hdrs, self._body_hash,
                               amz_date, date, region, service, secret)
        if not hmac.compare_digest(want, sig):
            entry["signature"] = "bad"
            return sts_error(403, "SignatureDoesNotMatch",
                             "The request signature we calculated does not match the "
                             "signature you provided.")
        entry["signature"] = "ok"
        return None

    # -- SSO portal ----------------------------------------------------------

    def _sso(self, path, query, form, entry):
        st = self.server.state
        js = "application/json"
        if path.rstrip("/") != "/sso/federation/credentials" or self.command != "GET":
            return 404, js, json.dumps({"message": "not found"}), ()
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        with st.lock:
            want = st.cfg["sso_token"]
        got = self.headers.get("x-amz-sso_bearer_token")
        if not got or (want is not None and not one_of(got, want)):
            return 401, js, json.dumps({"message": "Session token not found or invalid"}), \
                [("x-amzn-ErrorType", "UnauthorizedException")]
        if not q.get("account_id") or not q.get("role_name"):
            return 400, js, json.dumps({"message": "account_id and role_name are required"}), \
                [("x-amzn-ErrorType", "InvalidRequestException")]
        entry["account_id"] = q["account_id"]
        entry["role_name"] = q["role_name"]
        e = st.issue("sso", "%s %s" % (q["account_id"], q["role_name"]))
        return 200, js, json.dumps({"roleCredentials": {
            "accessKeyId": e["access_key_id"],
            "secretAccessKey": e["secret_access_key"],
            "sessionToken": e["session_token"],
            "expiration": e["expires_at"] * 1000,
        }}), ()

    # -- credential_process helper ---------------------------------------------

    def _process(self, path, query, form, entry):
        """What a credential_process prints (Version 1), for a test script
        that only curls it: its credentials then appear in the issue log."""
        if self.command != "GET":
            return 405, "application/json", "", ()
        e = self.server.state.issue("process", path)
        return 200, "application/json", json.dumps({
            "Version": 1,
            "AccessKeyId": e["access_key_id"],
            "SecretAccessKey": e["secret_access_key"],
            "SessionToken": e["session_token"],
            "Expiration": e["expiration"],
        }), ()

    # -- control -------------------------------------------------------------

    def _control(self, path, body):
        st = self.server.state
        route = path.rstrip("/")
        if route == "/_control" and self.command == "POST":
            try:
                out = st.control(json.loads(body.decode("utf-8") or "null"))
            except (ValueError, UnicodeDecodeError) as e:
                return self._send_json(400, {"error": str(e)})
            return self._send_json(200, out)
        if self.command == "GET" and route in ("/_stats", "/_issued", "/_requests", "/_tokens"):
            out = st.snapshot(route[2:])
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if isinstance(out, list):
                for k in ("endpoint", "detail"):
                    if k in q:
                        out = [e for e in out if e.get(k) == q[k]]
            return self._send_json(200, out)
        self._send_json(404, {"error": "no such control endpoint: %s %s" % (self.command, route)})


def one_of(got, wanted):
    """Whether got is one of the wanted tokens (compared in constant time)."""
    ok = False
    for w in wanted:
        ok |= hmac.compare_digest(got.encode(), w.encode())
    return ok


def route_of(path):
    if path.startswith("/latest/meta-data/iam/security-credentials"):
        rest = path[len("/latest/meta-data/iam/security-credentials"):]
        return "role" if rest in ("", "/") else "credentials"
    if path == "/latest/api/token":
        return "token"
    return path.split("?")[0]


def sigv4_signature(method, raw_path, headers, signed, body_hash, amz_date, date, region,
                    service, secret):
    u = urllib.parse.urlsplit(raw_path)
    # Non-S3 services encode the (already encoded) path once more; "/sts/"
    # has nothing to encode either way.
    path = urllib.parse.quote(u.path or "/", safe="/-_.~%")
    pairs = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                   for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    query = "&".join("%s=%s" % p for p in pairs)
    canon_headers = ""
    for h in signed:
        vals = headers.get_all(h) or []
        canon_headers += "%s:%s\n" % (h, ",".join(" ".join(v.split()) for v in vals))
    payload = headers.get("X-Amz-Content-Sha256") or body_hash
    creq = "\n".join([method, path, query, canon_headers, ";".join(signed), payload])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, sha256_hex(creq)])
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def sts_error(status, code, message, sender=True):
    body = ('<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>%s</Type>\n'
            "    <Code>%s</Code>\n    <Message>%s</Message>\n  </Error>\n"
            "  <RequestId>%s</RequestId>\n</ErrorResponse>\n"
            % (STS_NS, "Sender" if sender else "Receiver", xml_escape(code),
               xml_escape(message), uuid.uuid4()))
    return status, "text/xml", body, [("x-amzn-RequestId", str(uuid.uuid4()))]


def fault_answer(ep, f):
    """(status, content type, body) for a status / error / throttle /
    garbage fault, in the endpoint's own error shape."""
    k = f["kind"]
    if k == "garbage":
        body = f.get("body", "<<not json {{ not xml \x01 garbage")
        return f.get("status", 200), "application/octet-stream", body
    if k == "throttle":
        status = f.get("status", 400 if ep == "sts" else 429)
        code, msg = "Throttling", "Rate exceeded"
    elif k == "status":
        status = f.get("status", 500)
        code = f.get("code") or ("ServiceUnavailable" if status == 503 else "InternalFailure")
        msg = f.get("message", "the fake failed on purpose")
    else:
        status = f.get("status", 403 if f.get("code") == "AccessDenied" else 400)
        code = f.get("code", "AccessDenied")
        msg = f.get("message", "User is not authorized to perform: sts:AssumeRole")
    if ep == "sts":
        s, ct, body, _ = sts_error(status, code, msg, sender=status < 500)
        return s, ct, body
    if ep == "imds":
        return status, "text/plain", ""
    return status, "application/json", json.dumps({"code": code, "message": msg})


def main(argv=None):
    ap = argparse.ArgumentParser(description="AWS credential services, faked on loopback")
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--port-file", help="write the listening port here")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    state = State()
    server = loopback_http.Server(("127.0.0.1", a.listen), Handler)
    server.state = state
    server.verbose = a.verbose
    port = server.server_address[1]
    return loopback_http.serve(server, "fakemeta",
                               "listening on 127.0.0.1:%d (pid %d)" % (port, os.getpid()),
                               a.port_file, a.max_seconds, state.stopping.set)


if __name__ == "__main__":
    sys.exit(main())
