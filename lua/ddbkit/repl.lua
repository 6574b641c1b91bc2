-- ddbkit.repl: the interactive prompt of `ddbkit repl`. ddbkit.cli puts the
-- globals in place (client, stores, locks, idem, reload) and calls
--
--   repl.run{ le = require "ddbkit.lineedit", client = client, reload = fn,
--             debug = bool, history_file = path | nil, history_size = n,
--             tables = { store = name, idempotency = name } } -> exit status
--
-- Each input is compiled as "return <input>" first, so that an expression
-- prints its values; an input that ends too early (its syntax error is at
-- <eof>) continues on the next line. Inputs run in one environment (its
-- misses fall through to _G) where their top-level locals stay
-- (ddbkit.repl.locals). Runs with Ctrl-C turned into the error
-- "interrupted" (le.interruptible), prints results with ddbkit.pretty and
-- errors in red (when stdout is a terminal and NO_COLOR is not set).
--
-- Input that is not a terminal (a pipe, a file) is read the same way, and
-- the exit status says whether all of it went well: 1 when any input
-- failed (raised, did not compile, or printed a ddbkit error value, as in
-- `nil, err`), else 0. Every input runs, as at the prompt, so the output
-- is the whole transcript. At a terminal the status is 0.
local core = require "ddbkit.core"
local pretty = require "ddbkit.pretty"
local complete = require "ddbkit.repl.complete"
local locals = require "ddbkit.repl.locals"
local escape = pretty.escape

local type, next, ipairs, getmetatable, setmetatable, tostring =
      type, next, ipairs, getmetatable, setmetatable, tostring
local format = string.format
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
  :lock NAME [--watch MS]
                     the lock locks(NAME): state, holder, fence, lease, expiry,
                     and whether the holder renews (watched up to MS, default
                     2000, or until the lease ends)
  :limit RESOURCE    rate_limit's RESOURCE: grants in the window, remaining,
                     next free slot, cooldown (Node and native layouts)
  :idem KEY          the idempotency record of cache key KEY: state, owner,
                     stored result
  :cache HASH        the cache entry HASH: value, expiry, tags
                     (each of these four takes --output json: one JSON line)
  :quit              exit (so does Ctrl-D)
An expression prints its values (trailing nils left out: `true, nil` prints
true); an unfinished statement continues on the next line, and Ctrl-C drops it
(or stops what is running). `local x = ...` at the top of an input keeps x for
the next inputs. Tab completes names, fields after '.', methods after ':'
(the public API only).
Input from a pipe or a file runs the same way, without the banner; the exit
status is 1 when any input failed (an error raised or shown), else 0.
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
  s.failures = (s.failures or 0) + 1
  local head, rest = error_parts(e)
  write(red(s, head), "\n")
  if rest then write(pretty.format(rest), "\n") end
  if trace then write(escape((trace:gsub("^\n", "")), true), "\n") end
end

-- Values print one per line; a ddbkit error among them (the err of
-- nil, err) prints as an error. Trailing nils are left out (a call that
-- answers `true, nil` prints true), unless all are nil: then one nil.
local function show_results(s, r)
  local n = r.n
  while n > 1 and r[n] == nil do n = n - 1 end
  for i = 1, n do
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
local function compile(s, input)
  local fn, rerr = load("return " .. input, CHUNKNAME, "t", s.env)
  if fn then return fn end
  local err
  fn, err = load(locals.rewrite(input), CHUNKNAME, "t", s.env)
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

-- A latency in ms from µs, to 3 significant digits (0.0423, 1.24, 12.3,
-- 124, 1240): as precise as one request's timing is worth.
local function ms3(us)
  if type(us) ~= "number" or us ~= us then return us end
  local v = tonumber(format("%.3g", us / 1000))
  return math.tointeger(v) or v
end

-- The client's stats, its latencies (the engine's µs) as latency_ms.
function COMMANDS.stats(s)
  local st = s.client:stats()
  local lat = st.latency_us
  if type(lat) == "table" then
    local ms = {}
    for k, v in next, lat do ms[k] = k == "count" and v or ms3(v) end
    st.latency_us, st.latency_ms = nil, ms
  end
  write(pretty.format(st), "\n")
end

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
  local fn, err = compile(s, expr)
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

-- The record views (ddbkit.repl.inspect), loaded on first use.
for _, name in ipairs({ "lock", "limit", "idem", "cache" }) do
  COMMANDS[name] = function(s, args)
    -- :lock may watch for seconds: Ctrl-C stops it, as it stops an input.
    local ok, text, err = s.le.interruptible(require("ddbkit.repl.inspect").run, s, name, args)
    if not ok then
      if text == "interrupted" then write("\n") end
      return show_error(s, text)
    end
    if text == nil then return show_error(s, err) end
    write(text)
  end
end

-- Runs ":name args"; "quit" when the REPL should end.
local function command(s, line)
  local name, args = line:match("^%s*:(%a+)%s*(.-)%s*$")
  local fn = COMMANDS[name]
  if not fn then return show_error(s, "unknown command :" .. tostring(name) .. " (see :help)") end
  return fn(s, args)
end

-- Completion ---------------------------------------------------------------------

--- repl.complete(word, line_before_cursor, env?) -> candidates (sorted);
-- see ddbkit.repl.complete for what is offered.
function _M.complete(word, line, env)
  return complete.candidates(word, line, env or _G, COMMANDS)
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

--- repl.env() -> a fresh environment for the inputs: what they assign
-- (and their top-level locals) goes there; reads fall through to _G, so
-- the globals ddbkit.cli put in place (client, the stores, reload's new
-- ones) are seen.
function _M.env()
  return setmetatable({}, { __index = _G })
end

--- repl.run(s) -> exit status: reads, evaluates and prints until Ctrl-D,
-- :quit or the end of the input, then saves the history. 0, or 1 when
-- the input is not a terminal and any of it failed.
function _M.run(s)
  s.color = color_wanted(s.le)
  s.env = s.env or _M.env()
  s.failures = 0
  open_history(s)
  s.le.set_completer(function(word, line) return _M.complete(word, line, s.env) end)
  local pending   -- the lines of an unfinished input
  while true do
    io.stdout:flush()
    local line = s.le.readline(pending and CONTINUE or PROMPT)
    if line == nil then
      if s.le.isatty(0) then write("\n") end   -- past the terminal's ^D
      if pending then show_error(s, "incomplete input at the end: " .. pending) end
      break
    elseif line == false then
      pending = nil
    elseif not pending and line:match("^%s*:%a") then
      s.le.add_history(line)
      if guarded(s, command, line) == "quit" then break end
    elseif pending or line:match("%S") then
      local input = pending and pending .. "\n" .. line or line
      local fn, err = compile(s, input)
      pending = err == "incomplete" and input or nil
      if not pending then
        s.le.add_history(input)
        if fn then run_input(s, fn) else show_error(s, err) end
      end
    end
  end
  save_history(s)
  if s.failures > 0 and not s.le.isatty(0) then return 1 end
  return 0
end

return _M
