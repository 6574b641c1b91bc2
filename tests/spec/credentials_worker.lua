-- One case of credentials_chain_spec.lua (and tls_spec.lua), run as its own
-- OS process, because the credential chain reads the environment and Lua
-- cannot set one:
--
--   env -i HOME=... AWS_...=... lua credentials_worker.lua PLAN.json
--
-- Makes `ddbkit.client{}` with nothing but what the environment and the
-- files under HOME say (plus `runtime` for the coroutine runtime, and
-- `profile` when plan.profile says so), then
-- makes DynamoDB calls (ListTables, Limit 1):
--   * at least plan.calls of them;
--   * when plan.wait is set, more, paced by plan.pause_ms, until the fake
--     credential services have issued plan.wait.count credential sets that
--     match plan.wait.query (GET /_issued?<query>), i.e. until the client
--     has gone through that many rotations; bounded by plan.max_seconds;
--   * with plan.until_failed = n, until n calls have failed (the same
--     bound).
-- Coroutine runtime: plan.tasks tasks make the calls at once, so a refresh
-- finds several callers waiting (single flight).
--
-- Prints one line "RESULT <json>": { client_error = {code, message}?,
-- calls, ok, failed, errors = { {code, message, retryable}, ... } (each
-- distinct one once), first_ms (the first call's duration), issued (the
-- last count seen), waited_out (true when max_seconds ran out first),
-- info = client:credentials() }. Exit status 0 unless the worker itself
-- broke. Everything a test could grep for secrets is this process's
-- output: the spec greps all of it.
local cjson = require "cjson.safe"

local plan_file = arg[1]
local f = plan_file and io.open(plan_file, "r")
if not f then
  io.stderr:write("usage: credentials_worker.lua PLAN.json\n")
  os.exit(2)
end
local plan = assert(cjson.decode(f:read("*a")), "bad plan")
f:close()

local ddbkit = require "ddbkit"
local core = require "ddbkit.core"

local out = { calls = 0, ok = 0, failed = 0, errors = {} }
local seen = {}

local function report()
  io.stdout:write("RESULT ", cjson.encode(out), "\n")
  io.stdout:flush()
end

local function note_error(err)
  local code = type(err) == "table" and err.code or tostring(err)
  local msg = type(err) == "table" and err.message or nil
  local k = tostring(code) .. "\0" .. tostring(msg)
  if not seen[k] then
    seen[k] = true
    out.errors[#out.errors + 1] = { code = code, message = msg,
      retryable = type(err) == "table" and err.retryable or nil }
  end
end

-- How many credential sets the fake issued that match plan.wait.query.
local function issued()
  local p = io.popen("env -u LD_PRELOAD curl -s -m 5 " .. string.format("%q", plan.wait.url .. "/_issued?" .. plan.wait.query))
  local body = p:read("*a")
  p:close()
  local list = cjson.decode(body or "")
  return type(list) == "table" and #list or -1
end

-- Nothing but the runtime, unless a case names a profile explicitly (as
-- `aws --profile` does: see credentials_chain_spec's credential_source case).
local opts = { profile = plan.profile }
local rt
if plan.runtime == "coroutine" then
  rt = require "ddbkit.runtime.coroutine"
  opts.runtime = rt
end

local client, cerr = ddbkit.client(opts)
if not client then
  out.client_error = { code = cerr and cerr.code, message = cerr and cerr.message }
  report()
  os.exit(0)
end

local deadline = core.mono_ms() + (plan.max_seconds or 60) * 1000
local pause = plan.pause_ms or 250
local want_calls = plan.calls or 1

local function done()
  if plan.until_failed then return out.failed >= plan.until_failed end
  if out.calls < want_calls then return false end
  if not plan.wait then return true end
  out.issued = issued()
  return out.issued >= plan.wait.count
end

local function one_call()
  local t0 = core.mono_ms()
  local res, err = client:list_tables{ Limit = 1 }
  if out.calls == 0 then out.first_ms = core.mono_ms() - t0 end
  out.calls = out.calls + 1
  if res then
    out.ok = out.ok + 1
  else
    out.failed = out.failed + 1
    note_error(err)
  end
end

local finished = false
local function loop(sleep)
  while not finished do
    one_call()
    if done() then finished = true break end
    if core.mono_ms() > deadline then
      out.waited_out = true
      finished = true
      break
    end
    sleep(pause)
  end
end

local ok, perr
if rt then
  local ntasks = plan.tasks or 1
  for _ = 1, ntasks do
    ddbkit.spawn(function()
      local okk, e = pcall(loop, rt.sleep)
      if not okk then ok, perr = false, e end
    end)
  end
  ok = true
  while ddbkit.step(100) > 0 do
    if core.mono_ms() > deadline + 30000 then break end
  end
  -- A refresh runs beside the calls on the loop: the fake may have sent the
  -- last set (and the count above seen it) while its answer still waits to
  -- be read. One more task calls until the client has taken it (bounded),
  -- so info.fetches counts every set the fake issued.
  if plan.wait and out.issued and out.issued > 0 then
    ddbkit.run(function()
      local until_ms = core.mono_ms() + 10000
      while core.mono_ms() < until_ms do
        local i = client:credentials()
        if (i and i.fetches or 0) >= out.issued then break end
        one_call()
        rt.sleep(50)
      end
    end)
  end
else
  ok, perr = pcall(loop, core.sleep_ms)
end
if not ok then
  out.raised = tostring(perr)
end

local iok, info = pcall(client.credentials, client)
out.info = iok and info or { unavailable = tostring(info) }
client:close()
report()
os.exit(ok and 0 or 1)
