-- ddbkit.cli: the `ddbkit` command. The executable (bindings/cli/main.c)
-- calls main(args) with argv[1..] and exits with what it returns.
--
--   ddbkit [repl] | run SCRIPT [ARGS] | table ACTION | local ACTION | config
--
-- This file parses the command line, resolves the configuration (flags,
-- then the environment, then the config file, then defaults), builds the
-- environment the REPL and scripts share (client, stores, locks, idem) and
-- runs the subcommands. Exit statuses: 0 done; 1 a failure (one line
-- "ddbkit: code: message", the traceback only with --debug); 2 a usage
-- error (one line naming the help to read); 130 interrupted by Ctrl-C.
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local schema = require "ddbkit.schema"

local type, pairs, ipairs, error, setmetatable, getmetatable, tostring, tonumber, pcall =
      type, pairs, ipairs, error, setmetatable, getmetatable, tostring, tonumber, pcall
local format, concat = string.format, table.concat

local _M = { _VERSION = "0.1.0" }

local function out(...) io.stdout:write(...) end
local function say(...) io.stderr:write(...) end

-- Errors ------------------------------------------------------------------

-- main() reports these as one line: usage errors (status 2) and failures
-- of the world (status 1). Anything else raised is a bug or a script's own
-- error, reported with its message (and traceback with --debug).
local Usage, Failure = {}, {}

local function usage(cmd, what)
  error(setmetatable({ cmd = cmd, message = what }, Usage), 0)
end

local function fail(code, message)
  error(setmetatable({ code = code, message = message }, Failure), 0)
end

-- The text of any error value: ddbkit's error tables print "code: message".
local function error_text(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  if type(e) == "table" and type(e.message) == "string" then
    return (e.code and e.code .. ": " or "") .. e.message
  end
  return "(error object is a " .. type(e) .. " value)"
end

-- The hook le.interruptible installs raises "interrupted" (a position may
-- be prepended when it comes from luaL_error).
local function is_interrupt(e)
  return type(e) == "string" and (e == "interrupted" or e:match("^[^\n]*: interrupted$") ~= nil)
end

-- Drops "file:line: " from an error raised with a level, for messages
-- about scripts the user named (their own position is in the text).
local function without_position(e)
  return (error_text(e):gsub("^[^\n:]+:%d+: ", ""):gsub("^ddbkit: ", ""))
end

-- The line editor ------------------------------------------------------------

-- Preloaded by the ddbkit executable. Under a plain lua (tests) it may be
-- missing: then nothing is a terminal and Ctrl-C ends the process as usual.
local function lineedit()
  local ok, le = pcall(require, "ddbkit.lineedit")
  return ok and le or nil
end

local function isatty(fd)
  local le = lineedit()
  return le ~= nil and le.isatty(fd)
end

-- pcall(fn, ...), where Ctrl-C raises "interrupted" inside fn (without the
-- executable's line editor, a plain pcall).
local function interruptible(fn, ...)
  local le = lineedit()
  if le then return le.interruptible(fn, ...) end
  return pcall(fn, ...)
end

-- Help ----------------------------------------------------------------------

local CONNECTION_HELP = [[
Connection options (every command):
  --endpoint URL   the DynamoDB endpoint, e.g. http://127.0.0.1:8000
                   (default: https://dynamodb.<region>.amazonaws.com)
  --region R       the AWS region (default: the profile's region; us-east-1
                   when only an endpoint is given)
  --profile P      the AWS profile to take credentials and region from
  --debug          show tracebacks with errors (also DDBKIT_DEBUG=1)
  -h, --help       this help
]]

local HELP = {}

HELP.main = [[
usage: ddbkit [COMMAND] [OPTIONS]

Drive ddbkit (DynamoDB for Lua) from a Lua 5.4 prompt or a script, provision
its tables, and run a local DynamoDB to try it without AWS.

Commands:
  repl                  an interactive Lua prompt with the client and every
                        store ready (the default command)
  run SCRIPT [ARGS]     run a Lua script in the same environment
  table ACTION          create | describe | delete | ttl the store table or
                        the idempotency table
  local ACTION          start | stop | status the local DynamoDB of the test
                        harness
  config                print the resolved configuration, secrets masked

]] .. CONNECTION_HELP .. [[
  --version        print the version of ddbkit and of Lua

Configuration: each value comes from the first of: a flag; the environment;
the config file; a default. Environment variables, first set wins:
  endpoint           DDBKIT_ENDPOINT, AWS_ENDPOINT_URL_DYNAMODB,
                     AWS_ENDPOINT_URL
  region             DDBKIT_REGION, AWS_REGION, AWS_DEFAULT_REGION
  profile            DDBKIT_PROFILE, AWS_PROFILE
  table              DDBKIT_TABLE (default http-client-toolkit; flag --table)
  idempotency_table  DDBKIT_IDEMPOTENCY_TABLE (default idempotency-cache)
  policy             DDBKIT_POLICY (key-prefix policy: a module name or a
                     file path; default policies.key_prefix)
  strategy           DDBKIT_STRATEGY (adaptive rate-limit strategy; default
                     strategies.adaptive)
  history_size       DDBKIT_HISTORY_SIZE (REPL history lines; default 1000)
The config file is $DDBKIT_CONFIG, else $XDG_CONFIG_HOME/ddbkit/config, else
~/.config/ddbkit/config: lines "key = value" with the keys above; lines
starting with # are comments.
Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
else the profile in ~/.aws/credentials and ~/.aws/config (static keys). With
an endpoint on 127.0.0.1 or localhost and no credentials anywhere, ddbkit
signs with placeholder keys, which DynamoDB Local accepts.

Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.
Run 'ddbkit COMMAND --help' for a command's options.
]]

HELP.repl = [[
usage: ddbkit [repl] [--table NAME] [connection options]

An interactive Lua 5.4 prompt. Ready as globals:
  ddbkit       the ddbkit module
  client       a ddbkit.client for the configured endpoint and region
  cache, dedupe, rate_limit, adaptive
               the stores on the store table (ddbkit.create_stores), with
               the configured key-prefix policy and adaptive strategy
  locks(name, opts?)
               a ddbkit.lock on the item pk = sk = "LOCK#"..name of the store
               table; opts are ddbkit.lock.new's (max_clock_skew_ms, ...)
  idem         ddbkit.idempotency on the idempotency table
  reload()     re-read the policy and strategy scripts and re-create the
               stores (also :reload)
Nothing is sent to DynamoDB until you use them.

Expressions print their values (tables indented, DynamoDB items as Lua
values, errors in red with their code); an incomplete statement continues
on the next line. Locals last for one input: use globals to keep values.
Commands: :help, :stats, :reload, :time EXPR, :quit.
Keys: Tab completes globals, fields after '.', methods after ':'; Ctrl-C
drops the current input or stops a running one; Ctrl-D exits.
History: $XDG_STATE_HOME/ddbkit/history (else ~/.local/state/ddbkit/history).

Options:
  --table NAME     the store table (default http-client-toolkit)
]] .. "\n" .. CONNECTION_HELP

HELP.run = [[
usage: ddbkit run [--table NAME] [connection options] SCRIPT [ARGS...]

Runs the Lua script SCRIPT ("-" reads it from standard input) with the REPL's
globals (see 'ddbkit repl --help'). The script gets its arguments as ... and
in the global arg, as the lua command gives them: arg[0] is SCRIPT, arg[1]
the first argument. Everything after SCRIPT goes to the script.
An error in the script prints its message and a traceback on stderr and
exits with status 1 (130 when interrupted by Ctrl-C).

Options:
  --table NAME     the store table (default http-client-toolkit)
]] .. "\n" .. CONNECTION_HELP

HELP.table = [[
usage: ddbkit table create|describe|delete|ttl [--name N] [--schema KIND]
                    [connection options]

Provisions the tables ddbkit uses (the stores never create them).
  create      create the table, wait until it is ACTIVE, enable TTL
  describe    print its status, keys, indexes, size, item count and TTL
  delete      delete the table and wait until it is gone
  ttl         enable TTL on the schema's attribute if it is not, and print
              the TTL status

Options:
  --schema KIND    store (default): HASH pk, RANGE sk, index gsi1 (gsi1pk,
                   gsi1sk), on-demand, TTL on "ttl" -- the Node store
                   package's table;
                   idempotency: HASH cacheKey, on-demand, TTL on "expiresAt"
  --name N         the table; default: for store, the configured table
                   (else http-client-toolkit); for idempotency, the
                   configured idempotency_table (else idempotency-cache)
]] .. "\n" .. CONNECTION_HELP

HELP["local"] = [[
usage: ddbkit local start|stop|status [--port P]

The local DynamoDB of ddbkit's test harness (DynamoDB Local, in memory,
bound to 127.0.0.1), for trying ddbkit without AWS.
  start       start it, wait until it answers, print its endpoint URL
  stop        stop the one started here on that port
  status      print running or stopped (exit status 0 or 1)
Then: ddbkit --endpoint http://127.0.0.1:P

Options:
  --port P         the port (default $DDB_LOCAL_PORT, else 8000)
  --debug          show tracebacks with errors (also DDBKIT_DEBUG=1)
  -h, --help       this help
  --endpoint, --region and --profile are accepted, as by every command, and
  not used.
]]

HELP.config = [[
usage: ddbkit config [--table NAME] [connection options]

Prints the resolved configuration: each value and where it came from (a
flag, an environment variable, the config file and line, or a default),
the config and history files, and where the credentials come from, with
secrets masked. Sends nothing to DynamoDB. See 'ddbkit --help' for the
sources and the config file's format.

Options:
  --table NAME     the store table (default http-client-toolkit)

]] .. CONNECTION_HELP

-- Command line ------------------------------------------------------------------

-- Every option: the name of its value, or false for a flag.
local OPTIONS = {
  endpoint = "URL", region = "R", profile = "P", table = "NAME", name = "N", schema = "KIND",
  port = "P", debug = false, help = false, version = false,
}
local EVERYWHERE = { endpoint = true, region = true, profile = true, debug = true,
                     help = true, version = true }

local COMMANDS = {
  repl = { options = { table = true } },
  run = { options = { table = true } },
  table = { options = { name = true, schema = true },
            actions = { "create", "describe", "delete", "ttl" } },
  ["local"] = { options = { port = true }, actions = { "start", "stop", "status" } },
  config = { options = { table = true } },
}

-- Reads one option at args[i]; returns its name, its value (true for a
-- flag) and the index of the next argument, or nil and what is wrong.
local function read_option(args, i)
  local a = args[i] == "-h" and "--help" or args[i]
  local name, value = a:match("^%-%-([^=]+)=(.*)$")
  name = name or a:sub(3)
  local kind = OPTIONS[name]
  if kind == nil then return nil, "unknown option --" .. name end
  if kind == false then
    if value then return nil, "option --" .. name .. " takes no value" end
    return name, true, i + 1
  end
  if not value then
    value, i = args[i + 1], i + 1
    if value and value:match("^%-%-") then value = nil end
  end
  if not value or value == "" then
    return nil, "option --" .. name .. " needs a value (" .. kind .. ")"
  end
  return name, value, i + 1
end

-- Splits args into { cmd, explicit, opts, words }. Options may come before
-- or after the command; for run, everything after SCRIPT is the script's.
-- The first problem is kept, not raised, so that --help anywhere still works.
local function split(args)
  local p = { opts = {}, words = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do p.words[#p.words + 1] = args[j] end
      break
    elseif a == "-h" or a:match("^%-%-.") then
      local name, value, next_i = read_option(args, i)
      if name then p.opts[name] = value else p.problem = p.problem or value end
      i = next_i or i + 1
    elseif a:match("^%-.") then
      p.problem = p.problem or "unknown option " .. a
      i = i + 1
    elseif not p.cmd and COMMANDS[a] then
      p.cmd, p.explicit = a, true
      i = i + 1
    elseif not p.cmd then
      local hint = a:match("%.lua$") and " (to run a script: ddbkit run " .. a .. ")" or ""
      p.problem = p.problem or "unknown command '" .. a .. "'" .. hint
      i = i + 1
    else
      p.words[#p.words + 1] = a
      if p.cmd == "run" then
        for j = i + 1, #args do p.words[#p.words + 1] = args[j] end
        break
      end
      i = i + 1
    end
  end
  p.cmd = p.cmd or "repl"
  return p
end

local function one_of(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- Raises the usage error of a split command line, if it has one.
local function check(p)
  local cmd, spec = p.cmd, COMMANDS[p.cmd]
  local ucmd = p.explicit and cmd or nil
  if p.problem then usage(ucmd, p.problem) end
  for name in pairs(p.opts) do
    if not EVERYWHERE[name] and not spec.options[name] then
      usage(ucmd, "option --" .. name .. " does not apply to 'ddbkit " .. cmd .. "'")
    end
  end
  local words = p.words
  if spec.actions then
    local all = concat(spec.actions, ", ")
    if not words[1] then usage(cmd, "'ddbkit " .. cmd .. "' needs an action: " .. all) end
    if not one_of(spec.actions, words[1]) then
      usage(cmd, "unknown action '" .. words[1] .. "' for 'ddbkit " .. cmd .. "' (" .. all .. ")")
    end
    if words[2] then usage(cmd, "unexpected argument '" .. words[2] .. "'") end
  elseif cmd == "run" then
    if not words[1] then usage(cmd, "'ddbkit run' needs a SCRIPT") end
  elseif words[1] then
    usage(ucmd, "unexpected argument '" .. words[1] .. "'")
  end
  local s, port = p.opts.schema, p.opts.port
  if s and s ~= "store" and s ~= "idempotency" then
    usage(cmd, "--schema must be store or idempotency, not '" .. s .. "'")
  end
  local n = port and math.tointeger(tonumber(port))
  if port and (not port:match("^%d+$") or not n or n < 1 or n > 65535) then
    usage(cmd, "--port must be a port number (1-65535), not '" .. port .. "'")
  end
end

-- Configuration ------------------------------------------------------------------

local function positive_integer(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 then return "a positive integer" end
end

-- The keys, in the order `ddbkit config` shows them: the flag setting each,
-- its environment variables (first set wins), its default. policy and
-- strategy default to what the stores load when given none.
local KEYS = {
  { key = "endpoint", flag = "endpoint",
    env = { "DDBKIT_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL" } },
  { key = "region", flag = "region",
    env = { "DDBKIT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION" } },
  { key = "profile", flag = "profile", env = { "DDBKIT_PROFILE", "AWS_PROFILE" } },
  { key = "table", flag = "table", env = { "DDBKIT_TABLE" }, default = schema.DEFAULT_TABLE_NAME },
  { key = "idempotency_table", env = { "DDBKIT_IDEMPOTENCY_TABLE" },
    default = schema.IDEMPOTENCY_TABLE_NAME },
  { key = "policy", env = { "DDBKIT_POLICY" }, default = "policies.key_prefix" },
  { key = "strategy", env = { "DDBKIT_STRATEGY" }, default = "strategies.adaptive" },
  { key = "history_size", env = { "DDBKIT_HISTORY_SIZE" }, default = "1000",
    check = positive_integer },
}
local KNOWN = {}
for _, k in ipairs(KEYS) do KNOWN[k.key] = k end

local function getenv(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end

-- An XDG base directory: the variable if it holds an absolute path (the
-- spec says to ignore relative ones), else fallback under $HOME.
local function xdg_dir(var, fallback)
  local v = getenv(var)
  if v and v:sub(1, 1) == "/" then return v end
  local home = getenv("HOME")
  return home and home .. "/" .. fallback
end

-- The config file to read and whether the user named it (DDBKIT_CONFIG):
-- only a named file must exist.
local function config_file()
  local named = getenv("DDBKIT_CONFIG")
  if named then return named, true end
  local dir = xdg_dir("XDG_CONFIG_HOME", ".config")
  return dir and dir .. "/ddbkit/config", false
end

-- Reads a config file: { key = { value, where = "path:line" } }, or {}
-- when it is absent and optional. Fails on anything it cannot read, so a
-- typo never silently falls back to a default.
local function read_config(path, named)
  local f, ferr = io.open(path, "r")
  if not f then
    if named then fail("ConfigError", "cannot read DDBKIT_CONFIG: " .. ferr) end
    return {}, false
  end
  local values, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if not line:match("^%s*$") and not line:match("^%s*#") then
      local k, v = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
      local where = path .. ":" .. n
      if not k then f:close() fail("ConfigError", where .. ": expected 'key = value'") end
      if not KNOWN[k] then f:close() fail("ConfigError", where .. ": unknown key '" .. k .. "'") end
      values[k] = { v:match('^"(.*)"$') or v, where = where }
    end
  end
  f:close()
  return values, true
end

-- The value of one key and where it came from.
local function resolve_key(k, opts, file)
  if k.flag and opts[k.flag] then return opts[k.flag], "flag --" .. k.flag end
  for _, var in ipairs(k.env) do
    local v = getenv(var)
    if v then return v, "env " .. var end
  end
  local f = file[k.key]
  if f then return f[1], "file " .. f.where end
  if k.default then return k.default, "default" end
end

--- cli.config(opts) -> { value = {}, source = {}, file, file_found,
-- history_file }: the configuration for the parsed options.
function _M.config(opts)
  local path, named = config_file()
  local file, found = {}, false
  if path then file, found = read_config(path, named) end
  local cfg = { value = {}, source = {}, file = path, file_found = found }
  for _, k in ipairs(KEYS) do
    local v, src = resolve_key(k, opts, file)
    local want = v and k.check and k.check(v)
    if want then fail("ConfigError", k.key .. " (" .. src .. ") must be " .. want) end
    cfg.value[k.key], cfg.source[k.key] = v, src
  end
  local state = xdg_dir("XDG_STATE_HOME", ".local/state")
  cfg.history_file = state and state .. "/ddbkit/history"
  return cfg
end

-- The client -------------------------------------------------------------------

-- DynamoDB Local accepts any signature; these let a machine without AWS
-- credentials use it (letters and digits only, as it requires).
local LOCAL_KEYS = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" }

local function is_loopback(url)
  local host = url and (url:match("^%a+://%[([^%]]+)%]") or url:match("^%a+://([^:/]+)"))
  return host == "localhost" or host == "::1" or (host or ""):match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- What came from AWS_* variables is left for the engine to read itself, so
-- its rules hold unchanged: an AWS_PROFILE, unlike an explicit profile,
-- does not override AWS_ACCESS_KEY_ID.
local function client_options(cfg)
  local o = {}
  for _, k in ipairs({ "endpoint", "region", "profile" }) do
    local src = cfg.source[k]
    if src and not src:match("^env AWS_") then o[k] = cfg.value[k] end
  end
  return o
end

-- client | nil, err, and whether it signs with the placeholder keys. Only
-- reads the environment and credential files: no request is made.
local function new_client(cfg)
  local o = client_options(cfg)
  local client, err = ddbkit.client(o)
  if not client and err.code == "MissingCredentials" and is_loopback(cfg.value.endpoint) then
    o.credentials = LOCAL_KEYS
    client, err = ddbkit.client(o)
    return client, err, client ~= nil
  end
  return client, err, false
end

local function connect(cfg)
  local client, err = new_client(cfg)
  if not client then fail(err.code, err.message) end
  return client
end

-- The environment ----------------------------------------------------------------

--- cli.install(G, cfg, client) -> true | nil, message: puts the REPL's and
-- scripts' globals into G: ddbkit, client, cache, dedupe, rate_limit,
-- adaptive, locks, idem, reload. Makes no request. Fails (with G.reload
-- in place, to retry) when the policy or strategy script cannot be loaded.
function _M.install(G, cfg, client)
  local v = cfg.value
  local stores
  -- ddbkit loads these on first use through an __index function, which Tab
  -- completion does not call; the stores load them anyway, so name them now.
  for _, m in ipairs({ "cache", "dedupe", "ratelimit", "adaptive", "idempotency", "hash" }) do
    local _ = ddbkit[m]
  end
  G.ddbkit, G.client = ddbkit, client
  G.idem = ddbkit.idempotency.new{ client = client, table_name = v.idempotency_table }

  -- A lock per name, all on the store table (whose key is pk, sk).
  function G.locks(name, opts)
    if type(name) ~= "string" or name == "" then
      error("bad argument #1 to 'locks' (non-empty string expected, got "
            .. (name == "" and "an empty string" or type(name)) .. ")", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #2 to 'locks' (table expected, got " .. type(opts) .. ")", 2)
    end
    local key = "LOCK#" .. name
    local o = { client = client, table_name = v.table, key = { pk = key, sk = key } }
    for k, x in pairs(opts or {}) do o[k] = x end
    return ddbkit.lock.new(o)
  end

  -- The stores load their policy and strategy scripts afresh when created
  -- (store.load_script), so re-creating them is the reload. The old stores
  -- are closed: one still held somewhere should fail, not keep the old policy.
  function G.reload()
    local ok, fresh = pcall(ddbkit.create_stores, { client = client, table_name = v.table,
      policy = v.policy, adaptive_rate_limit = { strategy = v.strategy } })
    if not ok then error(without_position(fresh), 2) end
    if stores then stores:close() end
    stores = fresh
    G.cache, G.dedupe, G.rate_limit, G.adaptive =
      fresh.cache, fresh.dedupe, fresh.rate_limit, fresh.adaptive_rate_limit
    return { policy = fresh.cache.policy.name,
             strategy = fresh.adaptive_rate_limit:strategy_info() }
  end

  local ok, err = pcall(G.reload)
  if not ok then return nil, without_position(err) end
  return true
end

-- repl ---------------------------------------------------------------------------

local function version_text()
  return "ddbkit " .. require("ddbkit.cli.env").version .. " (" .. _VERSION .. ")"
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The history's directory, private: the history may hold keys typed in.
local function make_history_dir(file)
  local dir = file and file:match("^(.+)/[^/]+$")
  if dir and not os.rename(dir, dir) then   -- renaming to itself: "does it exist?"
    os.execute("mkdir -p -m 700 " .. shell_quote(dir) .. " 2>/dev/null")
  end
end

local function cmd_repl(p, cfg)
  local le = lineedit()
  if not le then fail("Unsupported", "the REPL needs the ddbkit executable's line editor") end
  local client = connect(cfg)
  make_history_dir(cfg.history_file)
  local ok, err = _M.install(_G, cfg, client)
  local v = cfg.value
  out(version_text(), "  endpoint ", client:endpoint(), "  table ", v.table, "\n",
      "Type :help for help, Ctrl-D to exit.\n")
  if not ok then
    say("warning: the stores are not loaded: ", err, "\n",
        "         fix the script and type :reload\n")
  end
  return require("ddbkit.repl").run{
    le = le, client = client, reload = _G.reload, debug = p.debug,
    history_file = cfg.history_file, history_size = math.tointeger(tonumber(v.history_size)),
  }
end

-- run ----------------------------------------------------------------------------

-- The traceback without the frames of ddbkit itself (from xpcall down).
local function script_traceback()
  local tb = debug.traceback("", 3)
  local cut = tb:find("\n[^\n]*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

local function cmd_run(p, cfg)
  local client = connect(cfg)
  local ok, err = _M.install(_G, cfg, client)
  if not ok then fail("PolicyError", err) end
  local script = p.words[1]
  local chunk, lerr = loadfile(script ~= "-" and script or nil)
  if not chunk then fail("ScriptError", lerr) end
  local args = { [-1] = require("ddbkit.cli.env").exe, [0] = script }
  for i = 2, #p.words do args[i - 1] = p.words[i] end
  _G.arg = args
  local trace
  local ok_run, ok_script, e = interruptible(xpcall, chunk, function(e)
    trace = script_traceback()
    return e
  end, table.unpack(args, 1, #p.words - 1))
  if ok_run and ok_script then return 0 end
  if not ok_run then e = ok_script end   -- interrupted outside the script itself
  say("ddbkit: ", error_text(e), trace or "", "\n")
  return is_interrupt(e) and 130 or 1
end

-- table --------------------------------------------------------------------------

local SCHEMAS = {
  store = { params = schema.TABLE_SCHEMA, ttl = schema.TTL_ATTRIBUTE, config_key = "table" },
  idempotency = { params = schema.IDEMPOTENCY_TABLE_SCHEMA, ttl = schema.IDEMPOTENCY_TTL_ATTRIBUTE,
                  config_key = "idempotency_table" },
}

local POLL_MS = 250
local WAIT_LIMIT_MS = 10 * 60 * 1000   -- a new table with an index can take minutes on AWS

-- A missing table gets a message about this command, not the stores'.
local function table_fail(client, name, err)
  if err.code == "ResourceNotFoundException" then
    fail(err.code, "table " .. name .. " not found at " .. client:endpoint())
  end
  fail(err.code, err.message)
end

-- A spinner line on stderr while waiting, only when stderr is a terminal
-- (a log file should not fill with carriage returns).
local function progress(label)
  local tty, frames, i, t0 = isatty(2), { "|", "/", "-", "\\" }, 0, core.mono_ms()
  return {
    tick = function(status)
      if not tty then return end
      i = i % #frames + 1
      say(format("\r%s %s: %s (%d s)\27[K", frames[i], label, status,
                 (core.mono_ms() - t0) // 1000))
    end,
    done = function() if tty then say("\r\27[K") end end,
  }
end

-- Polls DescribeTable until done(table_description | nil) is true.
local function wait_table(client, name, label, done)
  local p = progress(label)
  local deadline = core.mono_ms() + WAIT_LIMIT_MS
  while true do
    local res, err = client:describe_table{ TableName = name }
    if not res and err.code ~= "ResourceNotFoundException" then
      p.done()
      table_fail(client, name, err)
    end
    local t = res and res.Table
    if done(t) then p.done() return t end
    if core.mono_ms() > deadline then
      p.done()
      fail("Timeout", label .. ": still " .. (t and t.TableStatus or "not visible")
           .. " after " .. WAIT_LIMIT_MS // 1000 .. " s")
    end
    p.tick(t and t.TableStatus or "waiting")
    client.runtime.sleep(POLL_MS)
  end
end

-- Enables TTL on attr unless it is on already; returns the status line.
local function ensure_ttl(client, name, attr)
  local res, err = client:describe_time_to_live{ TableName = name }
  if not res then table_fail(client, name, err) end
  local d = res.TimeToLiveDescription or {}
  local status = d.TimeToLiveStatus or "DISABLED"
  if status == "ENABLED" or status == "ENABLING" then
    if d.AttributeName ~= attr then
      fail("TTLMismatch", "TTL of table " .. name .. " is on " .. tostring(d.AttributeName)
           .. ", not " .. attr .. " (DynamoDB needs it disabled before it can move)")
    end
    return "TTL " .. status .. " on " .. attr .. " (unchanged)"
  end
  if status == "DISABLING" then
    fail("TTLBusy", "TTL of table " .. name .. " is being disabled; try again in an hour")
  end
  local ok, uerr = client:update_time_to_live{ TableName = name,
    TimeToLiveSpecification = { AttributeName = attr, Enabled = true } }
  if not ok then table_fail(client, name, uerr) end
  return "TTL enabled on " .. attr
end

local function table_create(client, name, kind)
  local res, err = client:create_table(schema.create_table_params(kind.params, name))
  if not res then
    if err.code == "ResourceInUseException" then
      fail(err.code, "table " .. name .. " already exists at " .. client:endpoint())
    end
    table_fail(client, name, err)
  end
  wait_table(client, name, "creating " .. name,
             function(t) return t and t.TableStatus == "ACTIVE" end)
  out("created table ", name, " (ACTIVE); ", ensure_ttl(client, name, kind.ttl), "\n")
end

local function table_delete(client, name)
  local res, err = client:delete_table{ TableName = name }
  if not res then table_fail(client, name, err) end
  wait_table(client, name, "deleting " .. name, function(t) return t == nil end)
  out("deleted table ", name, "\n")
end

local function table_ttl(client, name, kind)
  out(name, ": ", ensure_ttl(client, name, kind.ttl), "\n")
end

local function print_rows(rows)
  local w = 0
  for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
  for _, r in ipairs(rows) do out(r[1], (" "):rep(w - #r[1] + 2), r[2], "\n") end
end

local function size_text(bytes)
  local units, n, u = { "bytes", "KiB", "MiB", "GiB", "TiB" }, bytes or 0, 1
  while n >= 1024 and u < #units do n, u = n / 1024, u + 1 end
  return u == 1 and format("%d bytes", n) or format("%.1f %s", n, units[u])
end

-- "pk (S) HASH, sk (S) RANGE"
local function keys_text(key_schema, types)
  local parts = {}
  for i, k in ipairs(key_schema or {}) do
    parts[i] = format("%s (%s) %s", k.AttributeName, types[k.AttributeName] or "?", k.KeyType)
  end
  return concat(parts, ", ")
end

local function table_describe(client, name)
  local res, err = client:describe_table{ TableName = name }
  if not res then table_fail(client, name, err) end
  local t = res.Table
  local types = {}
  for _, a in ipairs(t.AttributeDefinitions or {}) do types[a.AttributeName] = a.AttributeType end
  local billing = t.BillingModeSummary and t.BillingModeSummary.BillingMode or "PROVISIONED"
  local rows = {
    { "table", t.TableName }, { "status", t.TableStatus }, { "endpoint", client:endpoint() },
    { "arn", t.TableArn or "-" },
    { "created", t.CreationDateTime
                 and os.date("!%Y-%m-%d %H:%M:%S UTC", t.CreationDateTime // 1) or "-" },
    { "billing", billing }, { "keys", keys_text(t.KeySchema, types) },
  }
  for _, g in ipairs(t.GlobalSecondaryIndexes or {}) do
    rows[#rows + 1] = { "index " .. g.IndexName, format("%s; projection %s; %s",
      keys_text(g.KeySchema, types), g.Projection and g.Projection.ProjectionType or "?",
      g.IndexStatus or "?") }
  end
  rows[#rows + 1] = { "items",
                      format("%d (approximate, refreshed every ~6 hours)", t.ItemCount or 0) }
  rows[#rows + 1] = { "size", size_text(t.TableSizeBytes) .. " (approximate)" }
  local ttl, terr = client:describe_time_to_live{ TableName = name }
  local d = ttl and ttl.TimeToLiveDescription or {}
  rows[#rows + 1] = { "ttl", ttl and ((d.TimeToLiveStatus or "DISABLED")
    .. (d.AttributeName and " on " .. d.AttributeName or "")) or ("unknown: " .. tostring(terr)) }
  print_rows(rows)
end

local TABLE_ACTIONS = { create = table_create, describe = table_describe, delete = table_delete,
                        ttl = table_ttl }

local function cmd_table(p, cfg)
  local kind = SCHEMAS[p.opts.schema or "store"]
  local name = p.opts.name or cfg.value[kind.config_key]
  TABLE_ACTIONS[p.words[1]](connect(cfg), name, kind)
  return 0
end

-- local --------------------------------------------------------------------------

local function readable(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- The harness script: in a source tree (build/ddbkit) <root>/tests/harness,
-- once installed <share_dir>/harness.
local function harness_script()
  local env = require "ddbkit.cli.env"
  local root = env.exe and env.exe:match("^(.*)/[^/]+/[^/]+$")
  local candidates = { root and root .. "/tests/harness/ddb_local.sh",
                       env.share_dir and env.share_dir .. "/harness/ddb_local.sh" }
  for _, path in pairs(candidates) do
    if readable(path) then return path end
  end
  fail("NotFound", "the local DynamoDB harness (ddb_local.sh) is not in "
       .. concat(candidates, " nor in "))
end

local function cmd_local(p)
  local command = shell_quote(harness_script()) .. " " .. p.words[1]
  if p.opts.port then command = command .. " --port " .. p.opts.port end
  io.stdout:flush()
  local ok, how, code = os.execute(command)
  if how == "signal" then return 128 + code end
  if ok and p.words[1] == "start" then
    local port = p.opts.port or getenv("DDB_LOCAL_PORT") or "8000"
    say("try it: ddbkit --endpoint http://127.0.0.1:", port, "\n")
  end
  return code
end

-- config -------------------------------------------------------------------------

-- Secrets show only their last 4 characters, and only when long enough
-- for that to reveal nothing useful.
local function mask(s)
  if #s >= 16 then return "****" .. s:sub(-4) end
  return "(set)"
end

local function credential_rows(cfg, client, err, placeholder)
  local explicit_profile = cfg.source.profile and not cfg.source.profile:match("^env AWS_")
  local id, secret = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
  if not client then return { { "client", "unusable: " .. err.code .. ": " .. err.message } } end
  if placeholder then
    return { { "credentials", "placeholder keys (none configured; the endpoint is local)" } }
  end
  if id and secret and not explicit_profile then
    local token = getenv("AWS_SESSION_TOKEN")
    return { { "access_key_id", mask(id), "env AWS_ACCESS_KEY_ID" },
             { "secret_access_key", mask(secret), "env AWS_SECRET_ACCESS_KEY" },
             { "session_token", token and "(set)" or "(not set)",
               token and "env AWS_SESSION_TOKEN" } }
  end
  local profile = cfg.value.profile or "default"
  return { { "credentials", "profile " .. profile .. " in "
             .. (getenv("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials") .. " or "
             .. (getenv("AWS_CONFIG_FILE") or "~/.aws/config") } }
end

local function cmd_config(_, cfg)
  local client, err, placeholder = new_client(cfg)
  local rows = {}
  for _, k in ipairs(KEYS) do
    local v, src = cfg.value[k.key], cfg.source[k.key]
    if v == nil and client and (k.key == "endpoint" or k.key == "region") then
      v, src = client[k.key](client), "engine default"
    elseif v == nil and k.key == "profile" then
      v, src = "default", "engine default"
    end
    rows[#rows + 1] = { k.key, v or "(not set)", src }
  end
  rows[#rows + 1] = { "config_file", cfg.file or "(none: no HOME)",
                      cfg.file and (cfg.file_found and "read" or "not found") }
  rows[#rows + 1] = { "history_file", cfg.history_file or "(none: no HOME)" }
  for _, r in ipairs(credential_rows(cfg, client, err, placeholder)) do rows[#rows + 1] = r end
  local w, vw = 0, 0
  for _, r in ipairs(rows) do
    w = math.max(w, #r[1])
    if r[3] then vw = math.max(vw, #r[2]) end
  end
  for _, r in ipairs(rows) do
    local line = r[1] .. (" "):rep(w - #r[1] + 2) .. r[2]
    if r[3] then line = line .. (" "):rep(vw - #r[2] + 2) .. "(" .. r[3] .. ")" end
    out(line, "\n")
  end
  return 0
end

-- main ---------------------------------------------------------------------------

local RUN = { repl = cmd_repl, run = cmd_run, table = cmd_table, ["local"] = cmd_local,
              config = cmd_config }

local function dispatch(p)
  if p.opts.version then out(version_text(), "\n") return 0 end
  if p.opts.help then out(HELP[p.explicit and p.cmd or "main"]) return 0 end
  check(p)
  return RUN[p.cmd](p, _M.config(p.opts))
end

-- The exit status for an error main() caught, after reporting it.
local function report(e, trace, debug_on)
  local mt = getmetatable(e)
  if mt == Usage then
    say("ddbkit: ", e.message, "; see 'ddbkit ", e.cmd and e.cmd .. " " or "", "--help'\n")
    return 2
  end
  if isatty(2) then say("\r\27[K") end   -- over a spinner line, if one was left
  if is_interrupt(e) then say("ddbkit: interrupted\n") return 130 end
  local text = error_text(e)
  if mt == Failure then text = (e.code and e.code .. ": " or "") .. e.message end
  say("ddbkit: ", text, "\n")
  if debug_on and trace then say((trace:gsub("^\n", "")), "\n") end
  return 1
end

-- xpcall(dispatch, handler, p). Waiting for a table is the one long wait
-- outside the REPL and scripts (which see to Ctrl-C themselves), so there
-- Ctrl-C raises "interrupted".
local function protected(p, handler)
  if p.cmd ~= "table" then return xpcall(dispatch, handler, p) end
  local r = table.pack(interruptible(xpcall, dispatch, handler, p))
  if r[1] then return table.unpack(r, 2, r.n) end
  return false, r[2]
end

--- cli.main(args) -> exit status
function _M.main(args)
  local p = split(args)
  p.debug = p.opts.debug == true or os.getenv("DDBKIT_DEBUG") == "1"
  local trace
  local ok, status = protected(p, function(e)
    trace = debug.traceback("", 2)
    return e
  end)
  if ok then return status or 0 end
  return report(status, trace, p.debug)
end

return _M
