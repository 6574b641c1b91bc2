-- ddbkit.repl: the interactive prompt of `ddbkit repl`. ddbkit.cli puts the
-- globals in place (client, stores, locks, idem, reload) and calls
--
--   repl.run{ le = require "ddbkit.lineedit", client = client, reload = fn,
--             debug = bool, history_file = path | nil, history_size = n }
--
-- Each input is compiled as "return <input>" first, so that an expression
-- prints its values; an input that ends too early (its syntax error is at
-- <eof>) continues on the next line. Runs with Ctrl-C turned into the error
-- "interrupted" (le.interruptible), prints results with ddbkit.pretty and
-- errors in red (when stdout is a terminal and NO_COLOR is not set).
local core = require "ddbkit.core"
local pretty = require "ddbkit.pretty"
local escape = pretty.escape

local type, next, getmetatable, rawget, tostring =
      type, next, getmetatable, rawget, tostring
local format, sort = string.format, table.sort
local pack, unpack = table.pack, table.unpack

local _M = { _VERSION = "0.1.0" }

local PROMPT, CONTINUE = "ddbkit> ", "    ...> "
local CHUNKNAME = "=input"

local HELP = [[
Globals:
  client             the ddbkit.client: client:get_item{ TableName = ..., Key = { ... } }
  cache, dedupe, rate_limit, adaptive
                     the stores on the store table: cache:get(key), rate_limit:acquire("api")
  locks(name, opts?) a lock on pk = sk = "LOCK#"..name of the store table:
                     h = locks("job"):acquire{ lease_ms = 5000 }; h:release()
  idem               ddbkit.idempotency on the idempotency table
  ddbkit             the module: ddbkit.null, ddbkit.set(...), ddbkit.binary(s), ...
  reload()           re-read the policy and strategy scripts, re-create the stores
Commands:
  :help              this help
  :stats             the client's request statistics
  :credentials       where the client's credentials come from and when they
                     expire (never the secret)
  :reload            the same as reload()
  :time EXPR         run EXPR; show its values, the time it took and the DynamoDB
                     requests it made through client
  :quit              exit (so does Ctrl-D)
An expression prints its values; an unfinished statement continues on the next
line, and Ctrl-C drops it (or stops what is running). Locals last for one input:
keep values in globals. Tab completes names, fields after '.', methods after ':'.
]]

-- Output -----------------------------------------------------------------------

local function write(...) io.stdout:write(...) end

local function red(s, text)
  if not s.color then return text end
  return "\27[31m" .. text .. "\27[0m"
end

-- A ddbkit error value (engine, store and idempotency errors all share
-- the engine's metatable).
local function is_error_value(v)
  return type(v) == "table" and getmetatable(v) == core.error_mt
end

-- The headline of an error and, for a table, its other fields. The code
-- and message come from a server (or a script): the headline is escaped
-- (pretty.escape) so they cannot drive the terminal; the rest is printed
-- by pretty.format, which escapes every string.
local function error_parts(e)
  if type(e) == "table" and type(e.code) == "string" then
    local rest
    for k, v in next, e do
      if k ~= "code" and k ~= "message" then
        rest = rest or {}
        rest[k] = v
      end
    end
    return escape(e.code .. ": " .. tostring(e.message)), rest
  end
  if type(e) == "string" then return escape(e) end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then return escape(tostring(e)) end
  return "error object: " .. pretty.format(e)
end

local function show_error(s, e, trace)
  local head, rest = error_parts(e)
  write(red(s, head), "\n")
  if rest then write(pretty.format(rest), "\n") end
  if trace then write(escape((trace:gsub("^\n", "")), true), "\n") end
end

-- Values print one per line; a ddbkit error among them (the err of
-- nil, err) prints as an error.
local function show_results(s, r)
  for i = 1, r.n do
    local v = r[i]
    if is_error_value(v) then show_error(s, v) else write(pretty.format(v), "\n") end
  end
end

-- Evaluation ---------------------------------------------------------------------

local function is_incomplete(err)
  return err ~= nil and err:sub(-5) == "<eof>"
end

-- The function of one input, or nil, "incomplete", or nil and the syntax
-- error. An input is incomplete when either reading ends at <eof>, so that
-- an expression left open ("{", "f(") continues as well as a statement.
local function compile(input)
  local fn, rerr = load("return " .. input, CHUNKNAME, "t")
  if fn then return fn end
  local err
  fn, err = load(input, CHUNKNAME, "t")
  if fn then return fn end
  if is_incomplete(err) or is_incomplete(rerr) then return nil, "incomplete" end
  return nil, err
end

-- Runs fn with Ctrl-C raising "interrupted": true and its results (packed),
-- or false, the error and (with debug) its traceback.
local function evaluate(s, fn)
  local trace
  local r = pack(s.le.interruptible(xpcall, fn, function(e)
    if s.debug then trace = debug.traceback("", 2) end
    return e
  end))
  if not r[1] then return false, r[2] end   -- raised outside fn: an interrupt just before or after
  if not r[2] then return false, r[3], trace end
  return true, pack(unpack(r, 3, r.n))
end

-- fn(s, ...) for what runs outside evaluate (showing results, commands):
-- if it raises (a __tostring that fails, a closed client), the error is
-- shown and the REPL carries on.
local function guarded(s, fn, ...)
  local ok, r = pcall(fn, s, ...)
  if ok then return r end
  show_error(s, r)
end

local function run_input(s, fn)
  local ok, r, trace = evaluate(s, fn)
  if ok then return guarded(s, show_results, r) end
  if r == "interrupted" then write("\n") end   -- past the terminal's "^C"
  show_error(s, r, trace)
end

-- Commands -----------------------------------------------------------------------

local COMMANDS = {}

function COMMANDS.help() write(HELP) end

function COMMANDS.stats(s) write(pretty.format(s.client:stats()), "\n") end

function COMMANDS.credentials(s) write(pretty.format(s.client:credentials()), "\n") end

function COMMANDS.reload(s)
  local ok, r = pcall(s.reload)
  if not ok then return show_error(s, r) end
  write(format("reloaded: policy %s, strategy %s\n", escape(r.policy), escape(r.strategy)))
end

local function duration_text(ms)
  if ms < 1000 then return format("%.1f ms", ms) end
  return format("%.2f s", ms / 1000)
end

function COMMANDS.time(s, expr)
  if expr == "" then return show_error(s, "usage: :time EXPR") end
  local fn, err = compile(expr)
  if not fn then
    return show_error(s, err == "incomplete" and "incomplete input: " .. expr or err)
  end
  local before, t0 = s.client:stats(), core.mono_ms()
  run_input(s, fn)
  local elapsed, after = core.mono_ms() - t0, s.client:stats()
  local requests, retries = after.requests - before.requests, after.retries - before.retries
  write(format("%s, %d DynamoDB request%s%s\n", duration_text(elapsed), requests,
               requests == 1 and "" or "s", retries > 0 and format(" (%d retries)", retries) or ""))
end

function COMMANDS.quit() return "quit" end

-- Runs ":name args"; "quit" when the REPL should end.
local function command(s, line)
  local name, args = line:match("^%s*:(%a+)%s*(.-)%s*$")
  local fn = COMMANDS[name]
  if not fn then return show_error(s, "unknown command :" .. tostring(name) .. " (see :help)") end
  return fn(s, args)
end

-- Completion ---------------------------------------------------------------------

local MAX_CHAIN = 32   -- __index chains can loop; completion gives up, never hangs

-- Calls fn(key, value) for the string keys of v (if a table) and of each
-- table along its metatables' __index chain. Only tables are walked:
-- completing never runs code (an __index function is not called).
local function each_field(v, fn)
  local seen = {}
  for _ = 1, MAX_CHAIN do
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in next, v do
        if type(k) == "string" then fn(k, x) end
      end
    end
    local mt = getmetatable(v)
    v = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(v) ~= "table" then return end
  end
end

-- v[k] as completion sees it: raw fields along the __index tables.
local function lookup(v, k)
  local found
  each_field(v, function(name, x)
    if found == nil and name == k then found = x end
  end)
  return found
end

local function command_candidates(word)
  local out = {}
  for name in next, COMMANDS do
    if (":" .. name):sub(1, #word) == word then out[#out + 1] = ":" .. name end
  end
  return out
end

local function name_candidates(word)
  local out, seen = {}, {}
  local function add(name)
    if not seen[name] and name:sub(1, #word) == word then
      seen[name] = true
      out[#out + 1] = name
    end
  end
  each_field(_G, function(k) if pretty.is_identifier(k) then add(k) end end)
  for k in next, pretty.KEYWORDS do add(k) end
  return out
end

-- "a.b.c:pa" -> the fields of a.b.c starting with "pa" (functions only
-- after ':'), each as the whole replacement "a.b.c:part".
local function field_candidates(head, sep, partial)
  local v = _G
  for part in (head .. "."):gmatch("(.-)%.") do
    if not pretty.is_identifier(part) then return {} end
    v = lookup(v, part)
    if v == nil then return {} end
  end
  local out, seen = {}, {}
  each_field(v, function(k, x)
    if not seen[k] and pretty.is_identifier(k) and k:sub(1, #partial) == partial
       and (sep == "." or type(x) == "function") then
      seen[k] = true
      out[#out + 1] = head .. sep .. k
    end
  end)
  return out
end

--- repl.complete(word, line_before_cursor) -> candidates (sorted)
function _M.complete(word, line)
  local head, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  local out
  if not head then
    out = name_candidates(word)
  elseif head == "" and sep == ":" and line:match("^%s*:%a*$") then
    out = command_candidates(word)
  elseif head == "" then
    out = {}
  else
    out = field_candidates(head, sep, partial)
  end
  sort(out)
  return out
end

-- History -----------------------------------------------------------------------

local function open_history(s)
  s.le.stifle_history(s.history_size or 1000)
  if s.history_file then s.le.read_history(s.history_file) end   -- none yet is fine
end

-- Written aside, then renamed over the old file: a REPL killed while
-- writing (its terminal closed) leaves the old history, not half of one.
local function save_history(s)
  -- Piped input is a script, not something the user typed: not history.
  if not s.history_file or not s.le.isatty(0) then return end
  s.le.stifle_history(s.history_size or 1000)
  local tmp = s.history_file .. ".new"
  local ok, err = s.le.write_history(tmp)
  if ok then ok, err = os.rename(tmp, s.history_file) end
  if not ok then io.stderr:write("ddbkit: history not saved: ", tostring(err), "\n") end
end

-- The loop ----------------------------------------------------------------------

local function color_wanted(le)
  local no_color = os.getenv("NO_COLOR")
  return le.isatty(1) and (no_color == nil or no_color == "")
end

--- repl.run(s) -> exit status (0): reads, evaluates and prints until
-- Ctrl-D or :quit, then saves the history.
function _M.run(s)
  s.color = color_wanted(s.le)
  open_history(s)
  s.le.set_completer(_M.complete)
  local pending   -- the lines of an unfinished input
  while true do
    io.stdout:flush()
    local line = s.le.readline(pending and CONTINUE or PROMPT)
    if line == nil then
      write("\n")
      break
    elseif line == false then
      pending = nil
    elseif not pending and line:match("^%s*:%a") then
      s.le.add_history(line)
      if guarded(s, command, line) == "quit" then break end
    elseif pending or line:match("%S") then
      local input = pending and pending .. "\n" .. line or line
      local fn, err = compile(input)
      pending = err == "incomplete" and input or nil
      if not pending then
        s.le.add_history(input)
        if fn then run_input(s, fn) else show_error(s, err) end
      end
    end
  end
  save_history(s)
  return 0
end

return _M
