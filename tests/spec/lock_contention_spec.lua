-- Mutual exclusion across OS processes: 8 workers (lock_worker.lua) each
-- acquire and release the same lock 100 times against DynamoDB Local. Every
-- grant records its fence and its interval on CLOCK_MONOTONIC, which all
-- processes on the machine share; no two intervals may overlap and, in
-- grant order, the fences must strictly increase.
local H = require "test_helper"

local WORKERS, ROUNDS = 8, 100
local THINK_MS = 5   -- see lock_worker.lua: makes most grants change hands
local WORKER_TIMEOUT_S = 120

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

describe("ddbkit.lock across processes", function()
  local admin, T, dir

  setup(function()
    admin = H.client()
    T = H.create_table(admin, H.unique("lockmp"), { range = false })
    dir = mktemp_dir()
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
    if dir then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(dir)) end
  end)

  it(string.format("%d processes x %d grants: no overlap, fences strictly increasing", WORKERS, ROUNDS), function()
    local worker = spec_dir() .. "/lock_worker.lua"
    local lua = interpreter()
    local procs = {}
    for i = 1, WORKERS do
      local out = string.format("%s/worker-%d.txt", dir, i)
      local cmd = bounded(table.concat({ lua, shell_quote(worker), shell_quote(H.endpoint),
                                         shell_quote(T), shell_quote(out), tostring(ROUNDS),
                                         tostring(THINK_MS) }, " "),
                          WORKER_TIMEOUT_S)
      -- all start now; each pipe is read to EOF below
      procs[i] = { out = out, pipe = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r")) }
    end
    for _, w in ipairs(procs) do
      w.log = w.pipe:read("*a")
      w.pipe:close()
    end

    local grants = {}
    for i, w in ipairs(procs) do
      local code = w.log:match("EXIT:(%d+)%s*$")
      assert.are.equal("0", code, string.format("worker %d failed (124 = timed out):\n%s", i, w.log))
      local f = assert(io.open(w.out, "r"))
      local count = 0
      for line in f:lines() do
        local fence, t0, t1 = line:match("^(%d+) (%S+) (%S+)$")
        assert.is_truthy(fence, "bad line from worker " .. i .. ": " .. line)
        count = count + 1
        grants[#grants + 1] = { fence = tonumber(fence), t0 = tonumber(t0), t1 = tonumber(t1), worker = i }
      end
      f:close()
      assert.are.equal(ROUNDS, count, "grants recorded by worker " .. i)
    end
    assert.are.equal(WORKERS * ROUNDS, #grants)

    table.sort(grants, function(a, b) return a.t0 < b.t0 end)
    for k = 2, #grants do
      local prev, cur = grants[k - 1], grants[k]
      assert.is_true(cur.t0 > prev.t1, string.format(
        "grant %d (worker %d, fence %d, [%.4f, %.4f]) overlaps grant %d (worker %d, fence %d, [%.4f, %.4f])",
        k, cur.worker, cur.fence, cur.t0, cur.t1, k - 1, prev.worker, prev.fence, prev.t0, prev.t1))
      assert.is_true(cur.fence > prev.fence, string.format(
        "fence %d (worker %d) after fence %d (worker %d) in grant order",
        cur.fence, cur.worker, prev.fence, prev.worker))
    end
  end)
end)
