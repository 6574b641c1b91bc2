-- The coroutine runtime (ddbkit.runtime.coroutine) and the scheduler behind
-- ddbkit.spawn / step / fds / run / register, against DynamoDB Local: calls
-- in tasks overlap on the engine's event loop, sleeps are timers, every
-- store runs unchanged, retries happen inside the loop, misuse raises and
-- task errors are reported. Also the loop binding (core.loop_new) on its
-- own: completions, raw calls, error details, and a client closed or a loop
-- collected while calls are in flight (the ASan run checks those).
-- Locks and idempotency run here too, through the lock machine: tasks
-- wait for each other's leases on the scheduler's timers, and a lease is
-- kept by a task while a slow handler sleeps.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local scheduler = require "ddbkit.scheduler"
local corort = require "ddbkit.runtime.coroutine"
local cjson = require "cjson.safe"

-- Steps until no task is live (or fails after `seconds`).
local function drain(seconds)
  local deadline = core.mono_ms() + (seconds or 30) * 1000
  while true do
    local n, err = ddbkit.step(50)
    assert(n, err)
    if n == 0 then return end
    assert(core.mono_ms() < deadline, "tasks still live after " .. (seconds or 30) .. " s")
  end
end

describe("coroutine runtime", function()
  local admin, client, T, S

  setup(function()
    admin = H.client()
    T = H.create_table(admin, H.unique("co"))
    S = H.store_table(admin, "costore")
    client = H.client{ runtime = corort }
  end)

  teardown(function()
    drain()
    admin:delete_table{ TableName = T }
    admin:delete_table{ TableName = S }
    client:close()
    admin:close()
  end)

  it("runs 200 tasks' calls concurrently, every answer right", function()
    scheduler.reset_stats()
    -- 200 connects at once overflow DynamoDB Local's listen backlog (50):
    -- the kernel resends a dropped SYN after 1 s, the default connect
    -- timeout. The engine's loop opens one connection per call in flight.
    local client = H.client{ runtime = corort, connect_timeout_ms = 5000 }
    local tasks = {}
    for i = 1, 200 do
      tasks[i] = ddbkit.spawn(function(n)
        local key = { pk = "k" .. n, sk = "s" }
        assert(client:put_item{ TableName = T, Item = { pk = key.pk, sk = key.sk, n = n, tag = "v" .. n } })
        local res = assert(client:get_item{ TableName = T, Key = key, ConsistentRead = true })
        return res.Item
      end, i)
    end
    drain(60)
    for i = 1, 200 do
      local ok, item = tasks[i]:result()
      assert.is_true(ok, tostring(item))
      assert.same({ pk = "k" .. i, sk = "s", n = i, tag = "v" .. i }, item)
    end
    local st = scheduler.stats()
    assert.is_true(st.max_in_flight > 1, "max in flight " .. st.max_in_flight)
    assert.equal(0, st.in_flight)
    assert.equal(0, st.live)
    client:close()
  end)

  it("lets other tasks' calls complete while a task sleeps", function()
    assert(ddbkit.run(function() return client:describe_table{ TableName = T } end)) -- warm
    -- The sleeper sleeps (20 ms at a time) until 3 calls of the other task
    -- completed meanwhile: an event, not a race against a sleep's length.
    local events, asleep, during = {}, nil, 0
    local sleeper = ddbkit.spawn(function()
      asleep = true
      events[#events + 1] = "sleep"
      repeat corort.sleep(20) until during >= 3
      asleep = false
      events[#events + 1] = "woke"
    end)
    local worker = ddbkit.spawn(function()
      for i = 1, 2000 do
        assert(client:put_item{ TableName = T, Item = { pk = "sleep", sk = tostring(i) } })
        if asleep then during = during + 1 end
        events[#events + 1] = "call"
        if asleep == false then break end
      end
      return during
    end)
    drain()
    assert.is_true((sleeper:result()))
    local ok, during = worker:result()
    assert.is_true(ok, tostring(during))
    assert.is_true(during >= 3, "calls did not complete during the sleep")
    assert.equal("sleep", events[1])
    local woke
    for i, e in ipairs(events) do if e == "woke" then woke = i end end
    assert.is_truthy(woke)
    assert.equal("call", events[woke - 1])   -- calls completed before the wake-up
  end)

  describe("every store, unchanged", function()
    it("cache: set then get", function()
      local ok, got = ddbkit.run(function()
        local cache = ddbkit.cache.new{ client = client, table_name = S }
        assert(cache:set("h1", { body = "hello", n = 3 }, 60))
        return cache:get("h1")
      end)
      assert.is_true(ok, tostring(got))
      assert.same({ body = "hello", n = 3 }, got)
    end)

    it("dedupe: the owner completes while a joiner waits", function()
      local d = ddbkit.dedupe.new{ client = client, table_name = S, poll_interval_ms = 20 }
      local hash, order = H.unique("job"), {}
      -- Each task waits for the other's step by polling a shared flag on
      -- the scheduler's timers: ordered by events, not by sleep lengths.
      local function await(what)
        for _ = 1, 2000 do
          for _, e in ipairs(order) do if e == what then return end end
          corort.sleep(5)
        end
        error("never saw: " .. what)
      end
      local owner = ddbkit.spawn(function()
        local job = assert(d:register_or_join(hash))
        order[#order + 1] = "owner registered"
        await("joiner joined")
        order[#order + 1] = "owner completes"
        return job.is_owner, assert(d:complete(hash, { answer = 42 }))
      end)
      local joiner = ddbkit.spawn(function()
        await("owner registered")
        local job = assert(d:register_or_join(hash))
        order[#order + 1] = "joiner joined"
        local v = d:wait_for(hash)
        order[#order + 1] = "joiner got it"
        return job.is_owner, v
      end)
      drain()
      local ok, is_owner, completed = owner:result()
      assert.is_true(ok, tostring(is_owner))
      assert.is_true(is_owner)
      assert.is_true(completed)
      local jok, jowner, v = joiner:result()
      assert.is_true(jok, tostring(jowner))
      assert.is_false(jowner)
      assert.same({ answer = 42 }, v)
      assert.same({ "owner registered", "joiner joined", "owner completes", "joiner got it" }, order)
    end)

    it("ratelimit: acquires until refused", function()
      local ok, grants, remaining = ddbkit.run(function()
        local rl = ddbkit.ratelimit.new{ client = client, table_name = S,
                                         default_config = { limit = 3, window_ms = 60000 } }
        local res, g = H.unique("res"), {}
        repeat
          local r, err = rl:acquire(res)
          assert(r ~= nil, tostring(err))
          g[#g + 1] = r
        until r == false or #g > 10
        return g, assert(rl:get_status(res)).remaining
      end)
      assert.is_true(ok, tostring(grants))
      assert.same({ true, true, true, false }, grants)
      assert.equal(0, remaining)
    end)

    it("adaptive: acquires for both priorities", function()
      local ok, u, b = ddbkit.run(function()
        local a = ddbkit.adaptive.new{ client = client, table_name = S,
                                       default_config = { limit = 10, window_ms = 60000 } }
        local res = H.unique("ares")
        return a:acquire(res, "user"), a:acquire(res, "background")
      end)
      assert.is_true(ok, tostring(u))
      assert.is_true(u)
      assert.is_true(b)
    end)

    it("stores in many tasks at once share one loop", function()
      scheduler.reset_stats()
      local cache = ddbkit.cache.new{ client = client, table_name = S }
      local tasks = {}
      for i = 1, 20 do
        tasks[i] = ddbkit.spawn(function()
          assert(cache:set("many" .. i, { i = i }, 60))
          return cache:get("many" .. i)
        end)
      end
      drain()
      for i = 1, 20 do
        local ok, v = tasks[i]:result()
        assert.is_true(ok, tostring(v))
        assert.same({ i = i }, v)
      end
      assert.is_true(scheduler.stats().max_in_flight > 1)
    end)
  end)

  describe("locks and idempotency, unchanged", function()
    it("tasks take turns on one lock; a waiter's wait is a timer, not a block", function()
      local name = H.unique("lock")
      local locks = ddbkit.lock.new{ client = client, table_name = T, key = { pk = name, sk = name } }
      local holding, overlaps, fences, other_calls = 0, 0, {}, 0
      local function contender()
        for _ = 1, 3 do
          local h = assert(locks:acquire{ lease_ms = 5000, wait_ms = 20000 })
          holding = holding + 1
          if holding > 1 then overlaps = overlaps + 1 end
          fences[#fences + 1] = h.fence
          corort.sleep(10)
          holding = holding - 1
          assert(h:release())
        end
      end
      local contenders = {}
      for i = 1, 4 do contenders[i] = ddbkit.spawn(contender) end
      local function all_done()
        for _, t in ipairs(contenders) do if not t:done() then return false end end
        return true
      end
      -- an unrelated task keeps making calls while the others wait
      local bystander = ddbkit.spawn(function()
        while not all_done() do
          assert(client:describe_table{ TableName = T })
          other_calls = other_calls + 1
        end
      end)
      drain(60)
      assert.is_true((bystander:result()))
      for _, t in ipairs(contenders) do
        local ok, err = t:result()
        assert.is_true(ok, tostring(err))
      end
      assert.are.equal(0, overlaps)
      assert.are.equal(12, #fences)
      for i = 2, #fences do assert.is_true(fences[i] > fences[i - 1]) end
      assert.is_true(other_calls > 0)
    end)

    it("10 tasks execute one key: the handler runs once, all get its result", function()
      local IT = H.unique("coidem")
      assert(admin:create_table(require("ddbkit.schema").create_table_params(
        require("ddbkit.schema").IDEMPOTENCY_TABLE_SCHEMA, IT)))
      assert(admin:wait_for_table(IT, 30000))
      for _, mode in ipairs{ "compat", "fast" } do
        local idem = ddbkit.idempotency.new{ client = client, table_name = IT, mode = mode,
                                             lock_ttl_ms = 600, max_clock_skew_ms = 0,
                                             lock_poll_interval_ms = 20 }
        local key, runs, results = H.unique("k"), 0, {}
        for i = 1, 10 do
          ddbkit.spawn(function()
            local r, err = idem:execute(key, nil, function()
              runs = runs + 1
              corort.sleep(1000)   -- longer than the lease: the keeper task renews it
              return { by = i }
            end)
            results[#results + 1] = r and r.by or tostring(err)
          end)
        end
        drain(60)
        assert.are.equal(1, runs, mode)
        assert.are.equal(10, #results, mode)
        for _, by in ipairs(results) do assert.are.equal(results[1], by, mode) end
        assert.are.equal("number", type(results[1]), mode)
      end
      admin:delete_table{ TableName = IT }
    end)
  end)

  describe("retries", function()
    local proxied
    setup(function()
      if H.proxy then proxied = H.proxied_client{ runtime = corort, base_delay_ms = 5 } end
    end)
    teardown(function()
      if H.proxy then H.clear_faults() end
      if proxied then proxied:close() end
    end)

    local function retried(fault)
      if not H.proxy then pending("no fault proxy") return end
      H.faults{ fault }
      proxied:reset_stats()
      local ok, res, err = ddbkit.run(function()
        return proxied:put_item{ TableName = T, Item = { pk = "retry", sk = fault.kind } }
      end)
      assert.is_true(ok)
      assert.is_truthy(res, tostring(err))
      local st = proxied:stats()
      assert.equal(1, st.retries)
      assert.equal(2, st.requests)
    end

    it("a 500 then success completes inside a task", function()
      retried({ kind = "status", status = 500, count = 1, match = "PutItem" })
    end)

    it("a throttle then success completes inside a task", function()
      retried({ kind = "throttle", count = 1, match = "PutItem" })
    end)

    it("sends a write at most max_attempts times when answers are lost, ambiguous", function()
      if not H.proxy then pending("no fault proxy") return end
      local key = { pk = "ambig", sk = H.unique("n") }
      local ok, res, err = ddbkit.run(function()
        assert(proxied:get_item{ TableName = T, Key = { pk = "x", sk = "y" } })  -- a pooled connection
        proxied:reset_stats()
        H.reset_proxy_stats()
        H.faults{ { kind = "drop_response", count = 10, match = "UpdateItem" } }
        return proxied:update_item{ TableName = T, Key = key, UpdateExpression = "ADD n :one",
                                    ExpressionAttributeValues = { [":one"] = 1 } }
      end)
      H.clear_faults()
      assert.is_true(ok)
      assert.is_nil(res)
      assert.equal("ConnectionError", err.code)
      assert.is_true(err.ambiguous)
      local st, ps = proxied:stats(), H.proxy_stats()
      assert.equal(3, st.requests)
      assert.equal(ps.requests, st.requests)
      local got = assert(admin:get_item{ TableName = T, Key = key, ConsistentRead = true })
      assert.equal(3, got.Item.n)
    end)

    it("gives up like the blocking client, with the error", function()
      if not H.proxy then pending("no fault proxy") return end
      H.faults{ { kind = "throttle", count = 10, match = "GetItem" } }
      local ok, res, err = ddbkit.run(function()
        return proxied:get_item{ TableName = T, Key = { pk = "x", sk = "y" } }
      end)
      H.clear_faults()
      assert.is_true(ok)
      assert.is_nil(res)
      assert.equal("ThrottlingException", err.code)
    end)
  end)

  describe("results and errors as core.call gives them", function()
    it("the missing-table message, a validation error, ALL_OLD items", function()
      local ok, a, b, c = ddbkit.run(function()
        local _, e1 = client:get_item{ TableName = "nope-" .. H.unique(), Key = { pk = "a" } }
        local _, e2 = client:put_item{ TableName = T, Item = { pk = "a", sk = "b", f = print } }
        assert(client:put_item{ TableName = T, Item = { pk = "old", sk = "1", v = 7 } })
        local _, e3 = client:put_item{ TableName = T, Item = { pk = "old", sk = "1" },
          ConditionExpression = "attribute_not_exists(pk)", ReturnValuesOnConditionCheckFailure = "ALL_OLD" }
        return e1, e2, e3
      end)
      assert.is_true(ok, tostring(a))
      local _, blocking_err = admin:get_item{ TableName = "nope-x", Key = { pk = "a" } }
      assert.equal("ResourceNotFoundException", a.code)
      assert.equal(blocking_err.message:gsub("nope%-x", ""), (a.message:gsub("nope%-[^\"]*", "")))
      assert.matches("was not found", a.message)
      assert.equal(core.error_mt, getmetatable(a))
      assert.equal("ValidationException", b.code)
      assert.equal("ConditionalCheckFailedException", c.code)
      assert.same({ pk = "old", sk = "1", v = 7 }, c.item)
    end)

    it("call_raw: the body on success, err and the error body on failure", function()
      local ok, body, err, ebody = ddbkit.run(function()
        local b = corort.call_raw(client.core, "DescribeTable", cjson.encode{ TableName = T })
        local _, e, eb = corort.call_raw(client.core, "DescribeTable", '{"TableName":"nope-raw"}')
        return b, e, eb
      end)
      assert.is_true(ok, tostring(body))
      assert.equal(T, cjson.decode(body).Table.TableName)
      assert.equal("ResourceNotFoundException", err.code)
      assert.matches("ResourceNotFoundException", ebody)
    end)
  end)

  describe("misuse and failures", function()
    it("a call or sleep outside a task raises", function()
      assert.has_error(function() client:get_item{ TableName = T, Key = { pk = "a", sk = "b" } } end,
        "ddbkit: a call outside a ddbkit task would block; use ddbkit.spawn")
      assert.has_error(function() corort.sleep(10) end,
        "ddbkit: a sleep outside a ddbkit task would block; use ddbkit.spawn")
      -- a coroutine of the host's own that is not registered is outside too
      local co = coroutine.create(function() return client:get_item{ TableName = T, Key = { pk = "a", sk = "b" } } end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("outside a ddbkit task", err)
    end)

    it("keeps a task's error as its result and reports it; the step returns", function()
      local seen = {}
      local saved = scheduler.on_error
      scheduler.on_error = function(task, err, tb) seen[#seen + 1] = { task = task, err = err, tb = tb } end
      local bad = ddbkit.spawn(function()
        assert(client:put_item{ TableName = T, Item = { pk = "e", sk = "1" } })
        error("boom after a call")
      end)
      local good = ddbkit.spawn(function()
        return assert(client:get_item{ TableName = T, Key = { pk = "e", sk = "1" }, ConsistentRead = true })
      end)
      local ok, err = pcall(drain)
      scheduler.on_error = saved
      assert.is_true(ok, tostring(err))
      local bok, berr = bad:result()
      assert.is_false(bok)
      assert.matches("boom after a call", berr)
      assert.equal(1, #seen)
      assert.equal(bad, seen[1].task)
      assert.matches("boom after a call", seen[1].tb)
      assert.matches("traceback", seen[1].tb)
      assert.is_true((good:result()))
    end)

    it("refuses step from inside a task", function()
      local ok, err = ddbkit.run(function() return pcall(ddbkit.step, 0) end)
      assert.is_true(ok)
      assert.is_false(err)
    end)

    it("cancels a sleeping task and a task with a call in flight", function()
      local reached = false
      local sleeper = ddbkit.spawn(function() corort.sleep(10000) reached = true end)
      local caller = ddbkit.spawn(function()
        client:put_item{ TableName = T, Item = { pk = "cancel", sk = "1" } }
        reached = true
      end)
      -- started in order in one step: by now one sleeps, one waits on its call
      local canceller = ddbkit.spawn(function()
        assert(not sleeper:done() and not caller:done())
        return sleeper:cancel(), caller:cancel(), caller:cancel()
      end)
      drain()
      assert.same({ true, true, true, false }, { canceller:result() })
      assert.is_false(reached)
      assert.same({ false, "cancelled" }, { sleeper:result() })
      assert.same({ false, "cancelled" }, { caller:result() })
      -- the call was aborted: its completion came back from the step that
      -- ran the canceller
      assert.equal(0, scheduler.stats().in_flight)
    end)

    it("aborts a cancelled task's call on the wire, and its retry backoff", function()
      if not H.proxy then pending("no fault proxy") return end
      -- Backoffs drawn under a ten-minute ceiling, and attempts enough that
      -- an early draw only means another 500 and another backoff.
      local proxied = H.proxied_client{ runtime = corort, base_delay_ms = 600000,
                                        max_backoff_ms = 600000, max_attempts = 20 }
      finally(function() H.clear_faults() proxied:close() end)
      -- A put that the proxy holds for a minute; a get answered 500 every
      -- time, so it is always in a backoff or an attempt.
      H.faults{ { kind = "delay", ms = 60000, forward = false, match = "PutItem" },
                { kind = "status", status = 500, match = "GetItem", count = 1000 } }
      H.reset_proxy_stats()
      local put = ddbkit.spawn(function()
        return proxied:put_item{ TableName = T, Item = { pk = "abort", sk = "1" } }
      end)
      local get = ddbkit.spawn(function()
        return proxied:get_item{ TableName = T, Key = { pk = "abort", sk = "1" } }
      end)
      -- until the proxy holds the put and the get has had its 500
      local stats = proxied:stats()
      while H.proxy_stats().requests < 2 or stats.requests < 1 do
        ddbkit.step(20)
        stats = proxied:stats()
      end
      assert.equal(2, scheduler.stats().in_flight)
      assert.is_true(put:cancel())
      assert.is_true(get:cancel())
      -- a host's poll is told not to wait: the completions are there
      local fds, timeout = ddbkit.fds()
      assert.equal(0, timeout, "fds() after a cancel: " .. tostring(#fds) .. " fds")
      ddbkit.step(0)
      assert.equal(0, scheduler.stats().in_flight)
      assert.same({ false, "cancelled" }, { put:result() })
      assert.same({ false, "cancelled" }, { get:result() })
      stats = proxied:stats()
      assert.equal(2, stats.errors)
      assert.equal(2, stats.error_codes.Cancelled)
      -- every request sent: the get's 500s, and the put the proxy held
      -- (sent, so counted, though the cancel cut its wait)
      assert.equal(1, stats.operations.PutItem.requests)
      assert.is_true(stats.operations.GetItem.requests >= 1)
      -- nothing of the put was carried out (the proxy never forwarded it)
      assert.is_nil(admin:get_item{ TableName = T, Key = { pk = "abort", sk = "1" } }.Item)
    end)

    it("result() before the end says so", function()
      local t = ddbkit.spawn(function() corort.sleep(1) return "x" end)
      assert.same({ nil, "ddbkit: the task is not done" }, { t:result() })
      drain()
      assert.same({ true, "x" }, { t:result() })
    end)
  end)

  describe("hosts", function()
    it("fds() gives sockets and a timeout for a poll; step(0) makes progress", function()
      local tasks = {}
      for i = 1, 10 do
        tasks[i] = ddbkit.spawn(function()
          assert(client:put_item{ TableName = T, Item = { pk = "fds", sk = tostring(i) } })
          corort.sleep(5)
          return assert(client:get_item{ TableName = T, Key = { pk = "fds", sk = tostring(i) } }).Item.sk
        end)
      end
      local fds, t = ddbkit.fds()
      assert.equal(0, t)               -- spawned tasks are ready: step now
      assert.same({}, fds)
      local saw_fd, steps = false, 0
      local deadline = core.mono_ms() + 30000
      while ddbkit.step(0) > 0 do
        steps = steps + 1
        fds, t = ddbkit.fds()
        assert.is_number(t)
        assert.is_true(t >= -1)
        for _, f in ipairs(fds) do
          assert.is_number(f.fd)
          assert.is_boolean(f.read)
          assert.is_boolean(f.write)
          assert.is_true(f.read or f.write)
          saw_fd = true
        end
        assert(core.mono_ms() < deadline, "no progress")
      end
      assert.is_true(saw_fd, "never saw a socket to poll")
      assert.is_true(steps > 1)
      for i = 1, 10 do assert.same({ true, tostring(i) }, { tasks[i]:result() }) end
      assert.same({}, (ddbkit.fds()))
      assert.equal(-1, select(2, ddbkit.fds()))
    end)

    it("a registered host coroutine: the host resumes it first, ddbkit after its calls", function()
      local co = coroutine.create(function(n)
        assert(client:put_item{ TableName = T, Item = { pk = "reg", sk = "1", n = n } })
        local item = assert(client:get_item{ TableName = T, Key = { pk = "reg", sk = "1" },
                                             ConsistentRead = true }).Item
        return item.n * 2
      end)
      local task = ddbkit.register(co)
      assert.equal(task, ddbkit.register(co))
      assert.is_true(coroutine.resume(co, 21))     -- runs to its first call
      assert.equal("suspended", coroutine.status(co))
      assert.is_false(task:done())
      drain()
      assert.equal("dead", coroutine.status(co))
      assert.same({ true, 42 }, { task:result() })
    end)

    it("a registered coroutine that ends in its host's resume is done", function()
      local co = coroutine.create(function() return 1 end)
      local task = ddbkit.register(co)
      assert.is_true(coroutine.resume(co))
      assert.is_true(task:done())
      assert.equal(0, ddbkit.step(0))
    end)

    it("run returns the function's results, other tasks going on meanwhile", function()
      local other = ddbkit.spawn(function() corort.sleep(1) return "other" end)
      assert.same({ true, "a", 2 }, { ddbkit.run(function(x) corort.sleep(2) return x, 2 end, "a") })
      drain()
      assert.same({ true, "other" }, { other:result() })
    end)
  end)

  describe("the loop binding", function()
    it("delivers completions with their tokens", function()
      local loop = assert(core.loop_new())
      local cc = client.core
      assert.is_true(loop:submit(cc, "PutItem", { TableName = T, Item = { pk = "lb", sk = "1" } }, "put"))
      assert.is_true(loop:submit_raw(cc, "DescribeTable", cjson.encode{ TableName = T }, { "raw" }))
      local bad, err = loop:submit(cc, "PutItem", { TableName = T, Item = { pk = "lb", sk = "2", f = print } }, 1)
      assert.is_nil(bad)
      assert.equal("ValidationException", err.code)
      assert.equal(2, loop:pending())
      local got, deadline = {}, core.mono_ms() + 20000
      while #got < 2 do
        local pending, comps = loop:step(100)
        assert.is_number(pending)
        for _, c in ipairs(comps) do got[#got + 1] = c end
        assert(core.mono_ms() < deadline)
      end
      assert.equal(0, loop:pending())
      table.sort(got, function(a, b) return type(a.token) < type(b.token) end)
      assert.equal("put", got[1].token)
      assert.same({}, got[1].result)
      assert.equal("raw", got[2].token[1])
      assert.equal(T, cjson.decode(got[2].result).Table.TableName)
      assert.has_error(function() loop:submit(cc, "GetItem", {}, nil) end)
      assert.has_error(function() loop:submit({}, "GetItem", {}, 1) end)
    end)

    it("survives a client closed, and a loop collected, with calls in flight", function()
      local loop = assert(core.loop_new())
      local c1 = H.client()
      assert.is_true(loop:submit(c1.core, "DescribeTable", { TableName = T }, "a"))
      c1:close()
      assert.has_error(function() c1:describe_table{ TableName = T } end, "client is closed")
      local comps, deadline = {}, core.mono_ms() + 20000
      while #comps == 0 do
        local _, cs = loop:step(100)
        comps = cs
        assert(core.mono_ms() < deadline)
      end
      assert.equal(T, comps[1].result.Table.TableName)

      local c2 = H.client()
      local loop2 = assert(core.loop_new())
      for i = 1, 5 do assert.is_true(loop2:submit(c2.core, "DescribeTable", { TableName = T }, i)) end
      c2:close()
      c2, loop2 = nil, nil   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      -- a loop and client collected in one cycle, calls in flight
      local c3 = H.client()
      local loop3 = assert(core.loop_new())
      assert.is_true(loop3:submit(c3.core, "DescribeTable", { TableName = T }, 1))
      c3, loop3 = nil, nil   -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)
  end)
end)
