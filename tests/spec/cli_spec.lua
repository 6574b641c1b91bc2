-- The `ddbkit` command (build/ddbkit), used as a person uses it: the REPL
-- through a pseudo-terminal (tmux: send-keys, capture-pane), the
-- subcommands through a shell (exit status, stdout and stderr apart).
--
-- The binary embeds its own Lua 5.4, so this spec does not depend on the
-- interpreter busted runs under: every command runs with a clean
-- environment (env -i: no LD_PRELOAD from the sanitized run, no LUA_PATH,
-- no AWS_* or DDBKIT_* of the caller) and a private HOME in a temporary
-- directory. Waits are bounded polls, never fixed sleeps.
local C = require "cli_helper"
local H, q, sh, rm_rf, ROOT, BIN, HARNESS = C.H, C.q, C.sh, C.rm_rf, C.ROOT, C.BIN, C.HARNESS
local read_file, write_file = H.read_file, H.write_file
local lines_of, contains, lacks, words, clean_env = C.lines_of, C.contains, C.lacks, C.words,
                                                    C.clean_env
local cli, show, exits, one_line_error, free_port = C.cli, C.show, C.exits, C.one_line_error,
                                                    C.free_port
local PROMPT, CONTINUE, count_prompts, new_repl, last_line = C.PROMPT, C.CONTINUE,
                                                             C.count_prompts, C.new_repl, C.last_line

-- The specs --------------------------------------------------------------------

describe("the ddbkit command", function()
  local home

  setup(function() home = H.mktemp_dir() end)
  teardown(function() rm_rf(home) end)

  it("is built and executable", function()
    local r = sh("test -x " .. q(BIN) .. " && echo yes")
    assert.equals("yes\n", r, BIN .. " is missing: run make")
  end)

  describe("help and version", function()
    it("--version prints ddbkit's and Lua's versions", function()
      local r = cli(home, "--version")
      exits(r, 0)
      assert(r.out:match("^ddbkit %d+%.%d+%.%d+ %(Lua 5%.4%)\n$"), "version line" .. show(r))
      assert.equals("", r.err)
    end)

    it("--help names every subcommand and the exit statuses", function()
      for _, flag in ipairs({ "--help", "-h" }) do
        local r = cli(home, flag)
        exits(r, 0)
        assert(r.out:match("^usage: ddbkit "), "usage line" .. show(r))
        for _, cmd in ipairs({ "repl", "run SCRIPT", "table ACTION", "local ACTION", "config" }) do
          contains(r.out, "\n  " .. cmd .. " ")
        end
        contains(r.out, "Exit status: 0 success, 1 failure, 2 usage error")
        assert.equals("", r.err)
      end
    end)

    it("each subcommand's --help shows its usage and its actions", function()
      local expect = {
        repl = { "usage: ddbkit [repl]", ":stats", "Ctrl-D" },
        run = { "usage: ddbkit run ", "SCRIPT [ARGS...]" },
        table = { "usage: ddbkit table ", "create", "describe", "delete", "ttl", "--schema KIND" },
        ["local"] = { "usage: ddbkit local ", "start", "stop", "status", "--port P" },
        config = { "usage: ddbkit config ", "secrets masked" },
      }
      for cmd, needles in pairs(expect) do
        local r = cli(home, words(cmd, "--help"))
        exits(r, 0)
        assert(r.out:sub(1, #needles[1]) == needles[1], cmd .. " --help" .. show(r))
        for _, n in ipairs(needles) do contains(r.out, n, cmd .. " --help") end
        contains(r.out, "--endpoint", cmd .. " --help")
        assert.equals("", r.err)
      end
    end)
  end)

  describe("usage errors", function()
    local cases = {
      { "--bogus", "unknown option --bogus; see 'ddbkit --help'" },
      { "table describe --bogus", "unknown option --bogus; see 'ddbkit table --help'" },
      { "table", "'ddbkit table' needs an action: create, describe, delete, ttl" },
      { "table frobnicate", "unknown action 'frobnicate'" },
      { "table describe --schema nope", "--schema must be store or idempotency" },
      { "run", "'ddbkit run' needs a SCRIPT; see 'ddbkit run --help'" },
      { "local", "'ddbkit local' needs an action" },
      { "local status --port 99999", "--port must be a port number" },
      { "config --port 8000", "option --port does not apply to 'ddbkit config'" },
      { "config extra", "unexpected argument 'extra'" },
      { "frobnicate", "unknown command 'frobnicate'" },
      { "--endpoint", "option --endpoint needs a value" },
      { "-x", "unknown option -x" },
    }
    for _, c in ipairs(cases) do
      it("'ddbkit " .. c[1] .. "' exits 2 with one line", function()
        one_line_error(cli(home, c[1]), 2, c[2])
      end)
    end
  end)

  describe("table", function()
    local c
    local created = {}

    setup(function() c = H.client() end)
    teardown(function()
      for name in pairs(created) do c:delete_table{ TableName = name } end
    end)

    local function ddb(args) return cli(home, args .. " --endpoint " .. q(H.endpoint)) end

    local function lifecycle(kind, keys, ttl_attr)
      local name = H.unique("cli-" .. kind)
      created[name] = true
      local r = ddb(words("table", "create", "--name", name, "--schema", kind))
      exits(r, 0)
      assert.equals("created table " .. name .. " (ACTIVE); TTL enabled on " .. ttl_attr .. "\n", r.out)
      -- It really is there, as DynamoDB sees it.
      local d = assert(c:describe_table{ TableName = name })
      assert.equals("ACTIVE", d.Table.TableStatus)

      r = ddb(words("table", "describe", "--name", name, "--schema", kind))
      exits(r, 0)
      assert(r.out:match("\nstatus +ACTIVE\n"), "status row" .. show(r))
      assert(r.out:match("\nkeys +" .. keys:gsub("[%(%)]", "%%%0") .. "\n"), "keys row" .. show(r))
      assert(r.out:match("\nttl +ENABLED on " .. ttl_attr .. "\n"), "ttl row" .. show(r))
      assert(r.out:match("^table +" .. name:gsub("%-", "%%-") .. "\n"), "table row" .. show(r))

      r = ddb(words("table", "ttl", "--name", name, "--schema", kind))
      exits(r, 0)
      assert.equals(name .. ": TTL ENABLED on " .. ttl_attr .. " (unchanged)\n", r.out)

      -- Creating it again is a failure of the world: one line, status 1.
      one_line_error(ddb(words("table", "create", "--name", name, "--schema", kind)), 1,
                     "ResourceInUseException: table " .. name .. " already exists")

      r = ddb(words("table", "delete", "--yes", "--name", name))
      exits(r, 0)
      assert.equals("deleted table " .. name .. "\n", r.out)
      local gone, err = c:describe_table{ TableName = name }
      assert.is_nil(gone)
      assert.equals("ResourceNotFoundException", err.code)
      created[name] = nil
      return d
    end

    it("creates, describes, checks TTL of and deletes a store table", function()
      local d = lifecycle("store", "pk (S) HASH, sk (S) RANGE", "ttl")
      assert.equals("gsi1", d.Table.GlobalSecondaryIndexes[1].IndexName)
    end)

    it("does the same for an idempotency table (TTL on expiresAt)", function()
      lifecycle("idempotency", "cacheKey (S) HASH", "expiresAt")
    end)

    it("without --name, acts on the configured table (DDBKIT_TABLE)", function()
      local name = H.unique("cli-default")
      created[name] = true
      local env = { env = { DDBKIT_TABLE = name } }
      local r = cli(home, words("--endpoint", H.endpoint, "table", "create"), env)
      exits(r, 0)
      assert.equals("created table " .. name .. " (ACTIVE); TTL enabled on ttl\n", r.out)
      assert(c:describe_table{ TableName = name })
      r = cli(home, words("--endpoint", H.endpoint, "table", "delete", "--yes"), env)
      exits(r, 0)
      assert.equals("deleted table " .. name .. "\n", r.out)
      assert.is_nil((c:describe_table{ TableName = name }))
      created[name] = nil
    end)

    it("a missing table is one line and status 1 for every action", function()
      local name = H.unique("cli-missing")
      for _, action in ipairs({ "describe", "ttl", "delete --yes" }) do
        one_line_error(ddb(words("table", "--name", name) .. " " .. action), 1,
                       "ddbkit: ResourceNotFoundException: table " .. name .. " not found at "
                       .. H.endpoint)
      end
    end)

    it("--debug (or DDBKIT_DEBUG=1) adds the traceback", function()
      local name = H.unique("cli-missing")
      for _, r in ipairs({ ddb(words("--debug", "table", "describe", "--name", name)),
                           cli(home, words("table", "describe", "--name", name, "--endpoint",
                                           H.endpoint), { env = { DDBKIT_DEBUG = "1" } }) }) do
        exits(r, 1)
        assert.equals("", r.out)
        local l = lines_of(r.err)
        assert(l[1]:match("^ddbkit: ResourceNotFoundException: table "), "first line" .. show(r))
        contains(r.err, "\nstack traceback:\n", "stderr")
        assert(#l > 3, "a traceback of several lines" .. show(r))
      end
    end)

    it("an unreachable endpoint is one line and a non-zero status", function()
      for _, action in ipairs({ "describe", "create" }) do
        local r = cli(home, words("--endpoint", "http://127.0.0.1:1", "table", action, "--name", "x"))
        one_line_error(r, 1, "ConnectionError")
        contains(r.err, "127.0.0.1", "stderr")
      end
    end)
  end)

  describe("run", function()
    it("runs a script with the client, the stores, its arguments and the environment", function()
      local c = H.client()
      local name = H.create_table(c, H.unique("cli-run"), { range = false })
      finally(function() c:delete_table{ TableName = name } end)
      local script = home .. "/ok.lua"
      write_file(script, [[
local d = assert(client:describe_table{ TableName = arg[1] })
print("status=" .. d.Table.TableStatus)
local t = assert(client:list_tables{})
local found = false
for _, n in ipairs(t.TableNames) do found = found or n == arg[1] end
print("listed=" .. tostring(found))
print("dots=" .. table.concat({ ... }, ","))
print("arg0=" .. arg[0])
print("env=" .. tostring(os.getenv("CLI_SPEC_VALUE")))
print("globals=" .. type(cache) .. "," .. type(dedupe) .. "," .. type(rate_limit) .. ","
      .. type(adaptive) .. "," .. type(locks) .. "," .. type(idem) .. "," .. type(ddbkit))
]])
      local r = cli(home, words("run", "--endpoint", H.endpoint, script, name, "two words"),
                    { env = { CLI_SPEC_VALUE = "from-the-environment" } })
      exits(r, 0)
      assert.equals(table.concat({
        "status=ACTIVE", "listed=true", "dots=" .. name .. ",two words", "arg0=" .. script,
        "env=from-the-environment", "globals=table,table,table,table,function,table,table", "",
      }, "\n"), r.out)
      assert.equals("", r.err)
    end)

    it("runs a script from standard input with '-'", function()
      local r = cli(home, words("run", "--endpoint", H.endpoint, "-"),
                    { stdin = "print(6 * 7, type(client))\n" })
      exits(r, 0)
      assert.equals("42\ttable\n", r.out)
    end)

    it("a script that raises, with --debug: status 1, message and traceback on stderr", function()
      local script = home .. "/bad.lua"
      write_file(script, "local function inner()\n  error(\"kaboom\")\nend\ninner()\n")
      local r = cli(home, words("run", "--debug", "--endpoint", H.endpoint, script))
      exits(r, 1)
      assert.equals("", r.out)
      local l = lines_of(r.err)
      assert.equals("ddbkit: " .. script .. ":2: kaboom", l[1])
      contains(r.err, "\nstack traceback:\n", "stderr")
      contains(r.err, script .. ":4: in main chunk", "stderr")
      lacks(r.err, "cli.lua", "stderr")   -- ddbkit's own frames are cut
    end)

    it("Ctrl-C (SIGINT) stops a running script: status 130", function()
      local script = home .. "/loop.lua"
      write_file(script, 'io.write("start", "ed\\n") io.stdout:flush() while true do end\n')
      local out, err = home .. "/loop.out", home .. "/loop.err"
      -- In the background, then SIGINT once the script has started (a
      -- bounded poll for its first line).
      local res = sh("timeout -k 5 60 bash -c " .. q(string.format(
        "%s %s run --endpoint %s %s >%s 2>%s & pid=$!; "
        .. "for i in $(seq 400); do grep -q started %s && break; sleep 0.05; done; "
        .. "kill -INT $pid; wait $pid; echo \"EXIT:$?\"",
        clean_env(home), q(BIN), q(H.endpoint), q(script), q(out), q(err), q(out))))
      assert.equals("EXIT:130\n", res, read_file(err))
      assert.equals("started\n", read_file(out))
      local l = lines_of(read_file(err))
      assert.equals("ddbkit: interrupted", l[1])
    end)

    it("a script that does not exist is one line and status 1", function()
      one_line_error(cli(home, words("run", "--endpoint", H.endpoint, home .. "/nope.lua")), 1,
                     "nope.lua")
    end)

    it("against an unreachable endpoint the script sees the error value", function()
      local script = home .. "/unreachable.lua"
      write_file(script, "local r, err = client:list_tables{}\nprint(r, err.code)\n")
      local r = cli(home, words("run", "--endpoint", "http://127.0.0.1:1", script))
      exits(r, 0)
      assert.equals("nil\tConnectionError\n", r.out)
    end)
  end)

  describe("config", function()
    -- { key = { value, source } } from the "key  value  (source)" lines.
    local function config_rows(r)
      local rows = {}
      for _, line in ipairs(lines_of(r.out)) do
        local k, rest = line:match("^(%S+)%s+(.-)%s*$")
        if k then
          local v, src = rest:match("^(.-)%s+%((.*)%)$")
          rows[k] = { v or rest, src }
        end
      end
      return rows
    end

    local function row(r, key, value, source)
      local x = config_rows(r)[key]
      assert(x, "no row " .. key .. show(r))
      assert(x[1] == value and x[2] == source, string.format("row %s should be %q (%s)", key,
             value, tostring(source)) .. show(r))
    end

    it("shows each value and where it came from: flag over environment over file", function()
      local dir = H.mktemp_dir()
      finally(function() rm_rf(dir) end)
      sh("mkdir -p " .. q(dir .. "/config/ddbkit"))
      local file = dir .. "/config/ddbkit/config"
      write_file(file, "# a comment\ntable = from-the-file\nregion = ap-south-1\n")
      local r = cli(dir, words("--region", "eu-west-1", "--endpoint", H.endpoint, "config"),
                    { env = { DDBKIT_REGION = "sa-east-1" } })
      exits(r, 0)
      row(r, "region", "eu-west-1", "flag --region")
      row(r, "endpoint", H.endpoint, "flag --endpoint")
      row(r, "table", "from-the-file", "file " .. file .. ":2")
      row(r, "config_file", file, "read")
      row(r, "history_file", dir .. "/state/ddbkit/history")

      r = cli(dir, "config", { env = { DDBKIT_REGION = "sa-east-1", AWS_REGION = "us-west-2" } })
      exits(r, 0)
      row(r, "region", "sa-east-1", "env DDBKIT_REGION")

      r = cli(dir, "config")
      exits(r, 0)
      row(r, "region", "ap-south-1", "file " .. file .. ":3")
    end)

    it("masks the secret access key", function()
      local r = cli(home, words("--endpoint", H.endpoint, "config"), { env = {
        AWS_ACCESS_KEY_ID = "AKIDCLISPECEXAMPLE42", AWS_SECRET_ACCESS_KEY = "supersecretvalue1234",
        AWS_SESSION_TOKEN = "sessiontokenvalue5678" } })
      exits(r, 0)
      lacks(r.out .. r.err, "supersecret")
      lacks(r.out .. r.err, "supersecretvalue1234")
      lacks(r.out .. r.err, "sessiontokenvalue")
      lacks(r.out .. r.err, "AKIDCLISPEC")
      row(r, "secret_access_key", "****1234", "env AWS_SECRET_ACCESS_KEY")
      row(r, "session_token", "(set)", "env AWS_SESSION_TOKEN")
    end)

    it("a broken config file is one line and status 1", function()
      local file = home .. "/broken.conf"
      write_file(file, "tabel = typo\n")
      one_line_error(cli(home, "config", { env = { DDBKIT_CONFIG = file } }), 1,
                     "ConfigError: " .. file .. ":1: unknown key 'tabel'")
      one_line_error(cli(home, "config", { env = { DDBKIT_CONFIG = home .. "/none.conf" } }), 1,
                     "ConfigError: cannot read DDBKIT_CONFIG")
    end)
  end)

  describe("local", function()
    it("status of a port where none runs: stopped, status 1", function()
      local r = cli(home, words("local", "status", "--port", tostring(free_port())))
      exits(r, 1)
      assert.equals("stopped\n", r.out)
    end)

    it("starts, reports and stops a DynamoDB Local", function()
      local port, r
      local passed = false
      finally(function()
        if not port then return end
        sh(q(HARNESS) .. " stop --port " .. port .. " >/dev/null 2>&1")
        -- The harness keeps the log of each port; keep it only to debug a failure.
        if passed then os.remove(ROOT .. "/build/ddb-local/" .. port .. ".log") end
      end)
      -- Another program may take the port between our check and the server's
      -- bind; only that failure is worth a second port, and only twice.
      for _ = 1, 3 do
        port = tostring(free_port())
        r = cli(home, words("local", "start", "--port", port), { timeout = 150 })
        if not (r.status ~= 0 and r.err:find("Failed to bind", 1, true)) then break end
        os.remove(ROOT .. "/build/ddb-local/" .. port .. ".log")
      end
      local endpoint = "http://127.0.0.1:" .. port
      exits(r, 0)
      assert.equals(endpoint .. "\n", r.out)
      contains(r.err, "try it: ddbkit --endpoint " .. endpoint, "stderr")

      r = cli(home, words("local", "status", "--port", port))
      exits(r, 0)
      assert.equals("running\n", r.out)
      -- A DynamoDB answers there.
      one_line_error(cli(home, words("--endpoint", endpoint, "table", "describe", "--name", "nope")),
                     1, "ResourceNotFoundException: table nope not found at " .. endpoint)

      r = cli(home, words("local", "stop", "--port", port), { timeout = 60 })
      exits(r, 0)
      r = cli(home, words("local", "status", "--port", port))
      exits(r, 1)
      assert.equals("stopped\n", r.out)
      passed = true
    end)
  end)

  describe("repl, not in a terminal", function()
    it("reads input from a pipe, prints each value, no banner; exit 1 after an error", function()
      local r = cli(home, words("--endpoint", H.endpoint),
                    { stdin = "1 + 2\nfunction g(x)\n  return x + 1\nend\ng(1)\nerror('oops')\n40 + 2\n" })
      exits(r, 1)
      assert.equals("3\n2\ninput:1: oops\n42\n", r.out)
      assert.equals("", r.err)
    end)

    it("input that all went well exits 0", function()
      local r = cli(home, words("--endpoint", H.endpoint), { stdin = "1 + 2\nx = 4\nx * 2\n" })
      exits(r, 0)
      assert.equals("3\n8\n", r.out)
    end)
  end)

  -- A server's error code and message, and the names in its answers, may
  -- hold terminal escape sequences (retitle the window, clear the screen,
  -- write the clipboard with OSC 52, a C1 CSI). Whatever path prints them,
  -- they come out escaped: no ESC, BEL, CR or C1 byte reaches the terminal.
  describe("text from a hostile server", function()
    local EVIL = "\27]0;pwned\7\27[2J\27]52;c;ZXZpbA==\7\194\155\r"
    local SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\u{9b}\\r"
    local ERR = { kind = "status", status = 400, body = {
      __type = "com.amazonaws.dynamodb.v20120810#Evil" .. EVIL, message = "says" .. EVIL } }

    setup(function() assert(H.proxy, "the fault proxy is not running") end)
    after_each(H.clear_faults)

    -- No control byte but newline and tab (a traceback's), no C1 (raw or
    -- UTF-8), and the escaped text.
    local function clean(text, what)
      local bad = text:find("[%z\1-\8\11-\31\127]") or text:find("\194[\128-\159]")
                  or text:find("[\128-\159]")
      assert(not bad, what .. " has a control byte at " .. tostring(bad) .. ": "
                      .. string.format("%q", text))
      contains(text, SHOWN, what)
    end

    local function proxied(args, o) return cli(home, "--endpoint " .. q(H.proxy) .. " " .. args, o) end

    it("an error from 'ddbkit table' prints code and message escaped", function()
      H.faults{ ERR }
      local r = proxied(words("table", "describe", "--name", "x"))
      exits(r, 1)
      clean(r.err, "stderr")
      -- The engine takes no error name with control bytes in it (the code
      -- is UnknownError then); the message keeps them, escaped.
      contains(r.err, "ddbkit: UnknownError: HTTP 400 (its __type names no error): says\\x1b]0;pwned",
               "stderr")
      assert.equals(1, #lines_of(r.err))
    end)

    it("--debug: the error line and the traceback are escaped", function()
      H.faults{ ERR }
      local r = proxied(words("--debug", "table", "describe", "--name", "x"))
      exits(r, 1)
      clean(r.err, "stderr")
    end)

    it("the REPL (from a pipe) prints an error value escaped", function()
      H.faults{ ERR }
      local r = proxied("", { stdin = 'client:get_item{ TableName = "x", Key = { pk = "a" } }\n' })
      exits(r, 1)   -- an error value printed is a failed input
      clean(r.out, "stdout")
      contains(r.out, "UnknownError: HTTP 400 (its __type names no error): says\\x1b]0;pwned",
               "stdout")
    end)

    it("a script raising the error value: the message is escaped", function()
      H.faults{ ERR }
      local r = proxied(words("run", "-"), { stdin =
        'local ok, err = client:get_item{ TableName = "x", Key = { pk = "a" } }\nerror(err)\n' })
      exits(r, 1)
      clean(r.err, "stderr")
    end)

    it("'ddbkit table describe' prints names from the answer escaped", function()
      H.faults{
        { kind = "status", status = 200, match = "DescribeTable", body = { Table = {
          TableName = "t" .. EVIL, TableStatus = "ACTIVE" .. EVIL,
          AttributeDefinitions = { { AttributeName = "pk" .. EVIL, AttributeType = "S" } },
          KeySchema = { { AttributeName = "pk" .. EVIL, KeyType = "HASH" } },
          GlobalSecondaryIndexes = { { IndexName = "i" .. EVIL,
            KeySchema = { { AttributeName = "pk" .. EVIL, KeyType = "HASH" } },
            Projection = { ProjectionType = "ALL" .. EVIL }, IndexStatus = "ACTIVE" } },
          ItemCount = 0, TableSizeBytes = 0 } } },
        { kind = "status", status = 200, match = "DescribeTimeToLive", body = {
          TimeToLiveDescription = { TimeToLiveStatus = "ENABLED" .. EVIL,
                                    AttributeName = "ttl" .. EVIL } } },
      }
      local r = proxied(words("table", "describe", "--name", "x"))
      exits(r, 0)
      clean(r.out, "stdout")
      contains(r.out, "index i\\x1b]0;pwned", "stdout")
    end)

    it("'ddbkit table describe' of an answer with wrong-typed fields does not raise", function()
      H.faults{
        { kind = "status", status = 200, match = "DescribeTable", body = { Table = {
          TableName = "t", TableStatus = true, AttributeDefinitions = { 5, { AttributeName = 7 } },
          KeySchema = "x", GlobalSecondaryIndexes = { 5, { IndexName = { a = 1 }, Projection = 3 } },
          BillingModeSummary = 5, CreationDateTime = "yesterday", ItemCount = "many",
          TableSizeBytes = {} } } },
        { kind = "status", status = 200, match = "DescribeTimeToLive", body = {
          TimeToLiveDescription = { TimeToLiveStatus = { 1 }, AttributeName = false } } },
      }
      local r = proxied(words("table", "describe", "--name", "x"))
      exits(r, 0)
      assert.equals("", r.err)
      assert(r.out:match("^table +t\n"), "table row" .. show(r))
      assert(r.out:match("\nitems +0 "), "items row" .. show(r))
    end)
  end)

  describe("repl, in a terminal", function()
    local r

    before_each(function()
      r = new_repl()
    end)
    after_each(function()
      if r then r:close() end
      r = nil
    end)

    it("greets, evaluates an expression and prints tables indented", function()
      r:start()
      local screen = r:screen()
      assert(screen:match("^ddbkit %d+%.%d+%.%d+ %(Lua 5%.4%)  endpoint " .. H.endpoint:gsub("%p", "%%%0")),
             "banner:\n" .. screen)
      assert.equals("3", (r:run("1 + 2")))
      assert.equals('"ab"\n1', (r:run('"a" .. "b", 1')))
      -- Typed compact (the line must not wrap in the 120 columns), printed spaced out.
      local out = r:run('{name="ddbkit",list={1,2,3},'
                        .. 'nested={deeper={key="a value long enough to need lines of its own"}}}')
      assert.equals(table.concat({
        "{",
        "  list = { 1, 2, 3 },",
        '  name = "ddbkit",',
        '  nested = { deeper = { key = "a value long enough to need lines of its own" } },',
        "}",
      }, "\n"), out)
    end)

    it("reads and prints UTF-8 text", function()
      r:start()
      assert.equals('"h\195\169llo w\195\182rld \226\156\147"\n2',
                    (r:run('"h\195\169llo w\195\182rld \226\156\147", #"\195\169"')))
    end)

    it("continues a multi-line function and calls it", function()
      r:start()
      local out, prompt = r:run("function f(x)")
      assert.equals("", out)
      assert.equals(CONTINUE, prompt)
      out, prompt = r:run("  return x * 2")
      assert.equals("", out)
      assert.equals(CONTINUE, prompt)
      out, prompt = r:run("end")
      assert.equals("", out)
      assert.equals(PROMPT, prompt)
      out, prompt = r:run("f(21)")
      assert.equals("42", out)
      assert.equals(PROMPT, prompt)
    end)

    it("completes a method with Tab, and the completed line runs", function()
      r:start()
      r:type("client:get_i")
      r:key("Tab")
      r:wait(function(s) return last_line(s) == "ddbkit> client:get_item" end,
             "the completed line 'ddbkit> client:get_item'")
      local out = r:run('{ TableName = "nope", Key = { pk = "x" } }')
      contains(out, "ResourceNotFoundException")
      -- Commands complete too.
      r:type(":sta")
      r:key("Tab")
      r:wait(function(s) return last_line(s) == "ddbkit> :stats" end, "'ddbkit> :stats'")
      contains(r:run(""), "requests = 1,")
    end)

    it(":stats counts requests and :time shows elapsed time and requests", function()
      r:start()
      local out = r:run(":stats")
      contains(out, "requests = 0,")   -- starting makes no request
      out = r:run("client:list_tables{}")
      contains(out, "TableNames = ")
      out = r:run(":stats")
      assert(out:match("^{\n"), ":stats prints a table:\n" .. out)
      contains(out, "\n  requests = 1,\n")
      contains(out, "ListTables = { calls = 1,")
      out = r:run(":time client:list_tables{}")
      contains(out, "TableNames = ")
      local l = lines_of(out)
      assert(l[#l]:match("^%d+%.%d+ m?s, 1 DynamoDB request$"), ":time line:\n" .. out)
      out = r:run(":time 6 * 7")
      assert(out:match("^42\n%d+%.%d+ m?s, 0 DynamoDB requests$"), ":time without requests:\n" .. out)
    end)

    it("shows a syntax error and gives the prompt back", function()
      r:start()
      local out, prompt = r:run("x = = 1")
      assert(out:match("^input:1: unexpected symbol near '='$"), "syntax error:\n" .. out)
      assert.equals(PROMPT, prompt)
      out = r:run(":bogus")
      contains(out, "unknown command :bogus")
      assert.equals("2", (r:run("1 + 1")))
    end)

    it("shows an error value from DynamoDB with its code, in red", function()
      r:start()
      local out = r:run('client:get_item{ TableName = "nope", Key = { pk = "x" } }')
      local l = lines_of(out)
      assert.equals("nil", l[1])
      assert(l[2]:match("^ResourceNotFoundException: "), "error line:\n" .. out)
      contains(out, "status = 400")
      contains(r:screen(true), "\27[31mResourceNotFoundException: ", "the screen with colours")
    end)

    it("Ctrl-C drops a half-typed line", function()
      r:start()
      r:type('error("boom")')
      r:wait(function(s) return last_line(s) == 'ddbkit> error("boom")' end, "the typed line")
      local before = count_prompts(r:screen())
      r:key("C-c")
      r:wait(function(s) return count_prompts(s) > before end, "a prompt after Ctrl-C")
      local out = r:run("7*6")
      assert.equals("42", out)
      local screen = r:screen()
      lacks(screen, "input:1: boom", "the screen")
      lacks(screen, "\nboom", "the screen")
      -- At the continuation prompt it drops the whole unfinished input.
      local _, prompt = r:run("function h()")
      assert.equals(CONTINUE, prompt)
      before = count_prompts(r:screen())
      r:key("C-c")
      screen = r:wait(function(s) return count_prompts(s) > before end, "a prompt after Ctrl-C")
      assert.equals(PROMPT, last_line(screen))
      assert.equals("2", (r:run("1 + 1")))
    end)

    it("Ctrl-C stops running code and the REPL carries on", function()
      r:start()
      r:type('io.write("spin", "ning\\n") io.flush() while true do end')
      r:key("Enter")
      r:wait(function(s) return s:find("\nspinning\n", 1, true) ~= nil end, "the loop to start")
      local before = count_prompts(r:screen())
      r:key("C-c")
      local screen = r:wait(function(s) return count_prompts(s) > before end, "a prompt after Ctrl-C")
      contains(screen, "\ninterrupted\n", "the screen")
      assert.equals("5", (r:run("2 + 3")))
    end)

    it("Ctrl-D exits with status 0 and the history is kept", function()
      r:start()
      assert.equals("", (r:run("histprobe=6*7")))
      r:key("C-d")
      r:wait(function(s) return s:find("\nEXIT:%d+\n") ~= nil end, "the REPL to exit")
      contains(r:screen(), "\nEXIT:0\n", "the screen")
      local hist = read_file(r.dir .. "/state/ddbkit/history")
      assert(hist, "no history file in " .. r.dir .. "/state/ddbkit")
      contains(hist, "histprobe=6*7", "the history file")

      -- A new REPL reads it back: Up brings the line.
      r:tmux("kill-server")
      r.name = H.unique("ddbkit-cli")
      r:start()
      r:key("Up")
      r:wait(function(s) return last_line(s) == "ddbkit> histprobe=6*7" end, "the line from history")
      assert.equals("", (r:run("")))   -- Enter runs the recalled line
      assert.equals("42", (r:run("histprobe")))
      r:type(":quit")
      r:key("Enter")
      r:wait(function(s) return s:find("\nEXIT:%d+\n") ~= nil end, "the REPL to exit on :quit")
      contains(r:screen(), "\nEXIT:0\n", "the screen")
    end)
  end)
end)
