-- One process of dedupe_contention_spec.lua:
--
--   lua dedupe_worker.lua ENDPOINT TABLE HASH DIR INDEX N MODE [JOB_TIMEOUT_MS]
--
-- Waits until DIR/go exists (a bounded poll for the test's signal), then:
--   MODE complete | fail: register_or_join(HASH). The owner waits until the
--     N-1 others have written DIR/joined-<i> (bounded), then completes the job
--     with { owner = INDEX, job = <job id> } (complete) or fails it (fail).
--     A joiner writes DIR/joined-INDEX, then wait_for(HASH).
--   MODE timeout: only wait_for(HASH), with job_timeout_ms = JOB_TIMEOUT_MS,
--     on a job someone else registered and never settles.
--   MODE takeover: as complete, on a stale job of the spec's process: the
--     owner (the one that took it over) publishes DIR/owner once the others
--     joined, waits for DIR/a-done (the former owner has tried to settle),
--     then completes its job, passing the job it holds.
-- Writes one line to DIR/out-INDEX: "<owner|joiner|waiter> <job id|-> <JSON
-- of what wait_for returned, or NIL>" and exits 0; on any failure prints why
-- on stderr and exits non-zero.
local endpoint, table_name, hash, dir, index, n, mode, job_timeout =
  arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]), tonumber(arg[6]), arg[7], tonumber(arg[8] or "300000")
if not (endpoint and table_name and hash and dir and index and n and job_timeout)
   or not (mode == "complete" or mode == "fail" or mode == "timeout" or mode == "takeover") then
  io.stderr:write("usage: dedupe_worker.lua ENDPOINT TABLE HASH DIR INDEX N complete|fail|timeout|takeover"
                  .. " [JOB_TIMEOUT_MS]\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local dedupe = require "ddbkit.dedupe"
local cjson = require "cjson.safe"
local W = require "worker_util"
local exists = W.exists

local SIGNAL_WAIT_MS, POLL_MS = 60000, 5

local function fail(what, err)
  io.stderr:write(string.format("dedupe_worker %d: %s: %s\n", index, what, tostring(err)))
  os.exit(1)
end

local function touch(path)
  local f = io.open(path, "w")
  if not f then fail("cannot write " .. path) end
  f:close()
end

-- Bounded wait for files another process creates: polls, gives up after
-- SIGNAL_WAIT_MS (then the test reports this worker's failure).
local function wait_until(what, ready)
  local deadline = core.mono_ms() + SIGNAL_WAIT_MS
  while not ready() do
    if core.mono_ms() > deadline then fail("gave up waiting for " .. what) end
    core.sleep_ms(POLL_MS)
  end
end

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end
local store = dedupe.new{ client = client, table_name = table_name, poll_interval_ms = 20,
                          job_timeout_ms = job_timeout }

wait_until("the go signal", function() return exists(dir .. "/go") end)

local role, job_id, value, err = "waiter", "-"
if mode ~= "timeout" then
  local job, jerr = store:register_or_join(hash)
  if not job then fail("register_or_join", jerr) end
  job_id = job.job_id
  if job.is_owner then
    role = "owner"
    wait_until("the joiners", function()
      for i = 1, n do
        if i ~= index and not exists(dir .. "/joined-" .. i) then return false end
      end
      return true
    end)
    local ok, serr
    if mode == "takeover" then
      local published, perr = W.publish(dir .. "/owner", tostring(index))
      if not published then fail("publish", perr) end
      wait_until("the former owner's try", function() return exists(dir .. "/a-done") end)
      ok, serr = store:complete(hash, { owner = index, job = job_id }, job)
    elseif mode == "complete" then
      ok, serr = store:complete(hash, { owner = index, job = job_id })
    else
      ok, serr = store:fail(hash, "the owner gave up")
    end
    if ok ~= true then fail(mode, serr or "the job was already settled") end
  else
    role = "joiner"
    touch(dir .. "/joined-" .. index)
  end
end

if role ~= "owner" then
  value, err = store:wait_for(hash)
  if err then fail("wait_for", err) end
end

local out = io.open(dir .. "/out-" .. index, "w")
if not out then fail("cannot write the result") end
out:write(string.format("%s %s %s\n", role, job_id, value == nil and "NIL" or cjson.encode(value)))
out:close()
client:close()
os.exit(0)
