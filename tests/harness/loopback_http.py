"""loopback_http: what the harness's HTTP test servers share.

tests/faultproxy/faultproxy.py and tests/hostile/hostile.py import it (each
puts this folder on sys.path): the connection plumbing of a keep-alive
HTTP/1.1 handler that may close or reset a connection on purpose, a
threading server that one bad connection never takes down, and the run of a
server started by tests/harness/daemon.sh (port file, signals, the
--max-seconds bound). What a server answers is its own.

Standard library only.
"""

import http.server
import json
import os
import signal
import socket
import struct
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    """A handler whose subclass sets `name` (server header, log prefix) and
    defines _send(status, body, headers, ...); `counted` is for the
    subclass to count the connection once, `aborted` says _hard_close ran."""

    name = "loopback"
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.counted = False
        self.aborted = False

    def finish(self):
        try:
            if not self.aborted:
                super().finish()
        except OSError:
            pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ValueError):
            # client went away, timed out, or we closed the socket ourselves
            # (on purpose) and the base class touched the closed file after.
            self.close_connection = True

    def version_string(self):
        return self.name

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s: %s %s\n" % (self.name, self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        if self.server.verbose:
            super().log_request(code, size)

    def _head(self, status, headers, length, reason=None, close=False):
        """Status line and headers, with Date and Content-Length: length."""
        self.send_response_only(status, reason)
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _send_json(self, status, obj):
        body = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self._send(status, body, [("Content-Type", "application/json")])

    def _hard_close(self, rst):
        """Close the client connection now, with no (further) response."""
        self.close_connection = True
        self.aborted = True
        s = self.connection
        try:
            if rst:
                # close() with a zero linger time sends an RST.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                try:
                    self.wfile.flush()
                except (OSError, ValueError):
                    pass
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # The socket is only really closed once the rfile/wfile wrappers that
        # reference it are closed too.
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            s.close()
        except OSError:
            pass


class Server(http.server.ThreadingHTTPServer):
    """Set `verbose` on it before serving."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # One bad connection must never take the server down; say so only if
        # asked to.
        if self.verbose:
            super().handle_error(request, client_address)

    def shutdown_request(self, request):
        try:
            super().shutdown_request(request)
        except OSError:
            pass


def serve(server, name, banner, port_file, max_seconds, on_stop):
    """Write the server's port to port_file (if any, atomically), serve
    until SIGTERM, SIGINT or max_seconds, call on_stop() (to wake what
    waits inside handlers), shut the server down. Says banner (after
    "name: ") once listening. Returns 0, the exit status."""
    port = server.server_address[1]
    if port_file:
        tmp = "%s.tmp.%d" % (port_file, os.getpid())
        with open(tmp, "w") as fh:
            fh.write("%d\n" % port)
        os.replace(tmp, port_file)

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="serve", daemon=True)
    t.start()
    sys.stderr.write("%s: %s\n" % (name, banner))
    sys.stderr.flush()

    deadline = time.monotonic() + max_seconds
    while not done.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            sys.stderr.write("%s: --max-seconds reached, exiting\n" % name)
            break
        done.wait(min(left, 1.0))

    on_stop()
    server.shutdown()
    server.server_close()
    sys.stderr.write("%s: stopped\n" % name)
    sys.stderr.flush()
    return 0
