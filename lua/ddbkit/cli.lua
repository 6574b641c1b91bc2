-- ddbkit.cli: the `ddbkit` command. The executable (bindings/cli/main.c)
-- calls main(args) with argv[1..] and exits with what it returns.
--
--   ddbkit [repl] | -e EXPR | run SCRIPT [ARGS] | table ACTION | local ACTION
--          | config | scan | query PK | get PK [SK] | help [TOPIC]
--
-- This file parses the command line, dispatches to the subcommands and
-- reports what went wrong. The rest lives under ddbkit.cli.*: help (the
-- texts), errors (what is raised and how it reads), config (resolving the
-- configuration: flags, then the environment, then the config file, then
-- defaults; and the client), globals (the environment the REPL and scripts
-- share: client, stores, locks, idem) and table (the table subcommand).
-- Exit statuses: 0 done; 1 a failure (one line "ddbkit: code: message",
-- the traceback only with --debug); 2 a usage error (one line naming the
-- help to read); 130 interrupted by Ctrl-C. With --output json every error
-- is one JSON line {"code":...,"message":...} on stderr instead.
local config = require "ddbkit.cli.config"
local errors = require "ddbkit.cli.errors"
local globals = require "ddbkit.cli.globals"
local HELP = require "ddbkit.cli.help"
local tables = require "ddbkit.cli.table"
local output = require "ddbkit.cli.output"
local core = require "ddbkit.core"

local pairs, ipairs, getmetatable, tonumber, pcall = pairs, ipairs, getmetatable, tonumber, pcall
local concat = table.concat
local usage, fail, error_text, is_interrupt =
      errors.usage, errors.fail, errors.text, errors.is_interrupt
local getenv, connect = config.getenv, config.connect
-- Everything printed that a server, a config file or a script said goes
-- through this one escaping (the pretty printer's).
local escape = require("ddbkit.pretty").escape

local _M = { _VERSION = "0.1.0" }

local function out(...) io.stdout:write(...) end
local function say(...) io.stderr:write(...) end

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

-- Command line ------------------------------------------------------------------

-- Every option: the name of its value, or false for a flag.
local OPTIONS = {
  endpoint = "URL", region = "R", profile = "P", table = "NAME", name = "N", schema = "KIND",
  port = "P", debug = false, help = false, version = false, output = "FORMAT", yes = false,
  limit = "N", index = "NAME", ["page-size"] = "N",
}
-- The short options: their long names.
local SHORT = { ["-h"] = "help", ["-o"] = "output", ["-e"] = "eval" }
local EVERYWHERE = { endpoint = true, region = true, profile = true, debug = true,
                     help = true, version = true }

-- words: the number of arguments a command takes (min, max).
local COMMANDS = {
  repl = { options = { table = true } },
  eval = { options = { table = true } },   -- -e EXPR
  run = { options = { table = true } },
  table = { options = { name = true, table = true, schema = true, yes = true },
            actions = { "create", "describe", "delete", "ttl" } },
  ["local"] = { options = { port = true }, actions = { "start", "stop", "status" } },
  config = { options = { table = true } },
  scan = { options = { table = true, limit = true, index = true, ["page-size"] = true },
           words = { 0, 0 } },
  query = { options = { table = true, limit = true, index = true, ["page-size"] = true },
            words = { 1, 1 },
            usage = "'ddbkit query' needs PK, the partition key's value" },
  get = { options = { table = true }, words = { 1, 2 },
          usage = "'ddbkit get' needs PK (and SK when the table has a sort key)" },
  help = { options = {}, words = { 0, 1 } },
}
-- --output applies to every command but the REPL, which prints for a person.
for cmd, spec in pairs(COMMANDS) do
  if cmd ~= "repl" and cmd ~= "help" then spec.options.output = true end
end

-- Reads one option at args[i]; returns its name, its value (true for a
-- flag) and the index of the next argument, or nil and what is wrong.
local function read_option(args, i)
  local a = SHORT[args[i]] and "--" .. SHORT[args[i]] or args[i]
  if a == "--eval" then   -- -e only: no --eval, so it reads as the one-liner it is
    local v = args[i + 1]
    if not v then return nil, "option -e needs a value (EXPR)" end
    return "eval", v, i + 2
  end
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
    elseif SHORT[a] or a:match("^%-%-.") then
      local name, value, next_i = read_option(args, i)
      if name == "eval" then
        if p.expr then p.problem = p.problem or "option -e given twice" end
        p.expr = value
      elseif name then
        p.opts[name] = value
      else
        p.problem = p.problem or value
      end
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
  if p.expr then
    if p.cmd and p.cmd ~= "repl" then
      p.problem = p.problem or "-e EXPR does not go with 'ddbkit " .. p.cmd .. "'"
    end
    p.cmd, p.explicit = "eval", false
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
  elseif spec.words then
    if #words < spec.words[1] then usage(cmd, spec.usage) end
    if words[spec.words[2] + 1] then
      usage(cmd, "unexpected argument '" .. words[spec.words[2] + 1] .. "'")
    end
  elseif words[1] then
    usage(ucmd, "unexpected argument '" .. words[1] .. "'")
  end
  local fmt = p.opts.output
  if fmt and fmt ~= "text" and fmt ~= "json" then
    usage(ucmd, "--output must be text or json, not '" .. fmt .. "'")
  end
  local name, tname = p.opts.name, p.opts.table
  if name and tname and name ~= tname then
    usage(cmd, "--name " .. name .. " and --table " .. tname .. " name different tables")
  end
  if p.opts.yes and words[1] ~= "delete" then
    usage(cmd, "option --yes applies to 'ddbkit table delete' only")
  end
  for _, o in ipairs({ "limit", "page-size" }) do
    local v = p.opts[o]
    local n = v and math.tointeger(tonumber(v))
    if v and (not v:match("^%d+$") or not n or n < 1) then
      usage(cmd, "--" .. o .. " must be a positive integer, not '" .. v .. "'")
    end
  end
  if cmd == "help" and words[1] and not HELP[words[1]] then
    usage("help", "no help on '" .. words[1] .. "'; topics: " .. _M.topics())
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
  local ok, err = globals.install(_G, cfg, client)
  local v = cfg.value
  if le.isatty(0) then   -- piped input gets its results only
    out(version_text(), "  endpoint ", escape(client:endpoint()), "  table ", escape(v.table), "\n",
        "Type :help for help, Ctrl-D to exit.\n")
  end
  if not ok then
    say("warning: the stores are not loaded: ", escape(err), "\n",
        "         fix the script and type :reload\n")
  end
  return require("ddbkit.repl").run{
    le = le, client = client, reload = _G.reload, debug = p.debug,
    history_file = cfg.history_file, history_size = math.tointeger(tonumber(v.history_size)),
    tables = { store = v.table, idempotency = v.idempotency_table },
  }
end

-- run ----------------------------------------------------------------------------

local script_failed, raw_message

-- The text of an error, unescaped (JSON escapes it).
raw_message = function(e)
  if type(e) == "string" then return e end
  local ok, t = pcall(tostring, e)
  return ok and t or "(error object is a " .. type(e) .. " value)"
end

-- The traceback without the frames of ddbkit itself (from xpcall down).
local function script_traceback()
  local tb = debug.traceback("", 3)
  local cut = tb:find("\n[^\n]*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

-- Reports an error a script or -e raised; returns the exit status.
script_failed = function(p, e, trace)
  if is_interrupt(e) then
    if p.json then say(output.error_json("Interrupted", "interrupted"), "\n")
    else say("ddbkit: interrupted\n") end
    return 130
  end
  if p.json then
    local code = type(e) == "table" and type(e.code) == "string" and e.code or "ScriptError"
    local msg = type(e) == "table" and e.message ~= nil and tostring(e.message) or raw_message(e)
    say(output.error_json(code, msg), "\n")
  else
    say("ddbkit: ", error_text(e), p.debug and escape(trace or "", true) or "", "\n")
  end
  return 1
end

local function cmd_run(p, cfg)
  local client = connect(cfg)
  local ok, err = globals.install(_G, cfg, client)
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
  -- One line, as every failure; the script's traceback with --debug.
  return script_failed(p, e, trace)
end

-- table --------------------------------------------------------------------------

local function cmd_table(p, cfg)
  local kind = tables.SCHEMAS[p.opts.schema or "store"]
  -- --table names the table here as everywhere (--name is its older name);
  -- cfg.value.table already holds --table for the store schema.
  local name = p.opts.name or p.opts.table or cfg.value[kind.config_key]
  if p.words[1] == "delete" then tables.confirm_delete(name, p.opts.yes, isatty(0)) end
  tables.run(p.words[1], connect(cfg), name, kind, isatty(2), p.out)
  return 0
end

-- -e EXPR ------------------------------------------------------------------------

-- EXPR as the REPL reads a line: an expression (its values printed), else
-- a statement (nothing printed unless it returns).
local function compile(expr)
  local fn = load("return " .. expr, "=(-e)", "t")
  if fn then return fn end
  local err
  fn, err = load(expr, "=(-e)", "t")
  if not fn then usage(nil, "-e: " .. err) end
  return fn
end

local function is_error_value(v)
  return type(v) == "table" and getmetatable(v) == core.error_mt
end

local function cmd_eval(p, cfg)
  local fn = compile(p.expr)
  local client = connect(cfg)
  local ok, err = globals.install(_G, cfg, client)
  if not ok then fail("PolicyError", err) end
  local trace
  local r = table.pack(interruptible(xpcall, fn, function(e)
    trace = debug.traceback("", 2)
    return e
  end))
  if not r[1] then return script_failed(p, r[2]) end
  if not r[2] then return script_failed(p, r[3], trace) end
  -- nil, err (a ddbkit error among the values): the expression failed.
  for i = 3, r.n do
    if is_error_value(r[i]) then return script_failed(p, r[i]) end
  end
  for i = 3, r.n do
    local shown, jerr = p.out:value(r[i])
    if not shown then fail("JSONError", "value " .. (i - 2) .. " has no JSON form: " .. jerr) end
  end
  return 0
end

-- scan, query, get ---------------------------------------------------------------

-- The table's key attribute names (a DescribeTable): hash, range (or nil).
local function key_names(client, name, index)
  local res, err = client:describe_table{ TableName = name }
  if not res then
    if err.code == "ResourceNotFoundException" then
      fail(err.code, "table " .. name .. " not found at " .. client:endpoint())
    end
    fail(err.code, err.message)
  end
  local schema = res.Table.KeySchema
  if index then
    schema = nil
    for _, g in ipairs(res.Table.GlobalSecondaryIndexes or {}) do
      if g.IndexName == index then schema = g.KeySchema end
    end
    for _, g in ipairs(res.Table.LocalSecondaryIndexes or {}) do
      if g.IndexName == index then schema = g.KeySchema end
    end
    if not schema then fail("ValidationException", "table " .. name .. " has no index " .. index) end
  end
  local hash, range
  for _, k in ipairs(schema or {}) do
    if k.KeyType == "HASH" then hash = k.AttributeName else range = k.AttributeName end
  end
  return hash, range
end

-- Prints every item of a paginated Scan or Query as it arrives, page by
-- page (--limit: at most that many items in all; --page-size: at most that
-- many per request). Returns 0.
local function print_pages(p, call, params)
  local limit = p.opts.limit and math.tointeger(tonumber(p.opts.limit))
  local page = p.opts["page-size"] and math.tointeger(tonumber(p.opts["page-size"]))
  local shown = 0
  repeat
    params.Limit = page
    if limit and (not page or limit - shown < page) then params.Limit = limit - shown end
    local res, err = call(params)
    if not res then fail(err.code, err.message) end
    for _, item in ipairs(res.Items or {}) do
      local ok, jerr = p.out:value(item)
      if not ok then fail("JSONError", "an item has no JSON form: " .. jerr) end
      shown = shown + 1
    end
    params.ExclusiveStartKey = res.LastEvaluatedKey
  until not params.ExclusiveStartKey or (limit and shown >= limit)
  return 0
end

local function cmd_scan(p, cfg)
  local client = connect(cfg)
  return print_pages(p, function(q) return client:scan(q) end,
                     { TableName = cfg.value.table, IndexName = p.opts.index })
end

local function cmd_query(p, cfg)
  local client = connect(cfg)
  local name = cfg.value.table
  local hash = key_names(client, name, p.opts.index)
  return print_pages(p, function(q) return client:query(q) end, {
    TableName = name, IndexName = p.opts.index, KeyConditionExpression = "#k = :v",
    ExpressionAttributeNames = { ["#k"] = hash },
    ExpressionAttributeValues = { [":v"] = p.words[1] } })
end

local function cmd_get(p, cfg)
  local client = connect(cfg)
  local name = cfg.value.table
  local hash, range = key_names(client, name)
  if range and not p.words[2] then
    usage("get", "table " .. name .. " has a sort key (" .. range .. "): give PK and SK")
  end
  if not range and p.words[2] then
    usage("get", "table " .. name .. " has no sort key: give PK only")
  end
  local key = { [hash] = p.words[1] }
  if range then key[range] = p.words[2] end
  local res, err = client:get_item{ TableName = name, Key = key }
  if not res then fail(err.code, err.message) end
  if not res.Item then fail("NotFound", "no item with that key in table " .. name) end
  local ok, jerr = p.out:value(res.Item)
  if not ok then fail("JSONError", "the item has no JSON form: " .. jerr) end
  return 0
end

-- help ---------------------------------------------------------------------------

--- cli.topics(): the topics of 'ddbkit help TOPIC', comma-separated.
function _M.topics()
  local t = {}
  for k in pairs(HELP) do if k ~= "main" then t[#t + 1] = k end end
  table.sort(t)
  return concat(t, ", ")
end

local function cmd_help(p)
  out(HELP[p.words[1] or "main"])
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

local function cmd_config(p, cfg)
  local client, err, placeholder = config.new_client(cfg)
  local rows = {}
  for _, k in ipairs(config.KEYS) do
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
  p.out:rows(rows)
  return 0
end

-- main ---------------------------------------------------------------------------

local RUN = { repl = cmd_repl, run = cmd_run, table = cmd_table, ["local"] = cmd_local,
              config = cmd_config, eval = cmd_eval, scan = cmd_scan, query = cmd_query,
              get = cmd_get, help = cmd_help }

local function dispatch(p)
  if p.opts.version then out(version_text(), "\n") return 0 end
  if p.opts.help then out(HELP[p.explicit and p.cmd or "main"]) return 0 end
  check(p)
  return RUN[p.cmd](p, config.resolve(p.opts))
end

-- The exit status for an error main() caught, after reporting it.
local function report(e, trace, debug_on, json)
  local mt = getmetatable(e)
  if json then
    local code, msg
    if mt == errors.Usage then code, msg = "UsageError", e.message
    elseif is_interrupt(e) then code, msg = "Interrupted", "interrupted"
    elseif type(e) == "table" and type(e.code) == "string" then code, msg = e.code, tostring(e.message)
    else code, msg = "Error", raw_message(e) end
    say(output.error_json(code, msg), "\n")
    return mt == errors.Usage and 2 or is_interrupt(e) and 130 or 1
  end
  if mt == errors.Usage then
    say("ddbkit: ", escape(e.message), "; see 'ddbkit ", e.cmd and escape(e.cmd) .. " " or "",
        "--help'\n")
    return 2
  end
  if isatty(2) then say("\r\27[K") end   -- over a spinner line, if one was left
  if is_interrupt(e) then say("ddbkit: interrupted\n") return 130 end
  say("ddbkit: ", error_text(e), "\n")
  if debug_on and trace then say(escape((trace:gsub("^\n", "")), true), "\n") end
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
  p.json = p.opts.output == "json"
  p.out = output.new(p.opts.output)
  local trace
  local ok, status = protected(p, function(e)
    trace = debug.traceback("", 2)
    return e
  end)
  if ok then return status or 0 end
  return report(status, trace, p.debug, p.json)
end

return _M
