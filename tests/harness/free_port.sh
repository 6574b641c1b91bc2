#!/usr/bin/env bash
# Prints a TCP port on 127.0.0.1 that a server can bind right now.
#
#   tests/harness/free_port.sh          a random one in [20000, ephemeral)
#   tests/harness/free_port.sh FIRST    the first one from FIRST up
#
# "Free" is checked by binding the port, not by connecting to it: a port
# that is the local end of an outgoing connection has no listener, so a
# connect finds it free, yet a server's bind is refused. Those ports are
# the kernel's ephemeral range (ip_local_port_range), where the tests' own
# clients live, so a random port is taken below it. A port found free can
# still be taken before the server binds it; callers that can tell a
# refused bind from other failures try another port.
set -euo pipefail

exec python3 - "${1:-}" <<'PY'
import random, socket, sys

def binds(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
if sys.argv[1]:
    candidates = range(int(sys.argv[1]), 65536)
else:
    top = max(low, 20001)
    candidates = (random.randrange(20000, top) for _ in range(500))
for port in candidates:
    if binds(port):
        print(port)
        sys.exit(0)
sys.exit("free_port: no free port found")
PY
