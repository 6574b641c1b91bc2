-- The `ddbkit` command for scripts (build/ddbkit): -e EXPR, help [TOPIC],
-- --output json (NDJSON for scan/query), --table wherever a table applies,
-- table delete's confirmation, and `run`'s one-line failures.
--
-- Every command runs with a clean environment (env -i, a private HOME) and
-- placeholder keys for the local endpoint, as cli_spec.lua does; the
-- confirmation on a terminal runs under util-linux `script` (a pty of its
-- own, no tmux), with the answer piped in.
local H = require "test_helper"
local q = H.shell_quote

-- The command, its clean environment and the reports of a run: cli_helper's.
local CH = require "cli_helper"
local sh, BIN, words, show, exits, clean_env = CH.sh, CH.BIN, CH.words, CH.show, CH.exits, CH.clean_env

local home

local function env_prefix() return clean_env(home, { DDBKIT_ENDPOINT = H.endpoint }) end

-- `ddbkit <args>` (quoted), stdin from o.stdin (else /dev/null), bounded.
-- Returns { out, err, status, cmd }.
local function cli(args, o)
  return CH.cli(home, args, { stdin = o and o.stdin, env = { DDBKIT_ENDPOINT = H.endpoint } })
end

-- The same on a terminal: `script` gives the command a pty; answer is
-- what is typed. stdout and stderr come back mixed, as on a screen.
local function on_terminal(args, answer)
  local cmd = string.format("printf '%%s\\n' %s | timeout -k 5 60 script -qfec %s /dev/null; "
                            .. "echo \"EXIT:$?\"", q(answer),
                            q(env_prefix() .. " " .. q(BIN) .. " " .. args))
  local out, status = sh(cmd):match("^(.-)EXIT:(%d+)\n$")
  assert(out, "no exit status from " .. cmd)
  return { out = out, status = tonumber(status), cmd = cmd, err = "" }
end

local function contains(s, needle, r)
  assert(s:find(needle, 1, true), "should contain " .. string.format("%q", needle) .. show(r))
end

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- A JSON error on stderr: one line {"code":code,"message":...}, nothing on stdout.
local function json_error(r, status, code, needle)
  exits(r, status)
  assert.equals("", r.out)
  local l = lines(r.err)
  assert(#l == 1, "stderr should be one line" .. show(r))
  local e = assert(require("ddbkit.jsjson").decode(l[1]), "stderr should be JSON" .. show(r))
  assert.equals(code, e.code)
  assert.equals("string", type(e.message))
  if needle then contains(e.message, needle, r) end
  return e
end

describe("the ddbkit command for scripts", function()
  local c, name
  local created = {}

  setup(function()
    home = H.mktemp_dir()
    c = H.client()
    name = H.unique("cli-cmd")
    H.create_table(c, name)
    created[name] = true
    for i = 1, 5 do
      assert(c:put_item{ TableName = name, Item = { pk = "p", sk = "s" .. i, n = i } })
    end
    assert(c:put_item{ TableName = name, Item = { pk = "odd", sk = "x",
      big = require("ddbkit").decimal("123456789012345678901234567890"),
      bin = require("ddbkit").binary("hi!"), tags = require("ddbkit").set("b", "a"),
      half = 0.5, nothing = require("ddbkit").null, list = { 1, "two" } } })
  end)

  teardown(function()
    for t in pairs(created) do c:delete_table{ TableName = t } end
    if home and home:match("^/.*/tmp%.[%w]+$") then sh("rm -rf " .. q(home)) end
  end)

  describe("-e EXPR", function()
    it("prints the values as the REPL does, with the REPL's globals", function()
      local r = cli(words("-e", '1 + 2, "x", type(client), type(cache), type(locks)'))
      exits(r, 0)
      assert.equals('3\n"x"\n"table"\n"table"\n"function"\n', r.out)
    end)

    it("a statement prints nothing; --table reaches the globals' table", function()
      local r = cli(words("--table", name, "-e", 'assert(client:get_item{ TableName = "'
                          .. name .. '", Key = { pk = "p", sk = "s1" } })'))
      exits(r, 0)
      r = cli(words("-e", "x = 1"))
      exits(r, 0)
      assert.equals("", r.out)
    end)

    it("a raised error: one line on stderr, exit 1; --debug adds the traceback", function()
      local r = cli(words("-e", 'error("boom")'))
      exits(r, 1)
      assert.equals("", r.out)
      assert.equals("ddbkit: (-e):1: boom\n", r.err)
      r = cli(words("--debug", "-e", 'error("boom")'))
      exits(r, 1)
      contains(r.err, "stack traceback:", r)
    end)

    it("a returned error (nil, err) is a failure too", function()
      local r = cli(words("-e", 'client:get_item{ TableName = "no-such-table", Key = { pk = "a" } }'))
      exits(r, 1)
      assert.equals("", r.out)
      contains(r.err, "ddbkit: ResourceNotFoundException", r)
    end)

    it("a syntax error is a usage error naming it", function()
      local r = cli(words("-e", "1 +"))
      exits(r, 2)
      contains(r.err, "ddbkit: -e: ", r)
    end)

    it("does not go with a command, and needs a value", function()
      local r = cli(words("config", "-e", "1"))
      exits(r, 2)
      contains(r.err, "-e EXPR does not go with 'ddbkit config'", r)
      r = cli(words("-e"))
      exits(r, 2)
      contains(r.err, "option -e needs a value", r)
    end)
  end)

  describe("help", function()
    it("'ddbkit help' and --help print the main help", function()
      local a, b = cli("help"), cli("--help")
      exits(a, 0)
      assert.equals(b.out, a.out)
      contains(a.out, "-e EXPR", a)
      contains(a.out, "help [TOPIC]", a)
    end)

    it("'ddbkit help TOPIC' is 'ddbkit TOPIC --help'", function()
      for _, topic in ipairs({ "table", "run", "scan", "query", "get", "config", "repl" }) do
        local a, b = cli(words("help", topic)), cli(words(topic, "--help"))
        exits(a, 0)
        assert.equals(b.out, a.out)
        contains(a.out, "usage: ddbkit ", a)
      end
      contains(cli("help output").out, "base64", { cmd = "help output", status = 0, out = "", err = "" })
    end)

    it("an unknown topic names the topics", function()
      local r = cli(words("help", "nope"))
      exits(r, 2)
      contains(r.err, "no help on 'nope'; topics: ", r)
      contains(r.err, "table", r)
    end)
  end)

  describe("--output json", function()
    it("-e: each value a JSON line; big numbers, decimals, binary and sets as documented", function()
      local r = cli(words("-o", "json", "-e", "9007199254740993, 9007199254740992, 0.5, "
        .. 'ddbkit.decimal("3.14159265358979323846"), ddbkit.binary("hi!"), ddbkit.set(2, 1), '
        .. 'ddbkit.null, {1, 2}, {a = "b"}, true'))
      exits(r, 0)
      assert.equals('"9007199254740993"\n9007199254740992\n0.5\n"3.14159265358979323846"\n'
                    .. '"aGkh"\n[1,2]\nnull\n[1,2]\n{"a":"b"}\ntrue\n', r.out)
    end)

    it("get prints the item as one JSON object", function()
      local r = cli(words("get", "odd", "x", "--table", name, "--output", "json"))
      exits(r, 0)
      assert.equals('{"big":"123456789012345678901234567890","bin":"aGkh","half":0.5,'
                    .. '"list":[1,"two"],"nothing":null,"pk":"odd","sk":"x","tags":["a","b"]}\n', r.out)
    end)

    it("scan and query print NDJSON, one item a line, across pages", function()
      local r = cli(words("scan", "--table", name, "-o", "json", "--page-size", "2"))
      exits(r, 0)
      assert.equals(6, #lines(r.out))
      r = cli(words("query", "p", "--table", name, "-o", "json", "--page-size", "2"))
      exits(r, 0)
      assert.equals('{"n":1,"pk":"p","sk":"s1"}\n{"n":2,"pk":"p","sk":"s2"}\n'
                    .. '{"n":3,"pk":"p","sk":"s3"}\n{"n":4,"pk":"p","sk":"s4"}\n'
                    .. '{"n":5,"pk":"p","sk":"s5"}\n', r.out)
      r = cli(words("query", "p", "--table", name, "-o", "json", "--page-size", "2", "--limit", "3"))
      exits(r, 0)
      assert.equals(3, #lines(r.out))
    end)

    it("table describe and config print one JSON object", function()
      local jsjson = require "ddbkit.jsjson"
      local r = cli(words("table", "describe", "--table", name, "-o", "json"))
      exits(r, 0)
      assert.equals(1, #lines(r.out))
      local d = assert(jsjson.decode(r.out))
      assert.equals(name, d.Table.TableName)
      r = cli(words("config", "-o", "json", "--table", name))
      exits(r, 0)
      assert.equals(name, assert(jsjson.decode(r.out)).table)
    end)

    it("errors are one JSON line on stderr", function()
      json_error(cli(words("get", "nope", "x", "--table", name, "-o", "json")), 1, "NotFound")
      json_error(cli(words("scan", "--table", "no-such-table", "-o", "json")), 1,
                 "ResourceNotFoundException")
      json_error(cli(words("-o", "json", "-e", 'error("boom")')), 1, "ScriptError", "boom")
      json_error(cli(words("-o", "json", "--bogus")), 2, "UsageError", "unknown option --bogus")
    end)

    it("is refused for the REPL, which prints for a person", function()
      local r = cli(words("-o", "json"))
      exits(r, 2)
      contains(r.err, "option --output does not apply to 'ddbkit repl'", r)
    end)

    it("a format other than text or json is refused, naming it", function()
      local r = cli(words("-o", "yaml", "config"))
      exits(r, 2)
      contains(r.err, "--output must be text or json, not 'yaml'", r)
    end)
  end)

  describe("--table", function()
    it("names the table of table, scan, query and get, before or after the command", function()
      local r = cli(words("--table", name, "table", "describe"))
      exits(r, 0)
      contains(r.out, name, r)
      r = cli(words("table", "describe", "--table", name))
      exits(r, 0)
      r = cli(words("--table", name, "get", "p", "s2"))
      exits(r, 0)
      assert.equals('{ n = 2, pk = "p", sk = "s2" }\n', r.out)
      r = cli(words("--table", name, "query", "p", "--limit", "1"))
      exits(r, 0)
      assert.equals('{ n = 1, pk = "p", sk = "s1" }\n', r.out)
      r = cli(words("--table", name, "scan", "--limit", "1", "-o", "json"))
      exits(r, 0)
      assert.equals(1, #lines(r.out))
    end)

    it("is refused where no table applies, and against a different --name", function()
      local r = cli(words("local", "status", "--table", name))
      exits(r, 2)
      contains(r.err, "option --table does not apply to 'ddbkit local'", r)
      r = cli(words("table", "describe", "--table", name, "--name", "other"))
      exits(r, 2)
      contains(r.err, "name different tables", r)
    end)

    it("get names a missing key part", function()
      local r = cli(words("--table", name, "get", "p"))
      exits(r, 2)
      contains(r.err, "has a sort key (sk): give PK and SK", r)
    end)
  end)

  describe("table delete", function()
    local function exists(t) return c:describe_table{ TableName = t } ~= nil end

    it("off a terminal without --yes: refused, exit 1, nothing deleted", function()
      local t = H.unique("cli-del")
      H.create_table(c, t)
      created[t] = true
      local r = cli(words("table", "delete", "--table", t))
      exits(r, 1)
      contains(r.err, "not deleting table " .. t, r)
      contains(r.err, "--yes", r)
      assert.is_true(exists(t))
      r = cli(words("table", "delete", "--table", t, "--yes"))
      exits(r, 0)
      assert.is_false(exists(t))
      created[t] = nil
    end)

    it("on a terminal asks for the name: a wrong one deletes nothing, the right one deletes", function()
      local t = H.unique("cli-del")
      H.create_table(c, t)
      created[t] = true
      local r = on_terminal(words("table", "delete", "--table", t), "wrong")
      exits(r, 1)
      contains(r.out, "Type the table name to confirm", r)
      contains(r.out, "the name typed did not match", r)
      assert.is_true(exists(t))
      r = on_terminal(words("table", "delete", "--table", t), t)
      exits(r, 0)
      contains(r.out, "deleted table " .. t, r)
      assert.is_false(exists(t))
      created[t] = nil
    end)

    it("--yes is refused on other actions", function()
      local r = cli(words("table", "describe", "--table", name, "--yes"))
      exits(r, 2)
      contains(r.err, "--yes applies to 'ddbkit table delete' only", r)
    end)
  end)

  describe("run", function()
    it("a failing script prints one line unless --debug", function()
      local script = home .. "/bad.lua"
      H.write_file(script, "local function f()\n  error(\"kaboom\")\nend\nf()\n")
      local r = cli(words("run", script))
      exits(r, 1)
      assert.equals("ddbkit: " .. script .. ":2: kaboom\n", r.err)
      r = cli(words("run", "--debug", script))
      exits(r, 1)
      contains(r.err, "stack traceback:", r)
      contains(r.err, script .. ":4: in main chunk", r)
    end)
  end)
end)
