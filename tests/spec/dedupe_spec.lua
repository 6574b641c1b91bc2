-- ddbkit.dedupe against DynamoDB Local: every method and state, the
-- request budget, result encodings, TTL/timeout semantics on a fake clock
-- (no real waiting), argument checks, the missing table, and interop with
-- items laid out exactly as the Node store package writes and reads them.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local dedupe = require "ddbkit.dedupe"
local schema = require "ddbkit.schema"
local blocking = require "ddbkit.runtime.blocking"
local cjson = require "cjson.safe"

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local T0 = 1700000000000   -- the fake wall clock's start, epoch ms

-- A runtime whose clocks only move when the store sleeps. hooks.on_sleep(n,
-- ms) runs at the n-th sleep; hooks.send(op, params, real) may stand in for
-- the real send.
local function fake_runtime(hooks)
  hooks = hooks or {}
  local rt = { wall = T0, mono = 5000, sleeps = {} }
  rt.now_ms = function() return rt.wall end
  rt.mono_ms = function() return rt.mono end
  rt.sleep = function(ms)
    rt.sleeps[#rt.sleeps + 1] = ms
    rt.wall, rt.mono = rt.wall + ms, rt.mono + ms
    if hooks.on_sleep then hooks.on_sleep(#rt.sleeps, ms) end
  end
  rt.send = function(cc, op, params)
    if hooks.send then return hooks.send(op, params, function() return blocking.send(cc, op, params) end) end
    return blocking.send(cc, op, params)
  end
  return rt
end

describe("ddbkit.dedupe", function()
  local admin, T

  local function raw(hash)
    local res = assert(admin:get_item{ TableName = T, Key = { pk = "DEDUPE#" .. hash, sk = "DEDUPE#" .. hash },
                                       ConsistentRead = true })
    return res.Item
  end

  -- An item exactly as the Node package writes it.
  local function node_put(hash, fields)
    local item = { pk = "DEDUPE#" .. hash, sk = "DEDUPE#" .. hash, jobId = require("ddbkit.core").uuid(),
                   status = "pending", result = ddbkit.null, error = ddbkit.null,
                   createdAt = T0, updatedAt = T0, ttl = math.floor((T0 + 300000) / 1000) }
    for k, v in pairs(fields or {}) do item[k] = v end
    assert(admin:put_item{ TableName = T, Item = item })
    return item
  end

  local function new(opts, rt)
    local o = { client = rt and H.client{ runtime = rt } or admin, table_name = T }
    for k, v in pairs(opts or {}) do o[k] = v end
    return dedupe.new(o)
  end

  setup(function()
    admin = H.client()
    T = H.unique("dedupe")
    assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T))
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  describe("new", function()
    it("checks every option, naming the field", function()
      assert.has_error(function() dedupe.new{} end, "ddbkit.dedupe.new: opts.client must be a ddbkit.client")
      assert.has_error(function() dedupe.new{ client = {} } end,
                       "ddbkit.dedupe.new: opts.client must be a ddbkit.client")
      assert.has_error(function() dedupe.new{ client = admin, job_timeout_ms = -1 } end,
                       "ddbkit.dedupe.new: opts.job_timeout_ms must be a non-negative number")
      assert.has_error(function() dedupe.new{ client = admin, poll_interval_ms = 0 } end,
                       "ddbkit.dedupe.new: opts.poll_interval_ms must be a positive number")
      assert.has_error(function() dedupe.new{ client = admin, table_name = "" } end,
                       "ddbkit.dedupe.new: opts.table_name must be a non-empty string")
      assert.has_error(function() dedupe.new{ client = admin, jobTimeoutMs = 5 } end,
                       "ddbkit.dedupe.new: unknown option opts.jobTimeoutMs")
      for _, bad in ipairs{ 0, 2.5 } do
        assert.has_error(function() dedupe.new{ client = admin, max_owned_jobs = bad } end)
      end
      assert.has_error(function() dedupe.new{ client = admin, max_owned_jobs = 1.5 } end,
                       "ddbkit.dedupe.new: opts.max_owned_jobs must be an integer >= 1")
      local d = dedupe.new{ client = admin }
      assert.has_error(function() d:complete("h", 1, 42) end,
                       "ddbkit.dedupe: job must be the table register_or_join returned or its job_id")
    end)

    it("defaults: table http-client-toolkit, 300000 ms timeout, 500 ms polls", function()
      local d = dedupe.new{ client = admin }
      assert.are.equal("http-client-toolkit", d.table_name)
      assert.are.equal(300000, d.job_timeout_ms)
      assert.are.equal(500, d.poll_interval_ms)
    end)
  end)

  describe("register_or_join", function()
    it("makes the first caller the owner of a new pending job, in the Node layout", function()
      local rt = fake_runtime()
      local d = new(nil, rt)
      local h = H.unique("h")
      local job = assert(d:register_or_join(h))
      assert.is_true(job.is_owner)
      assert.matches(UUID, job.job_id)
      local item = raw(h)
      assert.are.equal("DEDUPE#" .. h, item.pk)
      assert.are.equal("DEDUPE#" .. h, item.sk)
      assert.are.equal(job.job_id, item.jobId)
      assert.are.equal("pending", item.status)
      assert.are.equal(ddbkit.null, item.result)
      assert.are.equal(ddbkit.null, item.error)
      assert.are.equal(T0, item.createdAt)
      assert.are.equal(T0, item.updatedAt)
      assert.are.equal(math.floor((T0 + 300000) / 1000), item.ttl)
    end)

    it("writes ttl = 0 when job_timeout_ms is 0 (no timeout)", function()
      local d = new({ job_timeout_ms = 0 }, fake_runtime())
      local h = H.unique("h")
      assert.is_true(assert(d:register_or_join(h)).is_owner)
      assert.are.equal(0, raw(h).ttl)
    end)

    it("joins a pending job of another caller in exactly 1 request", function()
      local h = H.unique("h")
      local owner = assert(new():register_or_join(h))
      local c = H.client()
      local d = dedupe.new{ client = c, table_name = T }
      c:reset_stats()
      local job = assert(d:register_or_join(h))
      assert.are.equal(1, c:stats().requests)
      assert.is_false(job.is_owner)
      assert.are.equal(owner.job_id, job.job_id)
      assert.are.equal(owner.job_id, raw(h).jobId)   -- untouched
      c:close()
    end)

    it("costs 1 request for the owner too", function()
      local c = H.client()
      local d = dedupe.new{ client = c, table_name = T }
      c:reset_stats()
      assert.is_true(assert(d:register_or_join(H.unique("h"))).is_owner)
      assert.are.equal(1, c:stats().requests)
      c:close()
    end)

    it("register returns the job id, the same for the owner and a joiner", function()
      local h = H.unique("h")
      local d = new()
      local id = assert(d:register(h))
      assert.matches(UUID, id)
      assert.are.equal(id, d:register(h))
    end)

    it("starts a new job once the previous one completed or failed", function()
      local d = new()
      for _, settle in ipairs{ "complete", "fail" } do
        local h = H.unique("h")
        local first = assert(d:register_or_join(h))
        assert.is_true(d[settle](d, h, "v"))
        local second = assert(d:register_or_join(h))
        assert.is_true(second.is_owner)
        assert.are_not.equal(first.job_id, second.job_id)
        assert.are.equal("pending", raw(h).status)
      end
    end)

    it("takes over a pending job past job_timeout_ms; of two takers only one owns it", function()
      local h = H.unique("h")
      local stale = node_put(h, { createdAt = T0 - 300000, updatedAt = T0 - 300000 })
      local a = new(nil, fake_runtime())
      local b = new(nil, fake_runtime())
      local ja = assert(a:register_or_join(h))
      local jb = assert(b:register_or_join(h))
      assert.is_true(ja.is_owner)
      assert.are_not.equal(stale.jobId, ja.job_id)
      assert.is_false(jb.is_owner)
      assert.are.equal(ja.job_id, jb.job_id)
      assert.are.equal(T0, raw(h).createdAt)
    end)

    it("joins a pending job just under job_timeout_ms old", function()
      local h = H.unique("h")
      local item = node_put(h, { createdAt = T0 - 299999 })
      local job = assert(new(nil, fake_runtime()):register_or_join(h))
      assert.is_false(job.is_owner)
      assert.are.equal(item.jobId, job.job_id)
    end)

    it("never takes over an old pending job when job_timeout_ms is 0", function()
      local h = H.unique("h")
      local item = node_put(h, { createdAt = 1, ttl = 0 })
      local job = assert(new({ job_timeout_ms = 0 }, fake_runtime()):register_or_join(h))
      assert.is_false(job.is_owner)
      assert.are.equal(item.jobId, job.job_id)
    end)

    it("an ambiguous Put that did succeed is resolved by reading its own job back", function()
      local h = H.unique("h")
      local rt = fake_runtime{ send = function(op, _, real)
        if op == "PutItem" then
          assert(real())
          return nil, setmetatable({ code = "Timeout", message = "lost response", status = 0, retryable = true },
                                   require("ddbkit.core").error_mt)
        end
        return real()
      end }
      local job = assert(new(nil, rt):register_or_join(h))
      assert.is_true(job.is_owner)
      assert.are.equal(job.job_id, raw(h).jobId)
    end)

    it("a retried Put whose first attempt succeeded sees its own job in ALL_OLD: owner", function()
      local h = H.unique("h")
      local rt = fake_runtime{ send = function(op, _, real)
        if op == "PutItem" then
          assert(real())   -- the attempt whose response was lost
          return real()    -- the retry: fails its condition on our own item
        end
        return real()
      end }
      local c = H.client{ runtime = rt }
      local d = dedupe.new{ client = c, table_name = T }
      c:reset_stats()
      local job = assert(d:register_or_join(h))
      assert.is_true(job.is_owner)
      assert.are.equal(job.job_id, raw(h).jobId)
      assert.are.equal(2, c:stats().requests)   -- the two Puts, no read
    end)
    it("a Put whose answer the engine lost (err.ambiguous) reads its own job back: owner", function()
      if not H.proxy then pending("the fault proxy is not running") return end
      local h = H.unique("h")
      local c = H.proxied_client{ max_attempts = 1 }
      local d = dedupe.new{ client = c, table_name = T }
      H.faults{ { kind = "drop_response", match = "PutItem" } }
      local job, err = d:register_or_join(h)
      H.clear_faults()
      assert.is_truthy(job, tostring(err))
      assert.is_true(job.is_owner)
      assert.are.equal(job.job_id, raw(h).jobId)
      c:close()
    end)

    it("a Put that applied but answered 5xx on every attempt reads its own job back: owner", function()
      if not H.proxy then pending("the fault proxy is not running") return end
      local h = H.unique("h")
      local c = H.proxied_client{ max_attempts = 2, base_delay_ms = 1 }
      local d = dedupe.new{ client = c, table_name = T }
      -- both attempts reach DynamoDB (the first applies), both answers are 500
      H.faults{ { kind = "status", status = 500, forward = true, match = "PutItem", count = 2 } }
      local job, err = d:register_or_join(h)
      H.clear_faults()
      assert.is_truthy(job, tostring(err))
      assert.is_true(job.is_owner)
      assert.are.equal(job.job_id, raw(h).jobId)
      assert.is_true(d:complete(h, "done"))
      assert.are.equal("done", new():wait_for(h))
      c:close()
    end)
  end)

  describe("complete and fail", function()
    it("complete settles a pending job once; later settles are ignored", function()
      local rt = fake_runtime()
      local d = new(nil, rt)
      local h = H.unique("h")
      local job = assert(d:register_or_join(h))
      rt.wall = T0 + 42
      local c = H.client()
      local d2 = dedupe.new{ client = c, table_name = T }
      c:reset_stats()
      assert.is_true(d2:complete(h, { answer = 42 }))
      assert.are.equal(1, c:stats().requests)
      c:close()
      local item = raw(h)
      assert.are.equal("completed", item.status)
      assert.are.same({ answer = 42 }, cjson.decode(item.result))
      assert.are.equal(job.job_id, item.jobId)
      local again, err = d:complete(h, "other")
      assert.is_false(again)
      assert.is_nil(err)
      assert.is_false(d:fail(h, "boom"))
      assert.are.same({ answer = 42 }, cjson.decode(raw(h).result))
      assert.are.equal("completed", raw(h).status)
    end)

    it("complete and fail on a missing job do nothing (no item is created)", function()
      local d = new()
      local h = H.unique("h")
      local ok, err = d:complete(h, 1)
      assert.is_false(ok)
      assert.is_nil(err)
      ok, err = d:fail(h, "x")
      assert.is_false(ok)
      assert.is_nil(err)
      assert.is_nil(raw(h))
    end)

    it("fail marks the job failed with error = \"Job failed\"", function()
      local rt = fake_runtime()
      local d = new(nil, rt)
      local h = H.unique("h")
      assert(d:register_or_join(h))
      rt.wall = T0 + 7
      assert.is_true(d:fail(h, "any error"))
      local item = raw(h)
      assert.are.equal("failed", item.status)
      assert.are.equal("Job failed", item.error)
      assert.are.equal(T0 + 7, item.updatedAt)
      assert.are.equal(ddbkit.null, item.result)
      assert.is_false(d:complete(h, 1))
      assert.is_false(d:fail(h, "again"))   -- settled already, even if by the same words
    end)

    it("a second complete with the same value is ignored too", function()
      local d = new()
      local h = H.unique("h")
      local job = assert(d:register_or_join(h))
      assert.is_true(d:complete(h, "v", job))
      assert.is_false(d:complete(h, "v", job))
    end)

    it("a former owner whose job was taken over can settle neither its job nor the successor's", function()
      local h = H.unique("h")
      local rt_a = fake_runtime()
      local a = new(nil, rt_a)
      local ja = assert(a:register_or_join(h))
      assert.is_true(ja.is_owner)
      -- B comes after A's job went stale and takes it over
      local rt_b = fake_runtime()
      rt_b.wall = T0 + 300001
      local b = new(nil, rt_b)
      local jb = assert(b:register_or_join(h))
      assert.is_true(jb.is_owner)
      assert.are_not.equal(ja.job_id, jb.job_id)
      -- A, still running, gives up or finishes late: refused, B's job untouched
      local ok, err = a:fail(h, "too slow")
      assert.is_false(ok)
      assert.is_nil(err)
      ok, err = a:complete(h, { from = "a" })
      assert.is_false(ok)
      assert.is_nil(err)
      assert.are.equal("pending", raw(h).status)
      assert.are.equal(jb.job_id, raw(h).jobId)
      -- a joiner of B's job gets B's result
      local joiner = new(nil, fake_runtime())
      local jj = assert(joiner:register_or_join(h))
      assert.is_false(jj.is_owner)
      assert.are.equal(jb.job_id, jj.job_id)
      assert.is_true(b:complete(h, { from = "b" }))
      assert.are.same({ from = "b" }, joiner:wait_for(h))
      assert.are.same({ from = "b" }, cjson.decode(raw(h).result))
    end)

    it("a job given explicitly settles only that job, whatever the store remembers", function()
      local h = H.unique("h")
      local rt = fake_runtime()
      local d = new(nil, rt)
      local first = assert(d:register_or_join(h))
      rt.wall = T0 + 300001   -- the same store's second task takes the stale job over
      local second = assert(d:register_or_join(h))
      assert.is_true(second.is_owner)
      assert.is_false(d:fail(h, "late", first))
      assert.is_false(d:complete(h, 1, first.job_id))
      assert.are.equal("pending", raw(h).status)
      assert.is_true(d:complete(h, 2, second))
      assert.are.equal("2", raw(h).result)
    end)

    it("a settle that applied but answered 5xx on every attempt reads back: true, not an error", function()
      if not H.proxy then pending("the fault proxy is not running") return end
      local h = H.unique("h")
      local c = H.proxied_client{ max_attempts = 2, base_delay_ms = 1 }
      local d = dedupe.new{ client = c, table_name = T }
      assert(d:register_or_join(h))
      H.faults{ { kind = "status", status = 500, forward = true, match = "UpdateItem", count = 2 } }
      local ok, err = d:complete(h, { n = 1 })
      H.clear_faults()
      assert.is_true(ok, tostring(err))
      assert.are.same({ n = 1 }, new():wait_for(h))
      c:close()
    end)

    it("a settle whose answer was lost and whose retry failed its condition on our own write: true", function()
      if not H.proxy then pending("the fault proxy is not running") return end
      local h = H.unique("h")
      local c = H.proxied_client{ max_attempts = 2, base_delay_ms = 1 }
      local d = dedupe.new{ client = c, table_name = T }
      local job = assert(d:register_or_join(h))
      H.faults{ { kind = "drop_response", match = "UpdateItem", count = 1 } }
      local ok, err = d:fail(h, "gave up", job)
      H.clear_faults()
      assert.is_true(ok, tostring(err))
      assert.are.equal("failed", raw(h).status)
      c:close()
    end)

    it("a value JSON cannot hold is refused before anything is written", function()
      local d = new()
      local h = H.unique("h")
      assert(d:register_or_join(h))
      for _, bad in ipairs{ function() end, { f = io.stdout }, "\255", { [1] = 1, [100] = 2 } } do
        local ok, err = d:complete(h, bad)
        assert.is_nil(ok)
        assert.are.equal("SerializationError", err.code)
      end
      assert.are.equal("pending", raw(h).status)
    end)

    it("NaN and infinities are written null, as JSON.stringify writes them", function()
      local d = new()
      local h = H.unique("h")
      assert(d:register_or_join(h))
      assert.is_true(d:complete(h, { 0 / 0, math.huge, -math.huge }))
      assert.are.equal("[null,null,null]", raw(h).result)
    end)
  end)

  describe("result encoding", function()
    local cases = {
      { "a table", { a = 1, b = { "x", "y" }, c = { d = true } } },
      { "a string", "hello \"world\"" },
      { "an integer", 42 },
      { "a float needing 17 digits", 0.1 + 0.2 },
      { "1/3", 1 / 3 },
      { "false", false },
      { "an empty string", "" },
      { "a list with a null", { 1, ddbkit.null, 3 } },
    }
    for _, case in ipairs(cases) do
      it("round-trips " .. case[1], function()
        local d = new()
        local h = H.unique("h")
        assert(d:register_or_join(h))
        assert.is_true(d:complete(h, case[2]))
        local v, err = d:wait_for(h)
        assert.is_nil(err)
        assert.is_true(H.same(case[2], v), "got " .. tostring(cjson.encode(v)))
      end)
    end

    it("nil is stored as __UNDEFINED__ and read back as nil", function()
      local d = new()
      local h = H.unique("h")
      assert(d:register_or_join(h))
      assert.is_true(d:complete(h, nil))
      assert.are.equal("__UNDEFINED__", raw(h).result)
      local v, err = d:wait_for(h)
      assert.is_nil(v)
      assert.is_nil(err)
    end)

    it("ddbkit.null (or cjson.null) is stored as __NULL__ and read back as ddbkit.null", function()
      local d = new()
      for _, n in ipairs{ ddbkit.null, cjson.null } do
        local h = H.unique("h")
        assert(d:register_or_join(h))
        assert.is_true(d:complete(h, n))
        assert.are.equal("__NULL__", raw(h).result)
        assert.are.equal(ddbkit.null, d:wait_for(h))
      end
    end)

    it("integral numbers read back as integers on Lua 5.4", function()
      local d = new()
      local h = H.unique("h")
      node_put(h, { status = "completed", result = '{"n":42,"f":2.5,"l":[1,2]}' })
      local v = d:wait_for(h)
      assert.are.equal("42", tostring(v.n))
      assert.are.equal("2", tostring(v.l[2]))
      assert.are.equal(2.5, v.f)
      if math.type then assert.are.equal("integer", math.type(v.n)) end
    end)

    it("writes JSON that JavaScript reads back exactly", function()
      local d = new()
      local h = H.unique("h")
      assert(d:register_or_join(h))
      assert.is_true(d:complete(h, { n = 0.1 + 0.2, i = 12345678901234, e = ddbkit.array(), z = ddbkit.null }))
      local text = raw(h).result
      assert.matches('"n":0.30000000000000004', text, 1, true)
      assert.matches('"i":12345678901234', text, 1, true)
      assert.matches('"e":[]', text, 1, true)
      assert.matches('"z":null', text, 1, true)
    end)
  end)

  describe("wait_for", function()
    it("returns nil (no error) for a missing job and for a failed one", function()
      local d = new()
      local v, err = d:wait_for(H.unique("h"))
      assert.is_nil(v)
      assert.is_nil(err)
      local h = H.unique("h")
      assert(d:register_or_join(h))
      assert(d:fail(h))
      v, err = d:wait_for(h)
      assert.is_nil(v)
      assert.is_nil(err)
    end)

    it("polls a pending job every poll_interval_ms until it completes", function()
      local h = H.unique("h")
      local other = new()
      local rt = fake_runtime{ on_sleep = function(n)
        if n == 3 then assert(other:complete(h, { done = true })) end
      end }
      local d = new({ poll_interval_ms = 250 }, rt)
      assert(other:register_or_join(h))
      -- the job was created on the real clock; give the fake one the same time
      rt.wall = raw(h).createdAt
      assert.are.same({ done = true }, d:wait_for(h))
      assert.are.same({ 250, 250, 250 }, rt.sleeps)
    end)

    it("returns nil when the job fails while waiting", function()
      local h = H.unique("h")
      local other = new()
      local rt = fake_runtime{ on_sleep = function(n) if n == 2 then assert(other:fail(h)) end end }
      local d = new(nil, rt)
      assert(other:register_or_join(h))
      rt.wall = raw(h).createdAt
      local v, err = d:wait_for(h)
      assert.is_nil(v)
      assert.is_nil(err)
      assert.are.equal(2, #rt.sleeps)
    end)

    it("marks a job failed (\"Job timed out\") job_timeout_ms after createdAt and returns nil", function()
      local h = H.unique("h")
      local rt = fake_runtime()
      local d = new({ job_timeout_ms = 1000, poll_interval_ms = 300 }, rt)
      local job = assert(d:register_or_join(h))
      rt.wall = T0 + 150   -- the waiter comes 150 ms later
      local v, err = d:wait_for(h)
      assert.is_nil(v)
      assert.is_nil(err)
      -- polled at +150, +450, +750, then slept only until the deadline
      assert.are.same({ 300, 300, 250 }, rt.sleeps)
      local item = raw(h)
      assert.are.equal("failed", item.status)
      assert.are.equal("Job timed out", item.error)
      assert.are.equal(T0 + 1000, item.updatedAt)
      assert.are.equal(job.job_id, item.jobId)
    end)

    it("a job already past its timeout is marked failed at once", function()
      local h = H.unique("h")
      node_put(h, { createdAt = T0 - 400000 })
      local rt = fake_runtime()
      assert.is_nil(new(nil, rt):wait_for(h))
      assert.are.equal(0, #rt.sleeps)
      assert.are.equal("Job timed out", raw(h).error)
    end)

    it("times out after job_timeout_ms of waiting even if createdAt is in the future", function()
      local h = H.unique("h")
      node_put(h, { createdAt = T0 + 10 * 3600 * 1000 })   -- a writer's clock far ahead
      local rt = fake_runtime()
      assert.is_nil(new({ job_timeout_ms = 1000, poll_interval_ms = 400 }, rt):wait_for(h))
      assert.are.same({ 400, 400, 200 }, rt.sleeps)
      assert.are.equal("failed", raw(h).status)
    end)

    it("returns the result when the job completes just as it times out", function()
      local h = H.unique("h")
      node_put(h, { createdAt = T0 - 400000 })
      local rt = fake_runtime{ send = function(op, params, real)
        if op == "UpdateItem" and params.ExpressionAttributeValues[":error"] == "Job timed out" then
          assert(admin:update_item{ TableName = T, Key = params.Key,
            UpdateExpression = "SET #s = :c, #r = :r",
            ExpressionAttributeNames = { ["#s"] = "status", ["#r"] = "result" },
            ExpressionAttributeValues = { [":c"] = "completed", [":r"] = '{"late":1}' } })
        end
        return real()
      end }
      assert.are.same({ late = 1 }, new(nil, rt):wait_for(h))
      assert.are.equal("completed", raw(h).status)
    end)

    it("never times out when job_timeout_ms is 0", function()
      local h = H.unique("h")
      node_put(h, { createdAt = 1, ttl = 0 })
      local other = new()
      local rt = fake_runtime{ on_sleep = function(n) if n == 5 then assert(other:complete(h, "late")) end end }
      assert.are.equal("late", new({ job_timeout_ms = 0, poll_interval_ms = 60000 }, rt):wait_for(h))
      assert.are.equal(5, #rt.sleeps)
    end)
  end)

  describe("is_in_progress", function()
    it("is true only for a pending job younger than job_timeout_ms", function()
      local rt = fake_runtime()
      local d = new(nil, rt)
      local h = H.unique("h")
      assert.is_false(d:is_in_progress(h))
      assert(d:register_or_join(h))
      assert.is_true(d:is_in_progress(h))
      rt.wall = T0 + 299999
      assert.is_true(d:is_in_progress(h))
      assert(d:complete(h, 1))
      assert.is_false(d:is_in_progress(h))
      assert.is_not_nil(raw(h))   -- a settled, unexpired job stays
      local h2 = H.unique("h")
      assert(d:register_or_join(h2))
      assert(d:fail(h2))
      assert.is_false(d:is_in_progress(h2))
    end)

    it("deletes an expired job and reports false", function()
      local rt = fake_runtime()
      local d = new(nil, rt)
      local h = H.unique("h")
      assert(d:register_or_join(h))
      rt.wall = T0 + 300000
      local c = H.client()
      local d2 = dedupe.new{ client = c, table_name = T }
      -- d2 runs on the real clock, far past T0 + 300 s
      c:reset_stats()
      assert.is_false(d2:is_in_progress(h))
      assert.are.equal(2, c:stats().requests)
      c:close()
      assert.is_nil(raw(h))
      -- and on the fake clock, exactly at the timeout:
      assert(d:register_or_join(h))
      rt.wall = rt.wall + 299999
      assert.is_true(d:is_in_progress(h))
      rt.wall = rt.wall + 1
      assert.is_false(d:is_in_progress(h))
      assert.is_nil(raw(h))
    end)

    it("an old pending job stays in progress when job_timeout_ms is 0", function()
      local h = H.unique("h")
      node_put(h, { createdAt = 1, ttl = 0 })
      assert.is_true(new{ job_timeout_ms = 0 }:is_in_progress(h))
    end)
  end)

  describe("clear", function()
    it("removes every DEDUPE# item (more than one batch) and nothing else", function()
      local d = new()
      for i = 1, 30 do node_put("clear-" .. i) end
      local cache_key = "CACHE#" .. H.unique("c")
      assert(admin:put_item{ TableName = T, Item = { pk = cache_key, sk = cache_key, value = "1" } })
      assert.is_true(d:clear())
      local left = assert(admin:scan_all{ TableName = T, ConsistentRead = true })
      assert.are.equal(1, #left)
      assert.are.equal(cache_key, left[1].pk)
      assert.is_nil(raw("clear-1"))
    end)
  end)

  describe("argument checks", function()
    local bad = {
      { "", "hash must not be empty" },
      { "a\1b", "hash contains unsupported control characters" },
      { "a\127", "hash contains unsupported control characters" },
      { string.rep("x", 513), "hash exceeds maximum length of 512 bytes" },
      { 7, "hash must be a string" },
    }
    local calls = {
      register_or_join = function(d, h) return d:register_or_join(h) end,
      register = function(d, h) return d:register(h) end,
      complete = function(d, h) return d:complete(h, 1) end,
      fail = function(d, h) return d:fail(h, "x") end,
      wait_for = function(d, h) return d:wait_for(h) end,
      is_in_progress = function(d, h) return d:is_in_progress(h) end,
    }
    for name, call in pairs(calls) do
      it(name .. " returns the Node messages for bad hashes and sends nothing", function()
        local c = H.client()
        local d = dedupe.new{ client = c, table_name = T }
        for _, b in ipairs(bad) do
          local v, err = call(d, b[1])
          assert.is_nil(v)
          assert.are.equal(b[2], err.message)
          assert.are.equal("InvalidArgument", err.code)
        end
        assert.are.equal(0, c:stats().requests)
        c:close()
      end)
    end

    it("512 bytes of UTF-8 is accepted", function()
      local h = string.rep("é", 256)
      assert.is_true(assert(new():register_or_join(h)).is_owner)
    end)

    it("a closed store raises", function()
      local d = new()
      d:close()
      assert.has_error(function() d:wait_for("x") end, "ddbkit.dedupe: wait_for on a closed store")
      assert.has_error(function() d:register_or_join("x") end)
    end)

    it("a key-prefix policy returning nonsense fails with PolicyError and writes nothing", function()
      local d = new{ policy = { name = "broken", prefix = function() return "" end } }
      local v, err = d:register_or_join("x")
      assert.is_nil(v)
      assert.are.equal("PolicyError", err.code)
      assert.matches("broken", err.message)
    end)

    it("a replacement policy moves the items under its prefix", function()
      local d = new{ policy = { name = "tenant", prefix = function(kind) return "T1#" .. kind:upper() .. "#" end } }
      assert(d:register_or_join("abc"))
      local res = assert(admin:get_item{ TableName = T, Key = { pk = "T1#DEDUPE#abc", sk = "T1#DEDUPE#abc" } })
      assert.are.equal("pending", res.Item.status)
      assert.is_true(d:clear())
      assert.is_nil(assert(admin:get_item{ TableName = T, Key = { pk = "T1#DEDUPE#abc", sk = "T1#DEDUPE#abc" } }).Item)
    end)
  end)

  describe("a missing table", function()
    it("every method returns the compat message", function()
      local name = H.unique("missing")
      local d = dedupe.new{ client = admin, table_name = name }
      local want = 'DynamoDB table "' .. name .. '" was not found. Create the table using your '
                   .. "infrastructure before using DynamoDB stores."
      local results = {
        { d:register_or_join("h") }, { d:register("h") }, { d:complete("h", 1) }, { d:fail("h") },
        { d:wait_for("h") }, { d:is_in_progress("h") }, { d:clear() },
      }
      for i, r in ipairs(results) do
        assert.is_nil(r[1], "call " .. i)
        assert.are.equal(want, r[2] and r[2].message, "call " .. i)
      end
    end)
  end)

  describe("interop with the Node package", function()
    it("joins a pending job the Node package registered", function()
      local h = H.unique("h")
      local item = node_put(h, { createdAt = T0 - 1000 })
      local job = assert(new(nil, fake_runtime()):register_or_join(h))
      assert.is_false(job.is_owner)
      assert.are.equal(item.jobId, job.job_id)
      assert.is_true(new(nil, fake_runtime()):is_in_progress(h))
    end)

    it("reads the results the Node package writes", function()
      local d = new()
      local cases = {
        { '{"status":200,"body":{"items":[1,2,3],"next":null}}',
          { status = 200, body = { items = { 1, 2, 3 }, next = ddbkit.null } } },
        { '"text"', "text" },
        { "3.5", 3.5 },
        { "true", true },
        { "__NULL__", ddbkit.null },
      }
      for _, case in ipairs(cases) do
        local h = H.unique("h")
        node_put(h, { status = "completed", result = case[1], updatedAt = T0 + 5 })
        assert.is_true(H.same(case[2], d:wait_for(h)), case[1])
      end
      for _, undefined in ipairs{ "__UNDEFINED__", ddbkit.null, "", "{not json" } do
        local h = H.unique("h")
        node_put(h, { status = "completed", result = undefined })
        local v, err = d:wait_for(h)
        assert.is_nil(v)
        assert.is_nil(err)
      end
      local h = H.unique("h")
      node_put(h, { status = "failed", error = "Job failed" })
      assert.is_nil(d:wait_for(h))
      assert.is_false(d:is_in_progress(h))
      assert.is_false(d:complete(h, 1))
    end)

    it("a job the Node package registered can be completed by ddbkit", function()
      local h = H.unique("h")
      node_put(h, { createdAt = T0 })
      local d = new(nil, fake_runtime())
      assert.is_true(d:complete(h, { from = "lua" }))
      assert.are.same({ from = "lua" }, new():wait_for(h))
    end)

    it("writes every attribute the Node package reads", function()
      local rt = fake_runtime()
      local d = new({ job_timeout_ms = 60000 }, rt)
      local h = H.unique("h")
      local job = assert(d:register_or_join(h))
      local item = raw(h)
      -- Node's isInProgress / waitFor read status and createdAt (a number, ms)
      assert.are.equal("pending", item.status)
      assert.are.equal("number", type(item.createdAt))
      assert.are.equal(math.floor((T0 + 60000) / 1000), item.ttl)
      -- Node's registerOrJoin condition: #status <> :pending fails on ours
      local ok, err = admin:put_item{ TableName = T, Item = { pk = item.pk, sk = item.sk, status = "pending" },
        ConditionExpression = "attribute_not_exists(pk) OR #status <> :pending",
        ExpressionAttributeNames = { ["#status"] = "status" },
        ExpressionAttributeValues = { [":pending"] = "pending" } }
      assert.is_nil(ok)
      assert.are.equal("ConditionalCheckFailedException", err.code)
      assert.are.equal(job.job_id, raw(h).jobId)
      -- Node's deserializeResult: JSON.parse of the text, or the two markers
      rt.wall = T0 + 9
      assert(d:complete(h, { list = { 1, 2 }, nested = { ok = true } }))
      item = raw(h)
      assert.are.equal("completed", item.status)
      assert.are.equal(T0 + 9, item.updatedAt)
      assert.are.same({ list = { 1, 2 }, nested = { ok = true } }, cjson.decode(item.result))
    end)
  end)
end)
