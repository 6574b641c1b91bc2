#!/usr/bin/env python3
"""hostile: a DynamoDB test double that answers only what a test scripted.

    hostile.py --listen PORT [--port-file F] [--max-seconds N] [--verbose]

It is not a DynamoDB: it stores nothing and understands no request. Every
request to a path outside the control API takes the first queued answer
that matches it and gets exactly that answer: a broken body, a wrong shape,
a 2 MB nesting, a LastEvaluatedKey that never changes, a body cut short, a
trickle, a close. The specs use it to prove that a broken or hostile server
gets nil, err from every store, never a crash, a hang or a raise
(tests/spec/hostile_server_spec.lua). Listens on 127.0.0.1 only; HTTP/1.1
with keep-alive.

Control API on the same port (never counted, never consumes an answer):

    POST   /__hostile/script   body: a JSON list of answers (or one object),
                               appended to the FIFO queue
    GET    /__hostile/script   the pending queue
    DELETE /__hostile/script   clear the queue
    GET    /__hostile/stats    {"requests": n, "targets": {target: n},
                                "log": [target, ...] (the first 10000),
                                "answered": {kind: n}, "unscripted": n,
                                "pending": n, "connections": n}
    DELETE /__hostile/reset    clear the queue and zero the counters

The same, as a POST whose X-Amz-Target names the operation HostileScript,
HostileQueue, HostileClear, HostileStats or HostileReset (any prefix before
the dot): what a DynamoDB client sends, so a spec scripts the double through
a ddbkit client of its own (core.call_raw) instead of starting curl.

A request with no matching answer gets a 400 ValidationException
"hostile: no scripted answer" (not retryable, so the client stops there)
and counts as "unscripted".

An answer is {"kind": K, ...}; options every kind takes:
    "match": "s" | ["s", ...]   only for requests whose X-Amz-Target
                                contains s (one of them); others pass by
    "count": n                  answer n matching requests (default 1)
    "forever": true             never used up (count ignored)

Kinds:
    raw (default)  "status" (200), "headers" {name: value}, "body": a string
                   sent as is, or any other JSON value sent as its JSON text
                   (5, "str" as a JSON string needs "body": "\\"str\\"").
                   Content-Type application/x-amz-json-1.0 and an
                   x-amzn-RequestId are added unless "headers" names them.
    error          status (400) with {"__type": "type", "message": "message"}
                   built here, so either may be empty, absent (null: the
                   field is left out) or hold control characters.
    gen            a generated body, never stored by the test:
                   {"gen": "deep", "depth": n, "at": "Attributes",
                    "shape": "list" | "map"}: {"<at>": {"x": <n levels>}}
                   where a level is "[" ... "]" (list, 2 bytes a level:
                   1,000,000 levels is 2 MB) or {"a": ... } (map);
                   ("type": "t": an error body, "__type" t and a message
                   first, for an error status);
                   {"gen": "repeat_lek"}: a Query/Scan page with no items
                   and the same LastEvaluatedKey every time; by default
                   forever and matching Query and Scan.
    truncate       status/headers/body as raw, but Content-Length says
                   "claim" bytes (default: twice the body, at least 64) and
                   the connection closes after the body
    trickle        status/headers/body as raw, sent "bytes" bytes (default
                   1) every "interval_ms" (default 200) until done, the
                   client goes, or the double stops; the body only, or with
                   "head": true the status line (as long as "reason" makes
                   it), then the rest at once (stats' "trickles_finished"
                   counts the trickles sent to the end)
    close          read the request, close the connection without an answer
    reset          read the request, abort the connection (RST)

Exits cleanly on SIGTERM/SIGINT, and by itself after --max-seconds.
Standard library only.
"""

import argparse
import json
import os
import sys
import threading
import uuid

# The plumbing it shares with tests/faultproxy/faultproxy.py; no
# __pycache__ left in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import loopback_http  # noqa: E402

CONTROL_PREFIX = "/__hostile/"
MAX_BODY = 16 * 1024 * 1024
MAX_LOG = 10000
JSON_CT = "application/x-amz-json-1.0"
KINDS = ("raw", "error", "gen", "truncate", "trickle", "close", "reset")
GENS = ("deep", "repeat_lek")
MAX_DEPTH = 50 * 1000 * 1000
# The control API once more as DynamoDB operations (X-Amz-Target
# "<anything>.HostileScript" ...), so a spec can reach it with its own
# client and no curl process: operation -> (method, path).
CONTROL_TARGETS = {
    "HostileScript": ("POST", "/__hostile/script"),
    "HostileQueue": ("GET", "/__hostile/script"),
    "HostileClear": ("DELETE", "/__hostile/script"),
    "HostileStats": ("GET", "/__hostile/stats"),
    "HostileReset": ("DELETE", "/__hostile/reset"),
}


class State:
    """Answer queue and counters, shared by all connection threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue = []
        self.stopping = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            self.queue = []
            self.requests = 0
            self.unscripted = 0
            self.connections = 0
            self.targets = {}
            self.log = []
            self.answered = {}
            self.trickles_finished = 0

    def stats(self):
        with self.lock:
            return {
                "requests": self.requests,
                "targets": dict(self.targets),
                "log": list(self.log),
                "answered": dict(self.answered),
                "unscripted": self.unscripted,
                "pending": len(self.queue),
                "connections": self.connections,
                "trickles_finished": self.trickles_finished,
            }

    def take(self, target):
        """Count one request; return the answer for it, or None."""
        target = target or ""
        with self.lock:
            self.requests += 1
            self.targets[target] = self.targets.get(target, 0) + 1
            if len(self.log) < MAX_LOG:
                self.log.append(target)
            for i, a in enumerate(self.queue):
                m = a.get("match")
                if m is not None and not any(s in target for s in m):
                    continue
                if not a.get("forever"):
                    a["remaining"] -= 1
                    if a["remaining"] <= 0:
                        del self.queue[i]
                key = a.get("gen") or a["kind"]
                self.answered[key] = self.answered.get(key, 0) + 1
                return dict(a)
            self.unscripted += 1
            return None


def positive_int(a, field, default, top=None):
    v = a.get(field, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1 or (top and v > top):
        raise ValueError("%s must be an integer 1..%s" % (field, top or "any"))
    return v


def validate(obj):
    if not isinstance(obj, dict):
        raise ValueError("an answer must be a JSON object")
    a = dict(obj)
    kind = a.get("kind") or ("gen" if "gen" in a else "raw")
    if kind not in KINDS:
        raise ValueError("unknown kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    a["kind"] = kind
    if kind == "gen":
        if a.get("gen") not in GENS:
            raise ValueError("gen must be one of %s" % ", ".join(GENS))
        if a["gen"] == "deep":
            a["depth"] = positive_int(a, "depth", 1000000, MAX_DEPTH)
            if not isinstance(a.get("at", "Attributes"), str):
                raise ValueError("at must be a string")
            if not isinstance(a.get("type", ""), (str, type(None))):
                raise ValueError("type must be a string")
            if a.get("shape", "list") not in ("list", "map"):
                raise ValueError('shape must be "list" or "map"')
        else:
            a.setdefault("forever", True)
            a.setdefault("match", ["Query", "Scan"])
    m = a.get("match")
    if isinstance(m, str):
        a["match"] = [m]
    elif m is not None and not (isinstance(m, list) and all(isinstance(s, str) for s in m)):
        raise ValueError("match must be a string or a list of strings")
    a["remaining"] = positive_int(a, "count", 1)
    st = a.get("status", 400 if kind == "error" else 200)
    if not isinstance(st, int) or isinstance(st, bool) or not 100 <= st <= 599:
        raise ValueError("status must be an integer 100..599")
    a["status"] = st
    if not isinstance(a.get("headers", {}), dict):
        raise ValueError("headers must be an object")
    for f in ("claim", "bytes", "interval_ms"):
        if f in a:
            positive_int(a, f, 1)
    return a


def body_of(a):
    """The body of a raw / error / truncate / trickle answer, as bytes."""
    if a["kind"] == "error":
        obj = {}
        for field, name in (("type", "__type"), ("message", "message")):
            if a.get(field) is not None:
                obj[name] = a[field]
        return json.dumps(obj, separators=(",", ":")).encode()
    b = a.get("body", "")
    if isinstance(b, str):
        return b.encode("utf-8", "surrogateescape")
    return json.dumps(b, separators=(",", ":")).encode()


class Handler(loopback_http.Handler):
    name = "hostile"
    timeout = 120

    def do_GET(self):
        body = self._read_body()
        if body is None:
            return
        target = self.headers.get("X-Amz-Target") or ""
        if target.rpartition(".")[2] in CONTROL_TARGETS:
            method, self.path = CONTROL_TARGETS[target.rpartition(".")[2]]
            self._control(body, method)
        elif self.path.startswith(CONTROL_PREFIX):
            self._control(body)
        else:
            self._answer()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self):
        v = (self.headers.get("Content-Length") or "0").strip()
        if not v.isdigit() or int(v) > MAX_BODY or self.headers.get("Transfer-Encoding"):
            self._send(400, b"bad request body\n", [("Content-Type", "text/plain")], close=True)
            return None
        n = int(v)
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            return None
        return data

    # -- responses ---------------------------------------------------------

    def _send(self, status, body, headers, close=False):
        """The whole body as given (a hostile 204 or 304 keeps its body)."""
        self._head(status, headers, len(body), close=close)
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _headers_of(self, a):
        given = [(str(k), str(v)) for k, v in (a.get("headers") or {}).items()]
        names = {k.lower() for k, _ in given}
        out = []
        if "content-type" not in names:
            out.append(("Content-Type", JSON_CT))
        if "x-amzn-requestid" not in names:
            out.append(("x-amzn-RequestId", str(uuid.uuid4())))
        return out + given

    # -- control API -------------------------------------------------------

    def _control(self, body, method=None):
        st = self.server.state
        route = self.path.split("?", 1)[0].rstrip("/")
        m = method or self.command
        if route == "/__hostile/script" and m == "POST":
            try:
                obj = json.loads(body.decode("utf-8") or "null")
                if isinstance(obj, dict):
                    obj = [obj]
                if not isinstance(obj, list):
                    raise ValueError("body must be a JSON list of answers")
                answers = [validate(x) for x in obj]
            except (ValueError, UnicodeDecodeError) as e:
                self._send_json(400, {"error": str(e)})
                return
            with st.lock:
                st.queue.extend(answers)
                n = len(st.queue)
            self._send_json(200, {"queued": len(answers), "pending": n})
        elif route == "/__hostile/script" and m == "GET":
            with st.lock:
                q = [dict(a) for a in st.queue]
            self._send_json(200, q)
        elif route == "/__hostile/script" and m == "DELETE":
            with st.lock:
                n, st.queue = len(st.queue), []
            self._send_json(200, {"cleared": n})
        elif route == "/__hostile/stats" and m == "GET":
            self._send_json(200, st.stats())
        elif route == "/__hostile/reset" and m in ("DELETE", "POST"):
            st.reset()
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": "no such control endpoint: %s %s" % (m, route)})

    # -- scripted answers --------------------------------------------------

    def _answer(self):
        st = self.server.state
        if not self.counted:
            self.counted = True
            with st.lock:
                st.connections += 1
        a = st.take(self.headers.get("X-Amz-Target"))
        if a is None:
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                               "message": "hostile: no scripted answer"}).encode()
            self._send(400, body, self._headers_of({}))
            return
        kind = a["kind"]
        if kind == "close":
            self._hard_close(rst=False)
        elif kind == "reset":
            self._hard_close(rst=True)
        elif kind == "gen":
            if a["gen"] == "deep":
                self._deep(a)
            else:
                page = {"Items": [], "Count": 0, "ScannedCount": 0,
                        "LastEvaluatedKey": {"pk": {"S": "same"}, "sk": {"S": "same"}}}
                self._send(a["status"], json.dumps(page).encode(), self._headers_of(a))
        elif kind == "truncate":
            body = body_of(a)
            claim = a.get("claim", max(64, 2 * len(body)))
            self._head(a["status"], self._headers_of(a), claim, close=True)
            self.wfile.write(body[:claim])
            self._hard_close(rst=False)
        elif kind == "trickle":
            self._trickle(a)
        else:
            self._send(a["status"], body_of(a), self._headers_of(a))

    def _deep(self, a):
        """{"<at>":{"x":<depth levels>}}, written in pieces, never whole."""
        depth = a["depth"]
        if a.get("shape", "list") == "list":
            opener, closer, core = b"[", b"]", b""
        else:
            opener, closer, core = b'{"a":', b"}", b"1"
        head = b'{'
        if a.get("type") is not None:
            head += b'"__type":' + json.dumps(a["type"]).encode() + b',"message":"deep",'
        head += json.dumps(a.get("at", "Attributes")).encode() + b':{"x":'
        tail = b"}}"
        length = len(head) + depth * (len(opener) + len(closer)) + len(core) + len(tail)
        self._head(a["status"], self._headers_of(a), length)
        self.wfile.write(head)
        step = 65536
        for piece, n in ((opener, depth), (core, 1), (closer, depth)):
            while n > 0:
                k = min(n, step)
                self.wfile.write(piece * k)
                n -= k
        self.wfile.write(tail)
        self.wfile.flush()

    def _trickle(self, a):
        body = body_of(a)
        if a.get("head"):
            # The status line trickles (made long with "reason"), then the
            # rest goes at once: a client that bounds each read, not the
            # exchange, waits the line out and so gets to the end.
            lines = ["HTTP/1.1 %d %s" % (a["status"], a.get("reason", "X"))]
            lines += ["%s: %s" % kv for kv in self._headers_of(a)]
            lines += ["Content-Length: %d" % len(body), "", ""]
            data = "\r\n".join(lines).encode() + body
            slow = data.index(b"\r\n") + 2
        else:
            self._head(a["status"], self._headers_of(a), len(body))
            self.wfile.flush()
            data = body
            slow = len(data)
        n, pause = a.get("bytes", 1), a.get("interval_ms", 200) / 1000.0
        for i in range(0, slow, n):
            if self.server.state.stopping.wait(pause):
                self._hard_close(rst=False)
                return
            self.wfile.write(data[i:min(i + n, slow)])
            self.wfile.flush()
        self.wfile.write(data[slow:])
        self.wfile.flush()
        # Sent to the end: the client waited the whole trickle out.
        with self.server.state.lock:
            self.server.state.trickles_finished += 1


def main(argv=None):
    ap = argparse.ArgumentParser(description="a scripted hostile DynamoDB test double")
    ap.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--port-file", help="write the listening port here")
    ap.add_argument("--max-seconds", type=float, default=3600.0,
                    help="exit after this long (default 3600)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    server = loopback_http.Server(("127.0.0.1", a.listen), Handler)
    server.state = State()
    server.verbose = a.verbose
    port = server.server_address[1]

    def on_stop():
        server.state.stopping.set()     # ends any trickle

    return loopback_http.serve(server, "hostile",
                               "listening on 127.0.0.1:%d (pid %d)" % (port, os.getpid()),
                               a.port_file, a.max_seconds, on_stop)


if __name__ == "__main__":
    sys.exit(main())
