-- The rate limit across OS processes: 6 workers (ratelimit_worker.lua) call
-- acquire on one resource (limit 20 per 2000 ms) for 6.5 s each against
-- DynamoDB Local, recording every grant's stored timestamp and every call's
-- request count.
--
-- No window holds more than 20 grants: sorted, any 21 consecutive grants
-- g[i] .. g[i+20] must span more than 2000 ms. Margin: none, deliberately.
-- The workers record the very timestamp the slot condition was evaluated
-- with and stored (the runtime's now_ms read for the winning transaction),
-- and the slot condition `timestamp < now - window_ms` makes two grants on
-- one slot more than window_ms apart in those integer ms, so among 21
-- grants (20 slots) two are > 2000 ms apart: the check is exact. The clock's
-- granularity (now_ms truncates to whole ms) matters only in real time,
-- where it shrinks the guarantee to windows of 2000 - 1 ms; all workers read
-- the same CLOCK_REALTIME, so there is no skew between them. The same
-- timestamps are cross-checked against the log items in the table.
--
-- Throughput: possible = 20 x D / 2000 with D the span from the first call
-- of any worker to the last return of any (the workers overlap, so some
-- worker was always asking). That is the rate a steady stream can sustain;
-- a short run can beat it by up to one burst of 20 (every slot is free at
-- the start), while each refill after window_ms + 1 ms costs the workers
-- only their reaction time, so grants / possible >= 0.8 holds with room.
--
-- Requests: over all calls (grants and denials) at most 3 on average, and
-- no call above 6 (the store's cap).
local H = require "test_helper"
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local WORKERS, LIMIT, WINDOW_MS, RUN_MS = 6, 20, 2000, 6500
local WORKER_TIMEOUT_S = 120

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

describe("ddbkit.ratelimit across processes", function()
  local admin, T, dir

  setup(function()
    admin = H.client()
    T = H.unique("rlmp")
    assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T, 30000))
    dir = mktemp_dir()
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
    if dir then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(dir)) end
  end)

  it(string.format("%d processes, limit %d per %d ms for %d ms: never over the limit, >= 80%% of the grants, <= 3 requests per call",
                   WORKERS, LIMIT, WINDOW_MS, RUN_MS), function()
    local worker = spec_dir() .. "/ratelimit_worker.lua"
    local lua = interpreter()
    local resource = "contended"
    local procs = {}
    for i = 1, WORKERS do
      local out = string.format("%s/worker-%d.txt", dir, i)
      local cmd = bounded(table.concat({ lua, shell_quote(worker), shell_quote(H.endpoint), shell_quote(T),
                                         shell_quote(resource), shell_quote(out), tostring(RUN_MS),
                                         tostring(LIMIT), tostring(WINDOW_MS) }, " "),
                          WORKER_TIMEOUT_S)
      procs[i] = { out = out, pipe = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r")) }
    end
    for _, w in ipairs(procs) do
      w.log = w.pipe:read("*a")
      w.pipe:close()
    end

    local grants, calls, total_requests, max_requests, grant_requests = {}, 0, 0, 0, 0
    local first, last, latest_start, earliest_end = math.huge, -math.huge, -math.huge, math.huge
    for i, w in ipairs(procs) do
      local code = w.log:match("EXIT:(%d+)%s*$")
      assert.are.equal("0", code, string.format("worker %d failed (124 = timed out):\n%s", i, w.log))
      local f = assert(io.open(w.out, "r"))
      local seen_run = false
      for line in f:lines() do
        local ts, n = line:match("^G (%d+) (%d+)$")
        local dn = line:match("^D (%d+)$")
        local s, e = line:match("^R (%d+) (%d+)$")
        if ts then
          grants[#grants + 1] = tonumber(ts)
          n = tonumber(n)
          grant_requests = grant_requests + n
        elseif dn then
          n = tonumber(dn)
        elseif s then
          seen_run = true
          s, e = tonumber(s), tonumber(e)
          first, last = math.min(first, s), math.max(last, e)
          latest_start, earliest_end = math.max(latest_start, s), math.min(earliest_end, e)
        else
          error("bad line from worker " .. i .. ": " .. line)
        end
        if n then
          calls = calls + 1
          total_requests = total_requests + n
          if n > max_requests then max_requests = n end
          assert.is_true(n >= 1 and n <= 6, "a call of worker " .. i .. " took " .. n .. " requests")
        end
      end
      f:close()
      assert.is_true(seen_run, "worker " .. i .. " wrote no run line")
    end
    assert.is_true(latest_start < earliest_end, "the workers did not overlap")

    -- the grants are exactly the log items the table holds
    local logged = assert(admin:query_all{ TableName = T, ConsistentRead = true,
      KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. resource } })
    local stored = {}
    for _, item in ipairs(logged) do stored[#stored + 1] = item.timestamp end
    table.sort(grants)
    table.sort(stored)
    assert.are.same(grants, stored)

    for i = 1, #grants - LIMIT do
      assert.is_true(grants[i + LIMIT] - grants[i] > WINDOW_MS, string.format(
        "%d grants within %d ms: from %d to %d", LIMIT + 1, grants[i + LIMIT] - grants[i], grants[i], grants[i + LIMIT]))
    end

    local span = last - first
    local possible = LIMIT * span / WINDOW_MS
    local avg = total_requests / calls
    print(string.format("\n# %d grants of %.1f possible (%.0f%%) over %d ms; %d calls, %.2f requests per call "
      .. "(%.2f per grant), max %d", #grants, possible, 100 * #grants / possible, span, calls, avg,
      grant_requests / math.max(1, #grants), max_requests))
    assert.is_true(span >= RUN_MS)
    assert.is_true(#grants >= 0.8 * possible, string.format("%d grants of %.1f possible", #grants, possible))
    assert.is_true(avg <= 3, string.format("%.2f requests per acquire", avg))
    assert.is_true(max_requests <= 6)
  end)
end)
