-- ddbkit.idempotency across OS processes, against DynamoDB Local, in both
-- modes. The worker is idempotency_worker.lua; every handler run appends a
-- line with its pid to a per-key log file, which counts executions.
--
-- 1. Exactly once: 8 workers execute the same 50 keys, each in its own
--    shuffled order, all starting on one "go" file. Every key's handler ran
--    exactly once, and all 8 workers got that run's result.
-- 2. The same with a handler that raises: it ran once per key and all 8
--    workers got the same error (name, message, status).
-- 3. SIGKILL: a worker dies (kill -9) inside its handler, holding the key.
--    A later call from this process runs its own handler once the dead
--    holder's lease ran out, and returns that result. A worker killed after
--    its calls stored their results: later calls replay, never re-run.
--
-- Waits are for events (a file appears, a process is gone), each bounded;
-- every worker runs under `timeout` and is reaped by reading its pipe to EOF
-- (or, for the killed ones, by its `timeout` parent).
local H = require "test_helper"
local slurp = H.read_file
local core = require "ddbkit.core"
local idempotency = require "ddbkit.idempotency"
local schema = require "ddbkit.schema"

local WORKERS, KEYS = 8, 50
local WORKER_TIMEOUT_S = 180
local EVENT_WAIT_MS = 60000

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

local function lines_of(path)
  local s = slurp(path)
  if not s then return nil end
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

local function touch(path)
  local f = assert(io.open(path, "w"))
  f:close()
end

local function options_args(opts)
  local names = {}
  for k in pairs(opts) do names[#names + 1] = k end
  table.sort(names)
  local t = {}
  for i, k in ipairs(names) do t[i] = shell_quote(k .. "=" .. tostring(opts[k])) end
  return table.concat(t, " ")
end

describe("ddbkit.idempotency across processes", function()
  local admin, T, root
  local worker = spec_dir() .. "/idempotency_worker.lua"
  local killable = {}   -- pids of workers this spec may still have to kill

  setup(function()
    admin = H.client()
    T = H.unique("idemmp")
    assert(admin:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T, 30000))
    root = mktemp_dir()
  end)

  teardown(function()
    for pid in pairs(killable) do   -- never leave a blocked worker behind
      if H.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    end
    admin:delete_table{ TableName = T }
    admin:close()
    if root then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(root)) end
  end)

  local function scenario_dir(name)
    local dir = root .. "/" .. name
    assert(os.execute("env -u LD_PRELOAD mkdir -p " .. shell_quote(dir)))
    return dir
  end

  local function worker_cmd(dir, out, behaviour, prefix, n, opts)
    return bounded(table.concat({ interpreter(), shell_quote(worker), shell_quote(H.endpoint),
                                  shell_quote(T), shell_quote(dir), shell_quote(out), behaviour,
                                  shell_quote(prefix), tostring(n), options_args(opts) }, " "),
                   WORKER_TIMEOUT_S)
  end

  -- Starts WORKERS workers on the same keys, lets them go at once, reaps
  -- them; returns each one's output lines (asserting each exited 0).
  local function run_all(dir, behaviour, prefix, opts)
    local go = dir .. "/go"
    local o = { go = go }
    for k, v in pairs(opts) do o[k] = v end
    local procs = {}
    for i = 1, WORKERS do
      local out = string.format("%s/worker-%d.out", dir, i)
      local cmd = worker_cmd(dir, out, behaviour, prefix, KEYS, o)
      procs[i] = { out = out, pipe = assert(io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"", "r")) }
    end
    touch(go)
    for _, w in ipairs(procs) do
      w.log = w.pipe:read("*a")
      w.pipe:close()
    end
    local outputs = {}
    for i, w in ipairs(procs) do
      assert.are.equal("0", w.log:match("EXIT:(%d+)%s*$"),
                       string.format("worker %d failed (124 = timed out):\n%s", i, w.log))
      outputs[i] = assert(lines_of(w.out), "no output from worker " .. i)
    end
    return outputs
  end

  -- The pids in a key's log: one per handler run.
  local function runs_of(dir, key)
    return lines_of(dir .. "/" .. key .. ".log") or {}
  end

  -- Every worker reported every key once: outputs[i][key] = the rest of the line.
  local function by_key(outputs, prefix)
    local got = {}
    for i, lines in ipairs(outputs) do
      got[i] = {}
      for _, line in ipairs(lines) do
        local key, rest = line:match("^(%S+) (.*)$")
        assert.is_truthy(key, "bad line from worker " .. i .. ": " .. line)
        assert.is_nil(got[i][key], "worker " .. i .. " reported " .. key .. " twice")
        got[i][key] = rest
      end
      for k = 1, KEYS do
        local key = prefix .. "-" .. k
        assert.is_truthy(got[i][key], "worker " .. i .. " has no outcome for " .. key)
      end
      assert.are.equal(KEYS, #lines, "lines from worker " .. i)
    end
    return got
  end

  local CONTENTION = { lock_ttl_ms = 10000, lock_timeout_ms = 60000, lock_poll_interval_ms = 20 }

  for _, mode in ipairs{ "compat", "fast" } do
    describe(mode .. " mode", function()
      local function opts(extra)
        local o = { mode = mode }
        for k, v in pairs(extra) do o[k] = v end
        return o
      end

      it(string.format("%d processes x %d keys: each handler runs exactly once, everyone gets its result",
                       WORKERS, KEYS), function()
        local dir = scenario_dir(mode .. "-once")
        local prefix = H.unique("once-" .. mode)
        local got = by_key(run_all(dir, "ok", prefix, opts(CONTENTION)), prefix)
        local runners = {}
        for k = 1, KEYS do
          local key = prefix .. "-" .. k
          local runs = runs_of(dir, key)
          assert.are.equal(1, #runs, key .. " ran " .. #runs .. " times: " .. table.concat(runs, ","))
          local ran_by = runs[1]
          runners[ran_by] = true
          for i = 1, WORKERS do
            local rkey, by, n = got[i][key]:match("^OK (%S+) (%S+) (%S+)$")
            assert.is_truthy(rkey, "worker " .. i .. " for " .. key .. ": " .. got[i][key])
            assert.are.equal(key, rkey)
            assert.are.equal(ran_by, by, "worker " .. i .. " got the result of another run for " .. key)
            assert.are.equal(1, tonumber(n))
          end
        end
      end)

      it(string.format("%d processes x %d keys: a failing handler runs exactly once, everyone gets its error",
                       WORKERS, KEYS), function()
        local dir = scenario_dir(mode .. "-fail")
        local prefix = H.unique("fail-" .. mode)
        -- A handler's error is stored for min(lock_ttl_ms, ttl_ms) only (then
        -- the key may run again): a lease longer than the whole run keeps
        -- every worker's call within the stored error's life.
        local o = opts(CONTENTION)
        o.lock_ttl_ms = 120000
        local got = by_key(run_all(dir, "fail", prefix, o), prefix)
        for k = 1, KEYS do
          local key = prefix .. "-" .. k
          local runs = runs_of(dir, key)
          assert.are.equal(1, #runs, key .. " ran " .. #runs .. " times: " .. table.concat(runs, ","))
          for i = 1, WORKERS do
            assert.are.equal("ERR Declined Declined 402 no " .. key, got[i][key],
                             "worker " .. i .. " for " .. key)
          end
        end
      end)

      local KILL = { lock_ttl_ms = 1500, max_clock_skew_ms = 0, lock_poll_interval_ms = 20 }

      -- Starts one worker in the background and waits for its marker;
      -- returns its pid.
      local function start_marked(dir, behaviour, prefix, n)
        local marker = dir .. "/marker"
        local log = dir .. "/worker.log"
        local o = opts(KILL)
        o.marker = marker
        local cmd = worker_cmd(dir, dir .. "/worker.out", behaviour, prefix, n, o)
        assert.is_truthy(os.execute(cmd .. " >" .. shell_quote(log) .. " 2>&1 </dev/null &"))
        local pid = H.wait_for_file(marker, EVENT_WAIT_MS, log):match("^(%d+)\n$")
        assert.is_truthy(pid, "bad marker: " .. tostring(slurp(marker)))
        killable[pid] = true
        return pid, log
      end

      local function kill9(pid, log)
        assert.is_truthy(os.execute("kill -KILL " .. pid))
        local deadline = core.mono_ms() + EVENT_WAIT_MS
        while H.alive(pid) do
          if core.mono_ms() > deadline then error("worker " .. pid .. " survived SIGKILL") end
          core.sleep_ms(5)
        end
        killable[pid] = nil
        assert.is_nil(slurp(log):match("%S"), "the worker complained:\n" .. slurp(log))
      end

      local function local_idem()
        local o = opts(KILL)
        o.client, o.table_name = admin, T
        return idempotency.new(o)
      end

      it("a holder killed (SIGKILL) inside its handler: the next caller runs the handler after the lease", function()
        local dir = scenario_dir(mode .. "-kill-running")
        local prefix = H.unique("killrun-" .. mode)
        local key = prefix .. "-1"
        local pid, log = start_marked(dir, "hang", prefix, 1)
        assert.are.same({ pid }, runs_of(dir, key))
        kill9(pid, log)

        local idem = local_idem()
        local calls = 0
        local res, err = idem:execute(key, nil, function()
          calls = calls + 1
          local f = assert(io.open(dir .. "/" .. key .. ".log", "a"))
          f:write("spec\n")
          f:close()
          return { key = key, by = "spec", n = 1 }
        end)
        assert.is_nil(err)
        assert.are.same({ key = key, by = "spec", n = 1 }, res)
        assert.are.equal(1, calls)
        assert.are.same({ pid, "spec" }, runs_of(dir, key))

        -- and that result is the key's from now on
        local res2, err2 = idem:execute(key, nil, function() calls = calls + 1 return { by = "again" } end)
        assert.is_nil(err2)
        assert.are.same({ key = key, by = "spec", n = 1 }, res2)
        assert.are.equal(1, calls)
      end)

      it("a worker killed (SIGKILL) after its handlers stored their results: later calls replay them", function()
        local dir = scenario_dir(mode .. "-kill-done")
        local prefix = H.unique("killdone-" .. mode)
        local n = 5
        local pid, log = start_marked(dir, "done-hang", prefix, n)
        local outcomes = lines_of(dir .. "/worker.out")
        assert.are.equal(n, #outcomes)
        kill9(pid, log)

        local idem = local_idem()
        local calls = 0
        for k = 1, n do
          local key = prefix .. "-" .. k
          assert.are.same({ pid }, runs_of(dir, key))
          local res, err = idem:execute(key, nil, function()
            calls = calls + 1
            return { key = key, by = "spec", n = 2 }
          end)
          assert.is_nil(err)
          assert.are.same({ key = key, by = pid, n = 1 }, res)
        end
        assert.are.equal(0, calls)
        for k = 1, n do assert.are.same({ pid }, runs_of(dir, prefix .. "-" .. k)) end
      end)
    end)
  end
end)
