-- `make run` (tests/harness/run_demo.sh, which it runs after `make all`) and
-- what the installer (tests/harness/deps.sh) asks apt-get for, per use.
--
-- run_demo.sh is driven as a person drives it: in a terminal (a private
-- tmux server) whose foreground process group gets the Ctrl-C. Each case
-- picks its own free port (DDB_LOCAL_PORT); the only DynamoDB Local this
-- spec stops is the one it started itself, by the harness's pid file.
-- deps.sh runs with fakes of dpkg-query, apt-get, id, sudo, java, node and
-- npm first on PATH: they record what they were asked, nothing is installed.
-- Waits are bounded polls on the screen or on the port.
local H = require "test_helper"
local read_file, write_file = H.read_file, H.write_file
local q = H.shell_quote

-- Runs a shell command; returns its stdout and its exit status (read from
-- the output: LuaJIT's close of a pipe does not give the status).
local function sh(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD " .. cmd .. "; echo \"<rc=$?>\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)<rc=(%d+)>\n?$")
  return body or out, tonumber(code)
end

local function rm_rf(dir)
  if dir and dir:match("^/.*/tmp%.[%w]+$") then sh("rm -rf " .. q(dir)) end
end


local ROOT = (sh("sh -c " .. q("cd " .. q(H.spec_dir() .. "/../..") .. " && pwd -P")):gsub("\n$", ""))
local HARNESS = ROOT .. "/tests/harness"
local PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"

local function free_port()
  return (sh(q(HARNESS .. "/free_port.sh")):gsub("%s+$", ""))
end

-- Does a DynamoDB answer on the port now?
local function answers(port)
  local _, code = sh(q(HARNESS .. "/ddb_local.sh") .. " probe --port " .. port)
  return code == 0
end

-- One DynamoDB call with curl (DynamoDB Local takes any signature).
local function call(port, target, body)
  return (sh(string.format(
    "curl -s --max-time 10 -X POST http://127.0.0.1:%s/ -H %s -H %s -H %s --data %s",
    port, q("X-Amz-Target: DynamoDB_20120810." .. target),
    q("Content-Type: application/x-amz-json-1.0"),
    q("Authorization: AWS4-HMAC-SHA256 Credential=ddbkitlocal/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"),
    q(body))))
end

-- run_demo.sh in a terminal ------------------------------------------------------

local function lines_of(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

local function count(screen, needle)
  local n = 0
  for _, line in ipairs(lines_of(screen)) do
    if line:sub(1, #needle) == needle then n = n + 1 end
  end
  return n
end

-- A terminal running run_demo.sh: cli_helper's REPL terminal (private
-- tmux server, screen, wait, type, key, close) with its own launch line.
local Term = setmetatable({}, { __index = require("cli_helper").Repl })
Term.__index = Term

-- cmd: what to run (default run_demo.sh).
local function new_term(port, cmd)
  local dir = H.mktemp_dir()
  return setmetatable({ dir = dir, sock = dir .. "/tmux.sock", conf = dir .. "/tmux.conf",
                        name = H.unique("make-run"), port = port,
                        cmd = cmd or q(HARNESS .. "/run_demo.sh") }, Term)
end

function Term:start()
  local d = self.dir
  write_file(self.conf, "set -g remain-on-exit on\nset -g history-limit 10000\n")
  -- set -m: run_demo.sh runs as the terminal's foreground process group, as
  -- `make run` typed at a shell does, so a Ctrl-C reaches all of it.
  write_file(d .. "/launch", table.concat({
    "#!/bin/bash",
    "set -m",
    string.format("env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH PATH=%s HOME=%s XDG_CONFIG_HOME=%s "
                  .. "XDG_STATE_HOME=%s LC_ALL=C.UTF-8 DDB_LOCAL_PORT=%s %s",
                  q(PATH), q(d), q(d .. "/config"), q(d .. "/state"), self.port, self.cmd),
    'echo "EXIT:$?"',
    "",
  }, "\n"))
  sh("chmod +x " .. q(d .. "/launch"))
  local out = self:tmux(string.format("new-session -d -s %s -x 150 -y 50 %s",
                                      q(self.name), q(d .. "/launch")))
  assert(out == "", "tmux new-session: " .. out)
  self.started = true
end

function Term:prompts() return count(self:screen(), "ddbkit>") end

-- Ctrl-C at the prompt, then a call, then Ctrl-D: what every case checks.
local function ctrl_c_call_ctrl_d(t)
  t:wait(function(s) return count(s, "ddbkit>") >= 1 end, "the REPL's first prompt", 120)
  local n = t:prompts()
  t:key("C-c")
  t:wait(function(s) return count(s, "ddbkit>") > n end, "a fresh prompt after Ctrl-C")
  assert(answers(t.port), "DynamoDB Local on port " .. t.port .. " died of the Ctrl-C")
  t:type("t = client:list_tables{} print('TABLES', #t.TableNames)")
  t:key("Enter")
  local screen = t:wait(function(s) return s:find("TABLES%s+%d") or s:find("Error") end,
                        "the answer to list_tables")
  assert(screen:find("TABLES%s+%d"), "the call after Ctrl-C failed:\n" .. screen)
  t:key("C-d")
  screen = t:wait(function(s) return s:find("EXIT:%d+") end, "run_demo.sh to end")
  assert(screen:find("EXIT:0", 1, true), "run_demo.sh should exit 0 after Ctrl-D:\n" .. screen)
end

describe("make run (run_demo.sh)", function()
  -- Through make itself: make also gets the terminal's Ctrl-C, and would
  -- end with 130 after the REPL unless the REPL has the terminal to itself.
  it("survives Ctrl-C at the prompt and stops the DynamoDB Local it started when left with Ctrl-D", function()
    local port = free_port()
    assert(not answers(port), "port " .. port .. " should be free")
    local t = new_term(port, "make --no-print-directory -s -C " .. q(ROOT) .. " run")
    local ok, err = pcall(function()
      t:start()
      ctrl_c_call_ctrl_d(t)
      assert(not answers(port), "the DynamoDB Local run_demo.sh started is still running")
    end)
    t:close()
    -- Only if the test failed half-way: the server run_demo.sh started.
    if answers(port) then sh(q(HARNESS .. "/ddb_local.sh") .. " stop --port " .. port .. " 2>&1") end
    assert(ok, err)
  end)

  it("reuses a DynamoDB Local already on the port and leaves it running, tables intact", function()
    local port = free_port()
    local _, code = sh(q(HARNESS .. "/ddb_local.sh") .. " start --port " .. port .. " 2>&1")
    assert.equal(0, code)
    local t = new_term(port)
    local ok, err = pcall(function()
      local made = call(port, "CreateTable", [[{"TableName":"users-own","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}]])
      assert(made:find("users-own", 1, true), "CreateTable: " .. made)
      t:start()
      ctrl_c_call_ctrl_d(t)
      assert(answers(port), "run_demo.sh stopped a DynamoDB Local it did not start")
      local listed = call(port, "ListTables", "{}")
      assert(listed:find('"users-own"', 1, true), "the user's table is gone: " .. listed)
    end)
    t:close()
    sh(q(HARNESS .. "/ddb_local.sh") .. " stop --port " .. port .. " 2>&1")
    assert(ok, err)
  end)
end)

-- deps.sh with fakes ---------------------------------------------------------------

-- A directory of fakes: dpkg-query says installed only what the fake
-- apt-get "installed" (a file), apt-get records its arguments, id -u says
-- $FAKE_UID, sudo refuses, java/node/npm work unless $FAKE_NO_JAVA.
local function fakes()
  local d = H.mktemp_dir()
  local function script(name, body)
    write_file(d .. "/" .. name, "#!/bin/bash\n" .. body .. "\n")
    sh("chmod +x " .. q(d .. "/" .. name))
  end
  script("dpkg-query", 'pkg="${@: -1}"; grep -qxF "$pkg" ' .. q(d .. "/installed")
         .. ' 2>/dev/null && printf "install ok installed"; exit 0')
  script("apt-get", 'echo "$*" >>' .. q(d .. "/apt.log") .. '\n'
         .. 'if [ "$1" = install ]; then for a in "$@"; do case "$a" in -*|install) ;; *) echo "$a" >>'
         .. q(d .. "/installed") .. ';; esac; done; fi')
  script("id", 'echo "${FAKE_UID:-0}"')
  script("sudo", "exit 1")
  script("java", '[ -z "${FAKE_NO_JAVA:-}" ]')
  script("node", "echo v18")
  script("npm", "echo 9")
  return d
end

-- Runs deps.sh MODE with the fakes; returns the set of packages apt-get
-- was asked to install, the exit status, stderr, and the apt-get log.
local function deps(mode, env)
  local d = fakes()
  local out, code = sh(string.format(
    "env PATH=%s DDBKIT_POLICY_RC=%s %s %s %s 2>&1",
    q(d .. ":" .. PATH), q(d .. "/policy-rc.d"), env or "", q(HARNESS .. "/deps.sh"), mode))
  local log = read_file(d .. "/apt.log") or ""
  local set = {}
  for line in log:gmatch("[^\n]+") do
    if line:match("^install ") then
      for w in line:gmatch("%S+") do
        if not w:match("^%-") and w ~= "install" then set[w] = true end
      end
    end
  end
  rm_rf(d)
  return set, code, out, log
end

local TEST_ONLY = { "clang", "clang-tidy", "nginx", "libnginx-mod-http-lua", "tmux",
                    "lua-busted", "luarocks", "libcmocka-dev" }
local RUN = { "build-essential", "pkg-config", "liblua5.4-dev", "lua5.4", "lua-cjson",
              "libluajit2-5.1-dev", "libcurl4-openssl-dev", "libssl-dev", "libyajl-dev",
              "libexpat1-dev", "libedit-dev", "curl" }

describe("deps.sh", function()
  it("local: only what DynamoDB Local needs (curl; Java when java does not run)", function()
    local set, code, out = deps("local")
    assert.equal(0, code, out)
    assert.same({ curl = true }, set)
    set = deps("local", "FAKE_NO_JAVA=1")
    assert.same({ curl = true, ["default-jre-headless"] = true }, set)
  end)

  it("run: the build toolchain and runtime libraries, no test toolchain", function()
    local set, code, out = deps("run")
    assert.equal(0, code, out)
    for _, p in ipairs(RUN) do assert(set[p], "run should install " .. p) end
    for _, p in ipairs(TEST_ONLY) do assert(not set[p], "run should not install " .. p) end
  end)

  it("test (and no argument): everything make test needs", function()
    for _, mode in ipairs({ "test", "" }) do
      local set, code, out = deps(mode)
      assert.equal(0, code, out)
      for _, p in ipairs(RUN) do assert(set[p], "test should install " .. p) end
      for _, p in ipairs(TEST_ONLY) do assert(set[p], "test should install " .. p) end
    end
  end)

  it("not root: names the packages and the apt-get command, installs nothing", function()
    local set, code, out, log = deps("local", "FAKE_UID=1000 FAKE_NO_JAVA=1")
    assert.equal(1, code)
    assert.same({}, set)
    assert.equal("", log)
    assert(out:find("sudo apt-get install curl default-jre-headless", 1, true), out)
    assert(not out:find("tests/harness", 1, true), "names a file of the source tree: " .. out)
  end)
end)

describe("the Makefile", function()
  it("make run asks deps.sh for run, make test for test", function()
    local mk = read_file(ROOT .. "/Makefile")
    assert(mk:find("\nrun: deps%-run\n"), "run should depend on deps-run")
    assert(mk:find("\ndeps%-run:\n\t@tests/harness/deps.sh run\n"))
    assert(mk:find("\ntest: deps\n"), "test should depend on deps")
    assert(mk:find("\ndeps:\n\t@tests/harness/deps.sh test\n"))
  end)
end)
