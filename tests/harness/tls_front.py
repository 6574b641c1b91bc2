#!/usr/bin/env python3
"""tls_front: TLS in front of DynamoDB Local, for the https tests.

    tls_front.py --listen PORT --upstream 127.0.0.1:UPORT --cert PEM --key PEM
                 [--port-file F] [--max-seconds N] [--verbose]

Listens on 127.0.0.1:PORT (0 = any free port, written to --port-file),
completes a TLS handshake with each client using the certificate given
(tests/harness/tls_front.sh makes a CA and a certificate for IP 127.0.0.1
with the openssl CLI at each start), then relays the bytes both ways to the
upstream in plain TCP: it never parses HTTP, so what the client sees is
DynamoDB Local's own answers, over TLS.

A client that does not trust the CA aborts the handshake; the failure is
the client's to report (this server only logs it with --verbose).

Exits on SIGTERM/SIGINT and by itself after --max-seconds. Standard library
only.
"""

import argparse
import os
import select
import socket
import socketserver
import ssl
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback_http  # noqa: E402


class Relay(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        raw = self.request
        raw.settimeout(30)
        try:
            tls = srv.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            if srv.verbose:
                sys.stderr.write("tls_front: handshake failed: %s\n" % e)
            return
        try:
            up = socket.create_connection(srv.upstream, timeout=30)
        except OSError as e:
            if srv.verbose:
                sys.stderr.write("tls_front: upstream: %s\n" % e)
            tls.close()
            return
        try:
            self.pump(tls, up)
        finally:
            for s in (up, tls):
                try:
                    s.close()
                except OSError:
                    pass

    def pump(self, tls, up):
        """Relays until either side closes or the server stops. TLS may hold
        decrypted bytes select() cannot see: drain pending() first."""
        tls.setblocking(False)
        up.setblocking(False)
        while not self.server.stopping.is_set():
            if tls.pending() == 0:
                r, _, _ = select.select([tls, up], [], [], 0.5)
            else:
                r = [tls]
            for s in r:
                try:
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                other = up if s is tls else tls
                if not self.send_all(other, data):
                    return

    def send_all(self, s, data):
        view = memoryview(data)
        while view:
            try:
                n = s.send(view)
                view = view[n:]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [s], [], 1.0)
            except (OSError, ssl.SSLError):
                return False
            if self.server.stopping.is_set():
                return False
        return True


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host or "127.0.0.1", int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="TLS in front of a plain TCP server")
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=parse_hostport, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    server = Server(("127.0.0.1", a.listen), Relay)
    server.ctx = ctx
    server.upstream = a.upstream
    server.verbose = a.verbose
    server.stopping = threading.Event()
    port = server.server_address[1]
    return loopback_http.serve(server, "tls_front",
                               "https://127.0.0.1:%d -> %s:%d (pid %d)"
                               % (port, a.upstream[0], a.upstream[1], os.getpid()),
                               a.port_file, a.max_seconds, server.stopping.set)


if __name__ == "__main__":
    sys.exit(main())
