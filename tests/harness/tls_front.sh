#!/usr/bin/env bash
# Run tests/harness/tls_front.py (TLS in front of DynamoDB Local) in the
# background for the test runner and tests/spec/tls_spec.lua.
#
#   tests/harness/tls_front.sh start UPSTREAM_PORT   make a CA and a server
#                        certificate, start on a free port of 127.0.0.1;
#                        print the https URL, then the CA file's path
#   tests/harness/tls_front.sh stop      stop it (by its pid)
#   tests/harness/tls_front.sh status    print running|stopped, exit 0|1
#
# Files in build/tls-front (TLS_FRONT_STATE_DIR moves it), made anew
# with the openssl CLI at each start, valid two days:
#   ca.pem, ca.key          the CA the tests trust (ca_file / AWS_CA_BUNDLE)
#   server.pem, server.key  signed by it, for IP 127.0.0.1 and localhost
#   other-ca.pem            a second CA that signed nothing here: a client
#                           trusting only it must fail verification
#   port, pid, tls_front.log
# Env: TLS_FRONT_MAX_SECONDS (default 3600).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${TLS_FRONT_STATE_DIR:-$ROOT/build/tls-front}"
DAEMON_PIDFILE="$STATE_DIR/pid"
DAEMON_PORTFILE="$STATE_DIR/port"
DAEMON_LOGFILE="$STATE_DIR/tls_front.log"
DAEMON_MARK='tls_front.py'
. "$HERE/daemon.sh"

say() { printf 'tls_front: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    say "usage: tls_front.sh start UPSTREAM_PORT | stop | status"
    exit 2
}

# ec_key FILE: a P-256 key (fast to make, accepted everywhere).
ec_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca NAME CN: NAME.pem and NAME.key, a self-signed CA.
make_ca() {
    ec_key "$STATE_DIR/$1.key"
    openssl req -x509 -new -key "$STATE_DIR/$1.key" -out "$STATE_DIR/$1.pem" -days 2 \
        -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_certs() {
    local ext="$STATE_DIR/server.ext"
    mkdir -p "$STATE_DIR"
    rm -f "$STATE_DIR"/*.pem "$STATE_DIR"/*.key "$STATE_DIR"/*.csr "$STATE_DIR"/*.srl
    make_ca ca "ddbkit test CA $$"
    make_ca other-ca "ddbkit other CA $$"
    ec_key "$STATE_DIR/server.key"
    openssl req -new -key "$STATE_DIR/server.key" -out "$STATE_DIR/server.csr" \
        -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$ext"
    openssl x509 -req -in "$STATE_DIR/server.csr" -CA "$STATE_DIR/ca.pem" \
        -CAkey "$STATE_DIR/ca.key" -CAcreateserial -out "$STATE_DIR/server.pem" -days 2 \
        -extfile "$ext" 2>/dev/null
    openssl verify -CAfile "$STATE_DIR/ca.pem" "$STATE_DIR/server.pem" >/dev/null \
        || die "the server certificate does not verify against the CA just made"
}

cmd_start() {
    [ $# -eq 1 ] || usage
    local up="$1"
    case "$up" in ''|*[!0-9]*) die "bad upstream port: '$up'" ;; esac
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    command -v openssl >/dev/null 2>&1 || die "openssl not found"
    # Stop one still running before its certificate is replaced under it.
    daemon_stop
    make_certs || die "could not make the test certificates"
    daemon_start "the TLS front" python3 "$HERE/tls_front.py" --listen 0 \
        --upstream "127.0.0.1:$up" --cert "$STATE_DIR/server.pem" --key "$STATE_DIR/server.key" \
        --port-file "$DAEMON_PORTFILE" --max-seconds "${TLS_FRONT_MAX_SECONDS:-3600}"
    say "https://127.0.0.1:$DAEMON_PORT -> 127.0.0.1:$up (pid $DAEMON_STARTED_PID)"
    printf 'https://127.0.0.1:%s\n%s\n' "$DAEMON_PORT" "$STATE_DIR/ca.pem"
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop) daemon_stop ;;
    status) daemon_status ;;
    *) usage ;;
esac
