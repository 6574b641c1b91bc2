-- One process of idempotency_contention_spec.lua:
--
--   lua idempotency_worker.lua ENDPOINT TABLE DIR OUTFILE BEHAVIOUR PREFIX N [NAME=VALUE ...]
--
-- Calls idem:execute(key) on the keys PREFIX-1 .. PREFIX-N, in an order of
-- its own (shuffled, seeded from core.mono_ms, so that concurrent workers
-- collide on keys). Every handler run first appends one line "<pid>" to
-- DIR/<key>.log (opened in "a" mode, written, closed). Then, by BEHAVIOUR:
--   ok         the handler returns { key = key, by = "<pid>", n = 1 };
--   fail       it raises { name = "Declined", message = "no <key>", status = 402 };
--   hang       it publishes the marker file (NAME marker) with "<pid>" and
--              blocks forever (the test kills the process with SIGKILL);
--   done-hang  as ok; once every call returned and OUTFILE is written, it
--              publishes the marker with "<pid>" and blocks forever.
-- NAME=VALUE options: marker=PATH and go=PATH (wait, bounded, until PATH
-- exists before the first call) are the worker's; every other one goes to
-- ddbkit.idempotency.new (mode=compat|fast, lock_ttl_ms=..., numbers as
-- numbers).
--
-- OUTFILE gets one line per key, in the worker's call order:
--   "<key> OK <result.key> <result.by> <result.n>"
--   "<key> ERR <err.code> <err.name> <err.status> <err.message>"
-- Exits 0 once every call returned (a result or an error value); when a
-- call raises, or anything else fails, prints why on stderr and exits 1.
local endpoint, table_name, dir, outfile, behaviour, prefix, n =
  arg[1], arg[2], arg[3], arg[4], arg[5], arg[6], tonumber(arg[7])
local BEHAVIOURS = { ok = true, fail = true, hang = true, ["done-hang"] = true }
if not (endpoint and table_name and dir and outfile and prefix and n and BEHAVIOURS[behaviour]) then
  io.stderr:write("usage: idempotency_worker.lua ENDPOINT TABLE DIR OUTFILE "
                  .. "ok|fail|hang|done-hang PREFIX N [NAME=VALUE ...]\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local idempotency = require "ddbkit.idempotency"
local W = require "worker_util"
local exists = W.exists

local SIGNAL_WAIT_MS = 60000

local pid = W.my_pid()

local function fail(what, err)
  local msg = type(err) == "table" and (tostring(err.code) .. ": " .. tostring(err.message)) or tostring(err)
  io.stderr:write(string.format("idempotency_worker %s: %s: %s\n", pid, what, msg))
  os.exit(1)
end

local opts, marker, go = {}, nil, nil
for i = 8, #arg do
  local name, value = arg[i]:match("^([%w_]+)=(.*)$")
  if not name then fail("bad option", arg[i]) end
  if name == "marker" then
    marker = value
  elseif name == "go" then
    go = value
  else
    opts[name] = tonumber(value) or value
  end
end
if (behaviour == "hang" or behaviour == "done-hang") and not marker then
  fail("options", behaviour .. " needs marker=PATH")
end

-- Files another process waits for are published by rename: never seen half written.
local function publish(path, text)
  local ok, err = W.publish(path, text)
  if not ok then fail("publish " .. path, err) end
end

local function block_forever()
  while true do core.sleep_ms(50) end
end

-- LuaJIT starts every process with the same random sequence.
math.randomseed((math.floor(core.mono_ms() * 1000) + tonumber(pid)) % 2147483647)

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end
opts.client = client
opts.table_name = table_name
local okn, idem = pcall(idempotency.new, opts)
if not okn then fail("idempotency.new", idem) end

local function append_log(key)
  local f = io.open(dir .. "/" .. key .. ".log", "a")
  if not f then error("cannot open the log of " .. key) end
  f:write(pid, "\n")
  f:close()
end

local handlers = {
  ok = function(key)
    append_log(key)
    return { key = key, by = pid, n = 1 }
  end,
  fail = function(key)
    append_log(key)
    error({ name = "Declined", message = "no " .. key, status = 402 })
  end,
  hang = function(key)
    append_log(key)
    publish(marker, pid .. "\n")
    block_forever()
  end,
}
handlers["done-hang"] = handlers.ok
local handler = handlers[behaviour]

local keys = {}
for i = 1, n do keys[i] = prefix .. "-" .. i end
for i = n, 2, -1 do
  local j = math.random(i)
  keys[i], keys[j] = keys[j], keys[i]
end

local out = io.open(outfile, "w")
if not out then fail("cannot write " .. outfile) end

if go then
  local deadline = core.mono_ms() + SIGNAL_WAIT_MS
  while not exists(go) do
    if core.mono_ms() > deadline then fail("wait", "no go signal within " .. SIGNAL_WAIT_MS .. " ms") end
    core.sleep_ms(5)
  end
end

local function flat(s) return (tostring(s):gsub("[\r\n]", " ")) end

for _, key in ipairs(keys) do
  local called, res, err = pcall(idem.execute, idem, key, nil, function() return handler(key) end)
  if not called then fail("execute(" .. key .. ") raised", res) end
  if res ~= nil then
    if type(res) ~= "table" then fail("execute(" .. key .. ")", "a result that is not a table: " .. tostring(res)) end
    out:write(string.format("%s OK %s %s %s\n", key, flat(res.key), flat(res.by), flat(res.n)))
  elseif type(err) == "table" then
    if not err.handler_error then
      io.stderr:write(string.format("idempotency_worker %s: execute(%s): %s %s\n",
                                    pid, key, tostring(err.code), flat(err.message)))
    end
    out:write(string.format("%s ERR %s %s %s %s\n", key, flat(err.code), flat(err.name),
                            flat(err.status), flat(err.message)))
  else
    fail("execute(" .. key .. ")", "returned neither a result nor an error table")
  end
end
out:close()

if behaviour == "done-hang" then
  publish(marker, pid .. "\n")
  block_forever()
end

client:close()
os.exit(0)
