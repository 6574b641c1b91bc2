#!/usr/bin/env python3
"""faultproxy: a fault-injecting HTTP/1.1 proxy for ddbkit's retry tests.

    faultproxy.py --listen PORT --upstream 127.0.0.1:UPORT
                  [--port-file F] [--max-seconds N] [--verbose]

Listens on 127.0.0.1:PORT (0 = any free port, written to --port-file) and
forwards every request to the upstream (DynamoDB Local), relaying the
response, unless a fault is armed.  Client connections are keep-alive (many
requests per connection); each client connection has its own upstream
connection.

Control API on the same port (never proxied, never counted, never consumes
a fault):

    POST   /__proxy/faults       body: JSON list of faults (or one object);
                                 appended to the FIFO queue
    GET    /__proxy/faults       the pending queue
    DELETE /__proxy/faults       clear the queue
    GET    /__proxy/stats        {"requests": n, "forwarded": n,
                                  "connections": n, "faults_applied": {kind: n},
                                  "faults_pending": n, "upstream_errors": n}
    POST   /__proxy/reset-stats  zero the counters
    POST   /__proxy/release      let every request held by a "hold" delay go
    GET    /__proxy/signers      who signed each proxied request, oldest
                                 first: [{"seq": n, "key_id": s|null,
                                 "region": s|null (of the credential scope),
                                 "token_sha256": hex|null, "amz_date":
                                 "20261204T130000Z"|null, "amz_epoch": n|null,
                                 "target": s|null, "at": epoch s}, ...];
                                 ?since=N: only entries with seq > N
    DELETE /__proxy/signers      clear that log (seq keeps counting)
    POST   /__proxy/partitions   switch the partition simulator on (off by
                                 default) with a fresh state: body {"wcu":
                                 1000, "rcu": 3000, "burst_s": 1, "mode":
                                 "provisioned"|"on_demand", "refill": true,
                                 "transactions": "canceled"|"plain", "keys":
                                 {table: hash key attribute}} (all optional;
                                 "enabled": false keeps it off)
    GET    /__proxy/partitions   {"enabled", "config", "clock", "totals":
                                 {requests, throttled, wcu, rcu},
                                 "partitions": {table: {"S:value": {requests,
                                 throttled, wcu, rcu, write_tokens,
                                 read_tokens}}}}
    DELETE /__proxy/partitions   switch it off, forget everything
    POST   /__proxy/partitions/reset    zero its counters, fill its buckets
    POST   /__proxy/partitions/advance  body {"seconds": s}: move its clock
                                 (the only way it moves with "refill": false)

A fault is {"kind": K, ...options}.  Common options:
    "count": n     apply to n consecutive (matching) requests (default 1)
    "match": "s"   apply only to requests whose X-Amz-Target contains s;
                   other requests pass by without consuming it

Each proxied request consumes one application of the first queued fault
that matches it (queue order).  Kinds:

    throttle       400 ThrottlingException (JSON, x-amzn-RequestId)
    provisioned    400 ProvisionedThroughputExceededException
    status         answer "status" (default 500) with "body" (a string or
                   a JSON value; default: JSON InternalServerError for 500,
                   ServiceUnavailable for 503, other 5xx InternalServerError,
                   empty otherwise; "body": "" gives an empty body).
                   Optional "content_type", "headers" {name: value}.
                   With "forward": true the request is first forwarded
                   upstream (it takes effect) and its answer thrown away:
                   a write that applied, reported as failed (a 5xx that
                   hides an applied write)
    reset          read the request, then abort the client connection (RST,
                   SO_LINGER 0), no response
    drop_response  forward the request upstream (it takes effect), read the
                   upstream response, close the client connection with no
                   response
    delay          sleep "ms" milliseconds (interruptible), then forward
                   normally ("forward": false: answer nothing and close
                   instead of forwarding).  With "hold": true the request
                   waits for POST /__proxy/release instead ("ms" then only
                   bounds the wait), so a test orders events without
                   depending on how fast the machine is
    close_after    forward and relay normally (no "Connection: close"),
                   then close the client connection
    unprocessed    for BatchWriteItem / BatchGetItem: forward only the first
                   half of each table's requests and answer the rest as
                   UnprocessedItems / UnprocessedKeys, as DynamoDB does
                   under load

Stats: "requests" counts every proxied (non-control) request received,
"forwarded" every request sent upstream, "connections" the client
connections that carried at least one proxied request, "faults_applied" per
kind.  Counters are updated before the response (or the close) goes out.
A reset starts a new count: a request received before it is not counted
after it, not even its forward, which a delay fault can put off until long
after the client gave up on it and the next test began.

Signer log: every proxied request (faulted or not) is logged on arrival
with the access key id of its Authorization's Credential=, the SHA-256 of
its X-Amz-Security-Token (never the token itself) and its X-Amz-Date, so a
test checks each request against the credentials it knows were issued
(tests/harness/fakemeta.py's GET /_issued has the same token_sha256): signed
with an issued key, X-Amz-Date before that key's expiry. Up to 200000
entries; reset-stats leaves it alone (DELETE it or read ?since=).

Partition simulator (partitions.py, whose header has the model): DynamoDB's
per-partition limits, a token bucket of "wcu" write and "rcu" read units a
second per (table, partition key value).  A request whose partition is dry
is answered as DynamoDB does (ProvisionedThroughputExceededException, or
ThrottlingException with "mode": "on_demand"; a transaction is cancelled
with ThrottlingError / ProvisionedThroughputExceeded reasons; a batch hands
the dry partitions' items back unprocessed) and is NOT forwarded.  It sees
every request a fault would forward (faults come first: a "throttle" fault
still answers without it).  "requests"/"forwarded" count as before: a
request it refuses is counted, not forwarded.

Exits cleanly on SIGTERM/SIGINT, and by itself after --max-seconds.
Standard library only.
"""

import argparse
import calendar
import hashlib
import http.client
import json
import os
import re
import select
import sys
import threading
import time
import uuid
import zlib

# The plumbing it shares with tests/hostile/hostile.py; no __pycache__
# left in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import loopback_http  # noqa: E402
import partitions  # noqa: E402

CONTROL_PREFIX = "/__proxy/"
MAX_BODY = 64 * 1024 * 1024
DDB_ERR = "com.amazonaws.dynamodb.v20120810#"
JSON_CT = "application/x-amz-json-1.0"

MAX_SIGNERS = 200000
CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/")

KINDS = ("throttle", "provisioned", "status", "reset", "drop_response",
         "delay", "close_after", "unprocessed")

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding",
    "upgrade", "expect", "content-length",
}


class BadRequest(Exception):
    pass


class State:
    """Fault queue and counters, shared by all connection threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []          # list of dicts, each with "remaining"
        self.epoch = 0            # counts reset_stats: which count a request is in
        self.stopping = threading.Event()
        self.released = threading.Event()   # replaced at each release
        self.signers = []         # the signer log
        self.signer_seq = 0
        self.reset_stats()

    def log_signer(self, headers):
        """Logs who signed a proxied request (see the signer log above)."""
        m = CREDENTIAL_RE.search(headers.get("Authorization") or "")
        tok = headers.get("X-Amz-Security-Token")
        date = headers.get("X-Amz-Date")
        epoch = None
        if date:
            try:
                epoch = calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ"))
            except ValueError:
                epoch = None
        e = {
            "key_id": m.group(1) if m else None,
            "region": m.group(2) if m else None,
            "token_sha256": hashlib.sha256(tok.encode()).hexdigest() if tok is not None else None,
            "amz_date": date,
            "amz_epoch": epoch,
            "target": headers.get("X-Amz-Target"),
            "at": time.time(),
        }
        with self.lock:
            self.signer_seq += 1
            e["seq"] = self.signer_seq
            if len(self.signers) < MAX_SIGNERS:
                self.signers.append(e)

    def signer_log(self, since):
        with self.lock:
            return [dict(e) for e in self.signers if e["seq"] > since]

    def clear_signers(self):
        with self.lock:
            n = len(self.signers)
            self.signers = []
            return n

    def release(self):
        """Wakes the holds waiting now; later holds wait for the next."""
        with self.lock:
            ev, self.released = self.released, threading.Event()
        ev.set()

    def wait_hold(self, seconds):
        """True when the proxy is stopping, False when released (or the
        bound ran out).  Stopping releases every hold too."""
        with self.lock:
            ev = self.released
        ev.wait(seconds)
        return self.stopping.is_set()

    def reset_stats(self):
        with self.lock:
            self.epoch += 1
            self.requests = 0
            self.forwarded = 0
            self.connections = 0
            self.upstream_errors = 0
            self.applied = {}

    def stats(self):
        with self.lock:
            return {
                "requests": self.requests,
                "forwarded": self.forwarded,
                "connections": self.connections,
                "faults_applied": dict(self.applied),
                "faults_pending": sum(f["remaining"] for f in self.faults),
                "upstream_errors": self.upstream_errors,
            }

    def add_faults(self, faults):
        with self.lock:
            self.faults.extend(faults)
            return len(self.faults)

    def clear_faults(self):
        with self.lock:
            n = len(self.faults)
            self.faults = []
            return n

    def pending(self):
        with self.lock:
            return [dict(f) for f in self.faults]

    def take_fault(self, target):
        """Count one proxied request; return the fault to apply (or None)
        and the count it is in, for counting what it does later."""
        with self.lock:
            self.requests += 1
            for i, f in enumerate(self.faults):
                m = f.get("match")
                if m is not None and m not in (target or ""):
                    continue
                f["remaining"] -= 1
                if f["remaining"] <= 0:
                    del self.faults[i]
                kind = f["kind"]
                self.applied[kind] = self.applied.get(kind, 0) + 1
                return dict(f), self.epoch
            return None, self.epoch

    def count(self, attr, epoch=None):
        """Adds one to a counter; with epoch, only while no reset came
        since the request it is about was counted."""
        with self.lock:
            if epoch is None or epoch == self.epoch:
                setattr(self, attr, getattr(self, attr) + 1)


def validate_fault(obj):
    if not isinstance(obj, dict):
        raise ValueError("a fault must be a JSON object")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ValueError("unknown fault kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    f = dict(obj)
    count = f.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")
    f["remaining"] = count
    if "match" in f and not isinstance(f["match"], str):
        raise ValueError("match must be a string")
    if kind == "status":
        st = f.get("status", 500)
        if not isinstance(st, int) or isinstance(st, bool) or not 200 <= st <= 599:
            raise ValueError("status must be an integer 200..599")
        f["status"] = st
        if "headers" in f and not isinstance(f["headers"], dict):
            raise ValueError("headers must be an object")
        if not isinstance(f.get("forward", False), bool):
            raise ValueError("forward must be a boolean")
    if kind == "delay":
        ms = f.get("ms", 1000)
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0:
            raise ValueError("ms must be a non-negative number")
        f["ms"] = ms
    return f


def ddb_error_body(short, message):
    return json.dumps({"__type": DDB_ERR + short, "message": message},
                      separators=(",", ":")).encode()


class Handler(loopback_http.Handler):
    name = "faultproxy"
    timeout = 300                 # idle client connections are closed

    # -- connection lifecycle ---------------------------------------------

    def setup(self):
        super().setup()
        self.upstream = None
        self.epoch = None         # the count the current request is in

    def finish(self):
        super().finish()
        self._close_upstream()

    def handle_one_request(self):
        # The base class closes on OSError and ValueError (the client went
        # away, timed out, or a fault closed the socket).
        try:
            super().handle_one_request()
        except BadRequest as e:
            if not self.aborted:
                self._send_plain_error(400, str(e))
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        # The base class's errors (bad request line, unsupported method,
        # over-long line...): a short plain-text answer and a close, always
        # with an HTTP/1.1 status line (never the HTTP/0.9 bare body).
        self.request_version = "HTTP/1.1"
        if not hasattr(self, "command") or self.command is None:
            self.command = "GET"
        try:
            short = self.responses.get(code, ("Error",))[0]
        except AttributeError:
            short = "Error"
        msg = message or short
        msg = msg.encode("ascii", "backslashreplace").decode("ascii")
        self._send_plain_error(code, msg, reason=short)

    # -- entry points ------------------------------------------------------

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self):
        # A header line without a colon makes the header parser stop there
        # and treat the rest as a "payload": refuse that request.
        if self.headers.defects or self.headers.get_payload():
            raise BadRequest("malformed header section")
        body = self._read_body()
        path = self.path
        if path.startswith(CONTROL_PREFIX) or path.rstrip("/") == CONTROL_PREFIX.rstrip("/"):
            self._control(path, body)
        else:
            self._proxy(body)

    # -- request body ------------------------------------------------------

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding")
        cl = self.headers.get_all("Content-Length") or []
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding")
            if cl:
                raise BadRequest("both Transfer-Encoding and Content-Length")
            return self._read_chunked()
        if not cl:
            return b""
        if len(set(v.strip() for v in cl)) != 1:
            raise BadRequest("conflicting Content-Length headers")
        v = cl[0].strip()
        if not v.isdigit():
            raise BadRequest("bad Content-Length")
        n = int(v)
        if n > MAX_BODY:
            raise BadRequest("body too large")
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("client closed mid-body")
        return data

    def _read_chunked(self):
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed mid-body")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size < 0 or len(out) + size > MAX_BODY:
                raise BadRequest("bad chunk size")
            if size == 0:
                while True:       # trailers
                    t = self.rfile.readline(8192)
                    if not t:
                        raise ConnectionError("client closed in trailers")
                    if t in (b"\r\n", b"\n"):
                        return bytes(out)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise ConnectionError("client closed mid-chunk")
            out += chunk
            if self.rfile.readline(1024) not in (b"\r\n", b"\n"):
                raise BadRequest("bad chunk terminator")

    # -- responses ---------------------------------------------------------

    def _send(self, status, body=b"", headers=(), reason=None, close=False):
        self._head(status, headers, len(body), reason=reason, close=close)
        if body and self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)
        self.wfile.flush()

    def _send_plain_error(self, status, msg, reason=None):
        try:
            self._send(status, (msg + "\n").encode(),
                       [("Content-Type", "text/plain")], reason=reason, close=True)
        except OSError:
            pass
        self.close_connection = True

    def _send_ddb_error(self, status, short, message, extra=()):
        body = ddb_error_body(short, message)
        self._send(status, body, [
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Type", JSON_CT),
            ("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)),
        ] + list(extra))

    # -- control API -------------------------------------------------------

    def _control(self, path, body):
        st = self.server.state
        route = path.split("?", 1)[0].rstrip("/")
        m = self.command
        if route == "/__proxy/faults" and m == "POST":
            try:
                obj = json.loads(body.decode("utf-8") or "null")
                if isinstance(obj, dict):
                    obj = [obj]
                if not isinstance(obj, list):
                    raise ValueError("body must be a JSON list of faults")
                faults = [validate_fault(x) for x in obj]
            except (ValueError, UnicodeDecodeError) as e:
                self._send_json(400, {"error": str(e)})
                return
            n = st.add_faults(faults)
            self._send_json(200, {"queued": len(faults), "pending": n})
        elif route == "/__proxy/faults" and m == "DELETE":
            self._send_json(200, {"cleared": st.clear_faults()})
        elif route == "/__proxy/faults" and m == "GET":
            self._send_json(200, st.pending())
        elif route == "/__proxy/stats" and m == "GET":
            self._send_json(200, st.stats())
        elif route == "/__proxy/release" and m == "POST":
            st.release()
            self._send_json(200, {"ok": True})
        elif route == "/__proxy/signers" and m == "GET":
            q = path.split("?", 1)[1] if "?" in path else ""
            since = 0
            for part in q.split("&"):
                k, _, v = part.partition("=")
                if k == "since":
                    if not v.isdigit():
                        self._send_json(400, {"error": "since must be a whole number"})
                        return
                    since = int(v)
            self._send_json(200, st.signer_log(since))
        elif route == "/__proxy/signers" and m == "DELETE":
            self._send_json(200, {"cleared": st.clear_signers()})
        elif route.startswith("/__proxy/partitions"):
            self._control_partitions(route, m, body)
        elif route == "/__proxy/reset-stats" and m == "POST":
            st.reset_stats()
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": "no such control endpoint: %s %s" % (m, route)})

    def _control_partitions(self, route, m, body):
        sim = self.server.partitions
        try:
            if route == "/__proxy/partitions" and m == "GET":
                self._send_json(200, sim.describe())
            elif route == "/__proxy/partitions" and m == "POST":
                self._send_json(200, sim.configure(json.loads(body.decode("utf-8") or "{}")))
            elif route == "/__proxy/partitions" and m == "DELETE":
                sim.disable()
                self._send_json(200, {"ok": True})
            elif route == "/__proxy/partitions/reset" and m == "POST":
                sim.reset()
                self._send_json(200, {"ok": True})
            elif route == "/__proxy/partitions/advance" and m == "POST":
                obj = json.loads(body.decode("utf-8") or "{}")
                if not isinstance(obj, dict):
                    raise ValueError("body must be {\"seconds\": n}")
                sim.advance(obj.get("seconds"))
                self._send_json(200, {"ok": True, "clock": sim.describe()["clock"]})
            else:
                self._send_json(404, {"error": "no such control endpoint: %s %s" % (m, route)})
        except (ValueError, UnicodeDecodeError) as e:
            self._send_json(400, {"error": str(e)})

    # -- proxying ----------------------------------------------------------

    def _proxy(self, body):
        st = self.server.state
        if not self.counted:
            self.counted = True
            st.count("connections")
        st.log_signer(self.headers)
        fault, self.epoch = st.take_fault(self.headers.get("X-Amz-Target"))
        kind = fault["kind"] if fault else None

        if kind == "throttle":
            self._send_ddb_error(400, "ThrottlingException",
                                 "Rate of requests exceeds the allowed throughput.")
        elif kind == "provisioned":
            self._send_ddb_error(
                400, "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was "
                "exceeded. Consider increasing your provisioning level with the "
                "UpdateTable API.")
        elif kind == "status":
            if fault.get("forward"):
                self._forward_sim(body)      # takes effect upstream; its answer is replaced
            self._fault_status(fault)
        elif kind == "reset":
            self._abort()
        elif kind == "drop_response":
            self._forward_sim(body)          # takes effect upstream
            self._hard_close(rst=False)
        elif kind == "delay":
            wait = st.wait_hold if fault.get("hold") else st.stopping.wait
            if wait(fault["ms"] / 1000.0):
                self._hard_close(rst=False)
                return
            if fault.get("forward", True) is False:
                self._hard_close(rst=False)
                return
            self._relay(self._forward_sim(body))
        elif kind == "close_after":
            self._relay(self._forward_sim(body))
            self._hard_close(rst=False)
        elif kind == "unprocessed":
            self._partial_batch(body)
        else:
            self._relay(self._forward_sim(body))

    def _partial_batch(self, body):
        """What DynamoDB does to a batch under load: process only the first
        half of each table's requests and hand the rest back as
        UnprocessedItems (BatchWriteItem) or UnprocessedKeys (BatchGetItem).
        Any other request passes through untouched."""
        try:
            req = json.loads(body or b"{}")
            items = req["RequestItems"]
        except (ValueError, KeyError, TypeError):
            self._relay(self._forward_sim(body))
            return
        left = {}
        for table, spec in items.items():
            if isinstance(spec, list):           # BatchWriteItem
                keep = (len(spec) + 1) // 2
                if spec[keep:]:
                    left[table] = spec[keep:]
                items[table] = spec[:keep]
            elif isinstance(spec, dict) and isinstance(spec.get("Keys"), list):
                keys = spec["Keys"]                # BatchGetItem
                keep = (len(keys) + 1) // 2
                if keys[keep:]:
                    rest = dict(spec)
                    rest["Keys"] = keys[keep:]
                    left[table] = rest
                spec["Keys"] = keys[:keep]
        resp = self._forward_sim(json.dumps(req).encode())
        if resp is None or resp[0] == "error" or resp[0] != 200:
            self._relay(resp)
            return
        status, reason, headers, data = resp
        out = json.loads(data or b"{}")
        field = "UnprocessedKeys" if "Responses" in out else "UnprocessedItems"
        # What the partition simulator (or DynamoDB) left unprocessed too.
        for table, rest in (out.get(field) or {}).items():
            if table not in left:
                left[table] = rest
            elif isinstance(rest, list):
                left[table] = rest + left[table]
            else:
                merged = dict(left[table])
                merged["Keys"] = rest.get("Keys", []) + left[table]["Keys"]
                left[table] = merged
        out[field] = left
        hdrs = [(k, v) for k, v in headers if k.lower() != "x-amz-crc32"]
        self._relay((status, reason, hdrs, json.dumps(out).encode()))

    def _fault_status(self, f):
        status = f["status"]
        headers = [("x-amzn-RequestId", str(uuid.uuid4()))]
        if "body" in f:
            b = f["body"]
            if isinstance(b, str):
                body = b.encode("utf-8")
                try:
                    json.loads(b)
                    ct = JSON_CT
                except RecursionError:  # JSON nested past Python's stack
                    ct = JSON_CT
                except ValueError:
                    ct = "text/plain"
            else:
                body = json.dumps(b, separators=(",", ":")).encode()
                ct = JSON_CT
        elif status == 500:
            body, ct = ddb_error_body("InternalServerError", "Internal server error"), JSON_CT
        elif status == 503:
            body, ct = ddb_error_body("ServiceUnavailable", "Service unavailable"), JSON_CT
        elif status >= 500:
            body, ct = ddb_error_body("InternalServerError", "Internal server error"), JSON_CT
        else:
            body, ct = b"", None
        ct = f.get("content_type", ct)
        if body and ct:
            headers.append(("Content-Type", ct))
        for k, v in (f.get("headers") or {}).items():
            headers.append((str(k), str(v)))
        self._send(status, body, headers)

    def _close_upstream(self):
        if self.upstream is not None:
            try:
                self.upstream.close()
            except OSError:
                pass
            self.upstream = None

    def _upstream_conn(self):
        c = self.upstream
        if c is not None and c.sock is not None:
            # An idle upstream connection that is readable was closed (or is
            # confused): drop it rather than fail the next request on it.
            try:
                r, _, _ = select.select([c.sock], [], [], 0)
            except (OSError, ValueError):
                r = [True]
            if r:
                self._close_upstream()
                c = None
        if c is None:
            host, port = self.server.upstream
            c = http.client.HTTPConnection(host, port, timeout=self.server.upstream_timeout)
            self.upstream = c
        return c

    def _forward_sim(self, body):
        """_forward through the partition simulator when it is on: the
        upstream's answer (trimmed and charged), or a throttling answer for
        a request that is then not forwarded."""
        sim = self.server.partitions
        if not sim.enabled:
            return self._forward(body)
        op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        try:
            req = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            return self._forward(body)
        if not isinstance(req, dict):
            return self._forward(body)
        if op in ("CreateTable", "DeleteTable") and isinstance(req.get("TableName"), str):
            sim.forget(req["TableName"])
            return self._forward(body)
        return partitions.run(sim, op, req, body, self._forward, self._describe_hash_key)

    def _describe_hash_key(self, table):
        """The table's hash key attribute, asked of the upstream with the
        client's own signature headers (DynamoDB Local does not check the
        signature); None when it cannot tell."""
        host, port = self.server.upstream
        hdrs = {"Content-Type": JSON_CT, "X-Amz-Target": "DynamoDB_20120810.DescribeTable"}
        for h in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if self.headers.get(h) is not None:
                hdrs[h] = self.headers.get(h)
        c = http.client.HTTPConnection(host, port, timeout=self.server.upstream_timeout)
        try:
            c.request("POST", "/", json.dumps({"TableName": table}).encode(), hdrs)
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                return None
            for ks in json.loads(data)["Table"]["KeySchema"]:
                if ks.get("KeyType") == "HASH":
                    return ks["AttributeName"]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            return None
        finally:
            c.close()
        return None

    def _forward(self, body):
        """Send the request upstream; return (status, reason, headers, body)
        or None on an upstream failure."""
        st = self.server.state
        st.count("forwarded", self.epoch)
        try:
            c = self._upstream_conn()
            c.putrequest(self.command, self.path, skip_host=True,
                         skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() in HOP_BY_HOP:
                    continue
                c.putheader(k, v)
            if body or self.command in ("POST", "PUT", "PATCH"):
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body if body else None)
            r = c.getresponse()
            data = r.read()
            if r.will_close:
                self._close_upstream()
            return (r.status, r.reason, r.getheaders(), data)
        except ValueError as e:
            # http.client refused something in the request (e.g. an illegal
            # header name): the client's fault, not the upstream's.
            self._close_upstream()
            raise BadRequest("unforwardable request: %s" % e)
        except (OSError, http.client.HTTPException) as e:
            self._close_upstream()
            st.count("upstream_errors", self.epoch)
            return ("error", str(e) or e.__class__.__name__)

    def _relay(self, resp):
        if resp is None or resp[0] == "error":
            msg = "faultproxy: upstream error: %s" % (resp[1] if resp else "?")
            body = json.dumps({"__type": "faultproxy#UpstreamError", "message": msg}).encode()
            self._send(502, body, [("Content-Type", JSON_CT)])
            return
        status, reason, headers, data = resp
        hdrs = [(k, v) for k, v in headers
                if k.lower() not in HOP_BY_HOP and k.lower() != "date"]
        self._send(status, data, hdrs, reason=reason)

    def _abort(self):
        self._hard_close(rst=True)


def parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="fault-injecting HTTP/1.1 proxy")
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--upstream", type=parse_hostport, required=True, help="HOST:PORT")
    ap.add_argument("--port-file", help="write the listening port here")
    ap.add_argument("--max-seconds", type=float, default=3600.0,
                    help="exit after this long (default 3600)")
    ap.add_argument("--upstream-timeout", type=float, default=120.0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    state = State()
    server = loopback_http.Server(("127.0.0.1", a.listen), Handler)
    server.state = state
    server.partitions = partitions.Partitions()
    server.upstream = a.upstream
    server.upstream_timeout = a.upstream_timeout
    server.verbose = a.verbose
    port = server.server_address[1]

    def on_stop():
        state.stopping.set()          # wake any delay faults
        state.release()               # and any held ones

    return loopback_http.serve(server, "faultproxy",
                               "listening on 127.0.0.1:%d -> %s:%d (pid %d)"
                               % (port, a.upstream[0], a.upstream[1], os.getpid()),
                               a.port_file, a.max_seconds, on_stop)


if __name__ == "__main__":
    sys.exit(main())
