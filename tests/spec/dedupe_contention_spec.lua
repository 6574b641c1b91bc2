-- Request de-duplication across OS processes against DynamoDB Local: 8
-- workers (dedupe_worker.lua) register_or_join the same hash at once.
-- Exactly one owns the job; every other joins it and its wait_for returns
-- what the owner completed with, or nothing when the owner fails. And a
-- job nobody settles is marked failed by a waiter once job_timeout_ms has
-- passed (real time, spent inside wait_for's own polling).
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

  -- Launches the workers, calls before_go(), signals go, reaps them all and
  -- returns their parsed output lines.
  local function run(scenario, hash, mode, before_go)
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
    local logs = {}
    for i, p in ipairs(procs) do   -- read to EOF: waits for the worker to end
      logs[i] = p:read("*a")
      p:close()
    end
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
