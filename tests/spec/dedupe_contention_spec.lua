-- Request de-duplication across OS processes against DynamoDB Local: 8
-- workers (dedupe_worker.lua) register_or_join the same hash at once.
-- Exactly one owns the job; every other joins it and its wait_for returns
-- what the owner completed with, or nothing when the owner fails. A stale
-- job of this process is taken over by one worker; this process, its former
-- owner, then can neither fail nor complete it. And a job nobody settles is
-- marked failed by a waiter once job_timeout_ms has passed (real time,
-- spent inside wait_for's own polling).
--
-- The workers start together on an event: each waits for a "go" file the
-- test creates once all are launched; the owner waits for the others'
-- "joined" marker files before settling. Every worker runs under
-- `timeout` and is reaped by reading its pipe to EOF.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local dedupe = require "ddbkit.dedupe"
local schema = require "ddbkit.schema"
local cjson = require "cjson.safe"

local WORKERS = 8
local WORKER_TIMEOUT_S = 120
local JOB_TIMEOUT_MS = 300

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

describe("ddbkit.dedupe across processes", function()
  local admin, T, root
  local worker = spec_dir() .. "/dedupe_worker.lua"

  setup(function()
    admin = H.client()
    T = H.unique("dedupemp")
    assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T))
    root = mktemp_dir()
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
    if root then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(root)) end
  end)

  local function raw(hash)
    return assert(admin:get_item{ TableName = T, Key = { pk = "DEDUPE#" .. hash, sk = "DEDUPE#" .. hash },
                                  ConsistentRead = true }).Item
  end

  -- Launches the workers, calls before_go(), signals go, calls
  -- after_go(dir), reaps them all and returns their parsed output lines.
  local function run(scenario, hash, mode, before_go, after_go)
    local dir = root .. "/" .. scenario
    assert(os.execute("env -u LD_PRELOAD mkdir -p " .. shell_quote(dir)))
    local lua = interpreter()
    local procs = {}
    for i = 1, WORKERS do
      local cmd = bounded(table.concat({ lua, shell_quote(worker), shell_quote(H.endpoint), shell_quote(T),
                                         shell_quote(hash), shell_quote(dir), tostring(i), tostring(WORKERS),
                                         mode, tostring(mode == "timeout" and JOB_TIMEOUT_MS or 300000) }, " "),
                          WORKER_TIMEOUT_S)
      procs[i] = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r"))
    end
    if before_go then before_go() end
    local f = assert(io.open(dir .. "/go", "w"))
    f:close()
    local after_ok, after_err = true, nil
    if after_go then after_ok, after_err = pcall(after_go, dir) end
    local logs = {}
    for i, p in ipairs(procs) do   -- read to EOF: waits for the worker to end
      logs[i] = p:read("*a")
      p:close()
    end
    if not after_ok then error(after_err, 0) end   -- the cause, before its effects on the workers
    local results = {}
    for i = 1, WORKERS do
      assert.are.equal("0", logs[i]:match("EXIT:(%d+)%s*$"),
                       string.format("worker %d failed (124 = timed out):\n%s", i, logs[i]))
      local out = assert(io.open(dir .. "/out-" .. i, "r"))
      local line = out:read("*l")
      out:close()
      local role, job, value = line:match("^(%S+) (%S+) (.*)$")
      assert.is_truthy(role, "bad line from worker " .. i .. ": " .. tostring(line))
      results[i] = { role = role, job = job, value = value ~= "NIL" and assert(cjson.decode(value)) or nil }
    end
    return results
  end

  local function one_owner(results)
    local owner
    for i, r in ipairs(results) do
      if r.role == "owner" then
        assert.is_nil(owner, string.format("workers %d and %d both own the job", owner or 0, i))
        owner = i
      end
    end
    assert.is_not_nil(owner, "no worker owns the job")
    for i, r in ipairs(results) do
      assert.are.equal(results[owner].job, r.job, "worker " .. i .. " joined another job")
    end
    return owner
  end

  it(WORKERS .. " processes: one owner, every waiter gets the owner's value", function()
    local hash = H.unique("complete")
    local results = run("complete", hash, "complete")
    local owner = one_owner(results)
    local job = results[owner].job
    for i, r in ipairs(results) do
      if i ~= owner then
        assert.are.equal("joiner", r.role)
        assert.are.same({ owner = owner, job = job }, r.value, "what worker " .. i .. " got")
      end
    end
    local item = raw(hash)
    assert.are.equal("completed", item.status)
    assert.are.equal(job, item.jobId)
  end)

  it(WORKERS .. " processes: the owner fails, every waiter gets nothing", function()
    local hash = H.unique("fail")
    local results = run("fail", hash, "fail")
    local owner = one_owner(results)
    for i, r in ipairs(results) do
      if i ~= owner then
        assert.are.equal("joiner", r.role)
        assert.is_nil(r.value, "worker " .. i .. " got a value from a failed job")
      end
    end
    local item = raw(hash)
    assert.are.equal("failed", item.status)
    assert.are.equal("Job failed", item.error)
  end)

  it(WORKERS .. " processes take over a stale job: the former owner can settle neither, joiners get the successor's value", function()
    local hash = H.unique("takeover")
    local blocking = require "ddbkit.runtime.blocking"
    -- The former owner: this process, on a clock 10 minutes slow, so the
    -- job it registers is stale (past the workers' 300000 ms) at once.
    local slow = H.client{ runtime = {
      send = blocking.send, sleep = blocking.sleep, mono_ms = blocking.mono_ms,
      now_ms = function() return blocking.now_ms() - 600000 end,
    } }
    local a = dedupe.new{ client = slow, table_name = T }
    local old_job
    local results = run("takeover", hash, "takeover", function()
      local j = assert(a:register_or_join(hash))
      assert.is_true(j.is_owner)
      old_job = j.job_id
    end, function(dir)
      -- once a worker took the job over and the others joined it, the
      -- former owner (still "running") gives up, then finishes late
      local owner = H.wait_for_file(dir .. "/owner", 60000, dir .. "/out-1")
      local ok, err = a:fail(hash, "gave up")
      local ok2, err2 = a:complete(hash, { owner = "former" })
      local item = raw(hash)
      H.write_file(dir .. "/a-done", "")
      assert.is_false(ok, "the former owner's fail: " .. tostring(err))
      assert.is_false(ok2, "the former owner's complete: " .. tostring(err2))
      assert.are.equal("pending", item.status, "worker " .. owner .. "'s job after the former owner's tries")
      assert.are_not.equal(old_job, item.jobId)
    end)
    local owner = one_owner(results)
    assert.are_not.equal(old_job, results[owner].job)
    for i, r in ipairs(results) do
      if i ~= owner then
        assert.are.equal("joiner", r.role)
        assert.are.same({ owner = owner, job = results[owner].job }, r.value, "what worker " .. i .. " got")
      end
    end
    local item = raw(hash)
    assert.are.equal("completed", item.status)
    assert.are.equal(results[owner].job, item.jobId)
    slow:close()
  end)

  it(WORKERS .. " processes wait on a job nobody settles: marked failed after job_timeout_ms", function()
    local hash = H.unique("timeout")
    local job
    local results = run("timeout", hash, "timeout", function()
      -- this process owns the job and never settles it
      local d = dedupe.new{ client = admin, table_name = T, job_timeout_ms = JOB_TIMEOUT_MS }
      local j = assert(d:register_or_join(hash))
      assert.is_true(j.is_owner)
      job = j.job_id
    end)
    for i, r in ipairs(results) do
      assert.are.equal("waiter", r.role)
      assert.is_nil(r.value, "worker " .. i .. " got a value from a timed-out job")
    end
    local item = raw(hash)
    assert.are.equal("failed", item.status)
    assert.are.equal("Job timed out", item.error)
    assert.are.equal(job, item.jobId)
    assert.is_true(item.updatedAt - item.createdAt >= JOB_TIMEOUT_MS)
  end)
end)
