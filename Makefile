# ddbkit — `make` builds everything; `make test` runs every test; `make run`
# runs the demo against a local DynamoDB; `make bench` measures.

CC       ?= gcc
PREFIX   ?= /usr/local
DESTDIR  ?=
B        := build

WARN     := -Wall -Wextra -Werror
CSTD     := -std=c11 -D_GNU_SOURCE
OPT      ?= -O2 -g
CFLAGS_ALL = $(CSTD) $(OPT) $(WARN) -fPIC $(CFLAGS)
ENGINE_LIBS := -lcurl -lssl -lcrypto -lyajl -lexpat -lpthread -lm

LUA54_INC  := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUAJIT_INC := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUA54_LIBS := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
EDIT_LIBS  := $(shell pkg-config --libs libedit 2>/dev/null || echo -ledit)

ENGINE_SRC := $(wildcard engine/*.c)
CORE_SRC   := $(wildcard bindings/core/*.c)
CLI_SRC    := $(wildcard bindings/cli/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(B)/obj/%.o)
UT_OBJ     := $(ENGINE_SRC:%.c=$(B)/ut/%.o)
ASAN_OBJ   := $(ENGINE_SRC:%.c=$(B)/asan/%.o)
CTESTS     := $(patsubst tests/c/%.c,%,$(wildcard tests/c/test_*.c))
# Test support (tests/c/*.c but test_*.c): linked into every test binary.
CTSUP_SRC  := $(filter-out $(wildcard tests/c/test_*.c),$(wildcard tests/c/*.c))
CTSUP_HDR  := $(wildcard tests/c/*.h)
CTSUP_UT   := $(CTSUP_SRC:%.c=$(B)/ut/%.o)
CTSUP_ASAN := $(CTSUP_SRC:%.c=$(B)/asan/%.o)
HEADERS    := $(wildcard engine/*.h bindings/core/*.h bindings/cli/*.h)

LIB_A   := $(B)/libddbkit.a
LIB_SO  := $(B)/libddbkit.so
# libddbkit.so's SONAME: libddbkit.so.MAJOR, or MAJOR.MINOR while MAJOR is 0
# (each 0.x release may change the ABI). The installed file carries the
# whole version, with the SONAME and the plain name as symlinks.
DDBK_VER   := $(shell sed -n 's/^\#define DDBK_VERSION "\(.*\)"/\1/p' engine/ddbkit.h)
SO_ABI     := $(shell echo '$(DDBK_VER)' | awk -F. '{ print ($$1 == 0) ? $$1 "." $$2 : $$1 }')
LIB_SONAME := libddbkit.so.$(SO_ABI)
CORE54  := $(B)/lua54/ddbkit/core.so
COREJIT := $(B)/luajit/ddbkit/core.so
SHIM    := $(B)/loopback_bind.so
CLI     := $(B)/ddbkit
GAMEHOST := $(B)/gamehost

.PHONY: all deps deps-run test run bench install clean fuzz ctest lint FORCE
# Keep the objects the test binaries are linked from: without this make
# deletes them as intermediates and rebuilds them every time.
.SECONDARY:
all: $(LIB_A) $(LIB_SO) $(CORE54) $(COREJIT) $(SHIM) $(CLI) $(GAMEHOST)

# deps: everything `make test` needs; deps-run: only what `make run` needs
# (build toolchain, runtime libraries, DynamoDB Local).
deps:
	@tests/harness/deps.sh test
deps-run:
	@tests/harness/deps.sh run

$(B)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Iengine -c $< -o $@

$(B)/ut/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DDDBK_UNITTEST -Iengine -c $< -o $@

$(B)/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -DDDBK_UNITTEST -Iengine -c $< -o $@

$(LIB_A): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Exports the public API (engine/libddbkit.map: ddbk_ and a letter) and
# nothing else, which the rule checks along with the SONAME; the SONAME
# symlink beside it lets a program linked against build/ run from there.
$(LIB_SO): $(ENGINE_OBJ) engine/libddbkit.map
	$(CC) -shared -Wl,-soname,$(LIB_SONAME) -Wl,--version-script=engine/libddbkit.map \
	  -o $@ $(ENGINE_OBJ) $(ENGINE_LIBS) $(LDFLAGS)
	@readelf -d $@ | grep -q 'SONAME.*\[$(LIB_SONAME)\]' \
	  || { echo "$@: SONAME is not $(LIB_SONAME)" >&2; rm -f $@; exit 1; }
	@if nm -D --defined-only $@ | awk '{ print $$3 }' | grep -v '^ddbk_[a-z]' >&2; then \
	  echo "$@ exports the names above, which are not ddbk_ API" >&2; rm -f $@; exit 1; fi
	@ln -sf libddbkit.so $(B)/$(LIB_SONAME)

# ddbkit.core: the engine linked in statically, built once per Lua flavour.
# A Lua C module exports its luaopen_* and nothing else (`nm -D
# --defined-only` shows one symbol): the binding is compiled with hidden
# visibility (luaopen_ddbkit_core is marked default), and the engine comes
# from the archive with its symbols made local (--exclude-libs), so that two
# modules in one process never bind to each other's ddbk_* functions.
HIDE := -fvisibility=hidden
HIDE_LIBS := -Wl,--exclude-libs,ALL

$(B)/core54/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(HIDE) $(LUA54_INC) -Iengine -Ibindings/core -c $< -o $@

$(B)/corejit/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(HIDE) $(LUAJIT_INC) -Iengine -Ibindings/core -c $< -o $@

$(CORE54): $(CORE_SRC:%.c=$(B)/core54/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -shared $(HIDE_LIBS) -o $@ $^ $(ENGINE_LIBS) $(LDFLAGS)

$(COREJIT): $(CORE_SRC:%.c=$(B)/corejit/%.o) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -shared $(HIDE_LIBS) -o $@ $^ $(ENGINE_LIBS) $(LDFLAGS)

# The Lua module once more under ASan/UBSan, for a sanitized run of the
# busted suite (the interpreter preloads the sanitizer runtimes).
COREASAN := $(B)/lua54-asan/ddbkit/core.so
SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
$(B)/coreasan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -fPIC $(SAN) $(HIDE) $(LUA54_INC) -Iengine -Ibindings/core -c $< -o $@

$(COREASAN): $(CORE_SRC:%.c=$(B)/coreasan/%.o) $(ENGINE_SRC:%.c=$(B)/coreasan/%.o)
	@mkdir -p $(dir $@)
	$(CC) -shared $(SAN) -o $@ $^ $(ENGINE_LIBS) $(LDFLAGS)

# The `ddbkit` command: Lua 5.4 embedded, with ddbkit.core's objects and the
# engine linked in. Where the installed Lua files and harness live is
# compiled in from PREFIX; the stamp changes only when PREFIX does, so that
# `make install PREFIX=...` rebuilds main.o and nothing else.
CLI_DEFS = -DDDBKIT_SHARE_DIR='"$(PREFIX)/share/ddbkit"' -DDDBKIT_LUA_DIR='"$(LUA54_LMOD)"'
CLI_STAMP := $(B)/cli/prefix.stamp

$(CLI_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(PREFIX)' | cmp -s - $@ || echo '$(PREFIX)' > $@

$(B)/cli/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA54_INC) $(CLI_DEFS) -Iengine -Ibindings/cli -c $< -o $@

$(B)/cli/bindings/cli/main.o: $(CLI_STAMP)

$(CLI): $(CLI_SRC:%.c=$(B)/cli/%.o) $(CORE_SRC:%.c=$(B)/core54/%.o) $(LIB_A)
	$(CC) -o $@ $^ $(LUA54_LIBS) $(EDIT_LIBS) $(ENGINE_LIBS) $(LDFLAGS)

# The example game-server host (tests/gamehost): Lua 5.4 and its own loop;
# ddbkit.core comes in as the Lua module, through LUA_CPATH.
$(GAMEHOST): tests/gamehost/gamehost.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LUA54_INC) -o $@ $< $(LUA54_LIBS) $(LDFLAGS)

# The command once more under ASan/UBSan, on the sanitized objects above.
CLIASAN := $(B)/ddbkit-asan
$(B)/cliasan/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(SAN) $(LUA54_INC) $(CLI_DEFS) -Iengine -Ibindings/cli -c $< -o $@

$(B)/cliasan/bindings/cli/main.o: $(CLI_STAMP)

$(CLIASAN): $(CLI_SRC:%.c=$(B)/cliasan/%.o) $(CORE_SRC:%.c=$(B)/coreasan/%.o) $(ENGINE_SRC:%.c=$(B)/coreasan/%.o)
	$(CC) $(SAN) -o $@ $^ $(LUA54_LIBS) $(EDIT_LIBS) $(ENGINE_LIBS) $(LDFLAGS)

$(SHIM): tests/harness/loopback_bind.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) -O2 $(WARN) -shared -fPIC -o $@ $< -ldl

# C unit tests: each tests/c/test_X.c links the engine built with
# -DDDBK_UNITTEST (so `UNITTEST` helpers are reachable) and the test support,
# plain and sanitized.
$(CTSUP_UT) $(CTSUP_ASAN): $(CTSUP_HDR)

$(B)/tests/%: tests/c/%.c $(CTSUP_UT) $(UT_OBJ) $(HEADERS) $(CTSUP_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DDDBK_UNITTEST -Iengine -o $@ $< $(CTSUP_UT) $(UT_OBJ) -lcmocka $(ENGINE_LIBS)

$(B)/tests-asan/%: tests/c/%.c $(CTSUP_ASAN) $(ASAN_OBJ) $(HEADERS) $(CTSUP_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -DDDBK_UNITTEST -Iengine -o $@ $< $(CTSUP_ASAN) $(ASAN_OBJ) -lcmocka $(ENGINE_LIBS)

ctest: $(CTESTS:%=$(B)/tests/%) $(CTESTS:%=$(B)/tests-asan/%) $(COREASAN) $(CLIASAN)

# The builds run on every core (a plain build, two sanitized ones, the fuzz
# targets), unless the caller chose a -j of its own.
JOBS := $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc 2>/dev/null || echo 2))

test: deps
	@$(MAKE) --no-print-directory $(JOBS) all ctest $(FUZZ_TARGETS)
	@tests/run.sh

# clang-tidy's default checks (see .clang-tidy), warnings are errors.
lint:
	@rc=0; for f in $(ENGINE_SRC); do \
	  clang-tidy -quiet $$f -- $(CSTD) -Iengine 2>/dev/null || rc=1; done; \
	for f in $(CORE_SRC); do \
	  clang-tidy -quiet $$f -- $(CSTD) $(LUA54_INC) -Iengine -Ibindings/core 2>/dev/null || rc=1; done; \
	clang-tidy -quiet tests/gamehost/gamehost.c -- $(CSTD) $(LUA54_INC) 2>/dev/null || rc=1; \
	for f in $(CLI_SRC); do \
	  clang-tidy -quiet $$f -- $(CSTD) $(LUA54_INC) $(CLI_DEFS) -Iengine -Ibindings/cli 2>/dev/null || rc=1; done; \
	exit $$rc

run: deps-run
	@$(MAKE) --no-print-directory $(JOBS) all
	@tests/harness/run_demo.sh

bench: deps
	@$(MAKE) --no-print-directory $(JOBS) all
	@tests/bench/run.sh

# Fuzz targets need clang's libFuzzer. `make fuzz` runs each for
# FUZZ_SECONDS (default 120) with its corpus under build/fuzz/corpus (see
# tests/fuzz/run.sh), prints a line per target and fails if any found
# something; `make test` runs each briefly (tests/run.sh).
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 120
fuzz: $(FUZZ_TARGETS)
	@rc=0; for f in $(FUZZ_TARGETS); do tests/fuzz/run.sh $$f $(FUZZ_SECONDS) || rc=1; done; exit $$rc

$(B)/fuzz/fuzz_ini: tests/fuzz/fuzz_ini.c engine/ini.c
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -DDDBK_UNITTEST -Iengine -o $@ $^

# Engine-only targets: the parser under test and what it links, nothing else.
$(B)/fuzz/fuzz_lock_item: tests/fuzz/fuzz_lock_item.c engine/lock_item.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -DDDBK_UNITTEST -Iengine -o $@ tests/fuzz/fuzz_lock_item.c engine/lock_item.c -lyajl

$(B)/fuzz/fuzz_json_string: tests/fuzz/fuzz_json_string.c engine/json.c engine/buf.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -DDDBK_UNITTEST -Iengine -o $@ tests/fuzz/fuzz_json_string.c engine/json.c engine/buf.c -lyajl

$(B)/fuzz/fuzz_error_body: tests/fuzz/fuzz_error_body.c engine/parse.c engine/error.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -DDDBK_UNITTEST -Iengine -o $@ tests/fuzz/fuzz_error_body.c engine/parse.c engine/error.c -lyajl

# The parsers of what credential services answer (engine/cred_parse.c):
# STS's XML (expat) and the JSON of IMDS, the container endpoint,
# credential_process, the SSO portal and token cache (yajl), ISO 8601.
CRED_PARSE_FUZZ_SRC := engine/cred_parse.c engine/buf.c engine/error.c
$(B)/fuzz/fuzz_sts $(B)/fuzz/fuzz_cred_json: $(B)/fuzz/%: tests/fuzz/%.c $(CRED_PARSE_FUZZ_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -DDDBK_UNITTEST -Iengine -o $@ tests/fuzz/$*.c $(CRED_PARSE_FUZZ_SRC) -lyajl -lexpat -lcrypto

# Engine targets: the engine's sources themselves under the fuzzer, built
# with -DDDBK_UNITTEST for the helpers they reach (set_endpoint, on_header).
FUZZ_ENGINE_CC = clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined -DDDBK_UNITTEST -Iengine
$(B)/fuzz/fuzz_credentials: tests/fuzz/fuzz_credentials.c engine/credentials.c engine/ini.c \
    engine/error.c engine/cred_parse.c engine/cred_fetch.c engine/cred_process.c \
    engine/sigv4.c engine/buf.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_ENGINE_CC) -o $@ $(filter %.c,$^) -lyajl -lexpat -lcrypto

$(B)/fuzz/fuzz_endpoint: tests/fuzz/fuzz_endpoint.c $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_ENGINE_CC) -o $@ $(filter %.c,$^) $(ENGINE_LIBS)

$(B)/fuzz/fuzz_request_id: tests/fuzz/fuzz_request_id.c $(ENGINE_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_ENGINE_CC) -o $@ $(filter %.c,$^) $(ENGINE_LIBS)

MARSHAL_SRC := bindings/core/values.c bindings/core/numtext.c bindings/core/base64.c \
               bindings/core/fields.c bindings/core/path.c bindings/core/encode.c \
               bindings/core/decode.c
$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(MARSHAL_SRC) engine/buf.c
	@mkdir -p $(dir $@)
	clang $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined $(LUA54_INC) -Iengine -Ibindings/core \
	  -o $@ $^ -llua5.4 -lyajl -lcrypto -lm

# Targets that embed Lua 5.4 with ddbkit.core and the engine built in
# (objects under build/fuzzobj, instrumented for libFuzzer); the Lua
# library is read from this tree (FUZZ_ROOT):
#   fuzz_response    hostile full responses through the client into every store
#   fuzz_cli_config  the `ddbkit` command's config file parser
#   fuzz_idem_key    the idempotency key and request key of the web helper
#   fuzz_jsjson      core.js_parse (JSON.parse) against jsjson.lua's own decoder
#   fuzz_rln_buckets the native rate-limit item's lease buckets (ratelimit/native.lua decode)
#   fuzz_repl_locals the REPL's rewrite of top-level locals (repl/locals.lua)
#   fuzz_rl_shared   the native rate limit's lease state in a shared dict (ratelimit/shared.lua)
FUZZ_LUA    := fuzz_response fuzz_cli_config fuzz_idem_key fuzz_jsjson fuzz_rln_buckets fuzz_repl_locals \
               fuzz_rl_shared
FUZZ_CFLAGS := $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined $(LUA54_INC) -Iengine -Ibindings/core
FUZZ_OBJ    := $(patsubst %.c,$(B)/fuzzobj/%.o,$(CORE_SRC) $(ENGINE_SRC))

$(B)/fuzzobj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LUA:%=$(B)/fuzz/%): $(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/lua_host.h tests/fuzz/lua_cov.h $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -DFUZZ_ROOT='"$(CURDIR)"' -o $@ $< $(FUZZ_OBJ) -llua5.4 $(ENGINE_LIBS)

LUA54_CMOD  := $(PREFIX)/lib/lua/5.4
LUA54_LMOD  := $(PREFIX)/share/lua/5.4
LUAJIT_CMOD := $(PREFIX)/lib/lua/5.1
LUAJIT_LMOD := $(PREFIX)/share/lua/5.1
HARNESS_DIR := $(PREFIX)/share/ddbkit/harness

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libddbkit.so.$(DDBK_VER)
	ln -sf libddbkit.so.$(DDBK_VER) $(DESTDIR)$(PREFIX)/lib/$(LIB_SONAME)
	ln -sf $(LIB_SONAME) $(DESTDIR)$(PREFIX)/lib/libddbkit.so
	install -m 644 engine/ddbkit.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(DDBK_VER)|' \
	  ddbkit.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ddbkit.pc
	install -d $(DESTDIR)$(LUA54_CMOD)/ddbkit $(DESTDIR)$(LUAJIT_CMOD)/ddbkit
	install -m 755 $(CORE54) $(DESTDIR)$(LUA54_CMOD)/ddbkit/core.so
	install -m 755 $(COREJIT) $(DESTDIR)$(LUAJIT_CMOD)/ddbkit/core.so
	for d in $(LUA54_LMOD) $(LUAJIT_LMOD); do $(call install_lua,$(DESTDIR)$$d); done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(HARNESS_DIR)
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/ddbkit
	install -m 755 tests/harness/ddb_local.sh tests/harness/deps.sh $(DESTDIR)$(HARNESS_DIR)/
	install -m 644 tests/harness/daemon.sh tests/harness/proc.sh $(DESTDIR)$(HARNESS_DIR)/
	install -m 755 $(SHIM) $(DESTDIR)$(HARNESS_DIR)/
	install -m 644 tests/harness/package.json tests/harness/package-lock.json $(DESTDIR)$(HARNESS_DIR)/
	@$(call ldconfig_or_say,$(PREFIX)/lib)

# The Lua modules (ddbkit.*, and resty.ddbkit for those who look there) and
# the shipped scripts into one Lua module directory: the scripts go to
# ddbkit/scripts/, where ddbkit/store.lua looks for them once installed.
install_lua = (cd lua && find ddbkit resty -name '*.lua' -exec install -D -m 644 {} $(1)/{} \;) && \
  (cd scripts && find policies strategies examples -name '*.lua' \
    -exec install -D -m 644 {} $(1)/ddbkit/scripts/{} \;)

# The dynamic linker finds libddbkit.so.N by itself only in the directories
# of its cache (ldconfig -v lists them). There, as root and not staging into
# a DESTDIR, refresh the cache; anywhere else say how a program will find it.
ldconfig_or_say = \
  if [ -z "$(DESTDIR)" ] && ldconfig -v -N -X 2>/dev/null | sed -n 's/^\(\/[^:]*\):.*/\1/p' | grep -qx '$(1)'; then \
    if [ "$$(id -u)" = 0 ]; then ldconfig; \
    else echo "ddbkit: installed libddbkit into $(1); run ldconfig as root so programs find it"; fi; \
  elif [ -z "$(DESTDIR)" ]; then \
    echo "ddbkit: $(1) is not a directory the dynamic linker searches: run programs"; \
    echo "ddbkit: with LD_LIBRARY_PATH=$(1), or add it to /etc/ld.so.conf.d/ and run ldconfig"; \
  fi

.PHONY: uninstall rock rock-install
# Removes what install put under PREFIX (the same variables).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libddbkit.a $(DESTDIR)$(PREFIX)/lib/libddbkit.so \
	  $(DESTDIR)$(PREFIX)/lib/$(LIB_SONAME) $(DESTDIR)$(PREFIX)/lib/libddbkit.so.$(DDBK_VER) \
	  $(DESTDIR)$(PREFIX)/include/ddbkit.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/ddbkit.pc \
	  $(DESTDIR)$(PREFIX)/bin/ddbkit
	for d in $(LUA54_CMOD) $(LUAJIT_CMOD) $(LUA54_LMOD) $(LUAJIT_LMOD); do \
	  rm -rf $(DESTDIR)$$d/ddbkit; rm -f $(DESTDIR)$$d/resty/ddbkit.lua; done
	rm -rf $(DESTDIR)$(PREFIX)/share/ddbkit

# `luarocks make` (ddbkit-VERSION-1.rockspec) drives these two with its own
# LUA_INCDIR, LIBDIR and LUADIR. `rock` builds the one ddbkit.core the Lua
# behind LUA_INCDIR loads, in build/ like `make all`, so objects already
# built are reused: Lua 5.4's, or for a 5.1 lua.h LuaJIT's (built against
# LuaJIT's headers, as OpenResty runs it).
ROCK_LUA_NUM = $(shell sed -n 's/^\#define LUA_VERSION_NUM[[:space:]]*\([0-9]*\).*/\1/p' '$(LUA_INCDIR)/lua.h')
ROCK_CORE = $(if $(filter 504,$(ROCK_LUA_NUM)),$(CORE54),$(if $(filter 501,$(ROCK_LUA_NUM)),$(COREJIT)))

rock:
	@test -n "$(ROCK_CORE)" || { echo "ddbkit: no Lua 5.4 or 5.1 lua.h in LUA_INCDIR='$(LUA_INCDIR)'" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(ROCK_CORE)

rock-install: rock
	install -D -m 755 $(ROCK_CORE) $(LIBDIR)/ddbkit/core.so
	$(call install_lua,$(LUADIR))

clean:
	rm -rf $(B)
