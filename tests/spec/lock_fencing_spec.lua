-- A holder frozen (SIGSTOP) past its lease is fenced: another holder takes
-- the lock and writes the guarded item; when the frozen one wakes and does
-- its write with its old fence, DynamoDB rejects it. The worker is
-- lock_frozen_worker.lua, run as its own OS process.
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local H = require "test_helper"

local shell_quote, spec_dir, interpreter, bounded, mktemp_dir =
  H.shell_quote, H.spec_dir, H.interpreter, H.bounded, H.mktemp_dir

local wait_for_file, alive = H.wait_for_file, H.alive

describe("ddbkit.lock fencing of a frozen holder", function()
  local admin, T, dir, pid

  setup(function()
    admin = H.client()
    T = H.create_table(admin, H.unique("lockfz"), { range = false })
    dir = mktemp_dir()
  end)

  teardown(function()
    if pid then   -- never leave the worker stopped or running
      os.execute("kill -CONT " .. pid .. " 2>/dev/null; kill -KILL " .. pid .. " 2>/dev/null")
      pid = nil
    end
    admin:delete_table{ TableName = T }
    admin:close()
    if dir then os.execute("env -u LD_PRELOAD rm -rf " .. shell_quote(dir)) end
  end)

  it("rejects the frozen holder's late write and keeps the newer holder's", function()
    local log = dir .. "/worker.log"
    local cmd = bounded(table.concat({ interpreter(), shell_quote(spec_dir() .. "/lock_frozen_worker.lua"),
                                       shell_quote(H.endpoint), shell_quote(T), shell_quote(dir) }, " "), 90)
    os.execute(cmd .. " >" .. shell_quote(log) .. " 2>&1 </dev/null &")

    local line = wait_for_file(dir .. "/acquired", 30000, log)
    local fence1, p = line:match("^acquired (%d+) (%d+)")
    assert.is_truthy(fence1, "worker said: " .. line)
    pid, fence1 = p, tonumber(fence1)

    assert.is_truthy(os.execute("kill -STOP " .. pid))
    local ok_stop, stop_err = pcall(function()
      local locks = ddbkit.lock.new{ client = admin, table_name = T, key = { pk = "frozen-lock" } }
      -- the library waits for the 500 ms lease to lapse
      local h, err = locks:acquire{ lease_ms = 10000, wait_ms = 5000 }
      assert.is_nil(err)
      assert.is_truthy(h)
      assert.is_true(h.fence > fence1)

      local p2 = {}
      for k, v in pairs(h:fence_condition("fence")) do p2[k] = v end
      p2.TableName = T
      p2.Item = { pk = "guarded", fence = h.fence, writer = "test" }
      local res, werr = admin:put_item(p2)
      assert.is_nil(werr)
      assert.is_truthy(res)
      return h
    end)
    os.execute("kill -CONT " .. pid)
    local gf = assert(io.open(dir .. "/go", "w"))
    gf:close()
    if not ok_stop then error(stop_err, 0) end
    local h = stop_err

    local result = wait_for_file(dir .. "/result", 30000, log)
    assert.matches("write ConditionalCheckFailedException", result, 1, true)
    assert.matches("valid 0\n", result, 1, true)
    assert.matches("renew lost", result, 1, true)

    local item = assert(admin:get_item{ TableName = T, Key = { pk = "guarded" }, ConsistentRead = true }).Item
    assert.are.equal("test", item.writer)
    assert.are.equal(h.fence, item.fence)
    assert.is_true(h:release())

    -- the worker exits after publishing its result; wait (bounded) for it
    local deadline = core.mono_ms() + 30000
    while alive(pid) and core.mono_ms() < deadline do core.sleep_ms(10) end
    assert.is_false(alive(pid), "the worker did not exit")
    pid = nil
  end)
end)
