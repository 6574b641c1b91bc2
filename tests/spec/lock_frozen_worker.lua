-- The holder that lock_fencing_spec.lua freezes with SIGSTOP:
--
--   lua lock_frozen_worker.lua ENDPOINT TABLE DIR
--
-- 1. acquires { pk = "frozen-lock" } with a 500 ms lease and publishes
--    DIR/acquired: "acquired <fence> <pid>";
-- 2. waits (bounded) for DIR/go to exist -- meanwhile the test stops it,
--    lets the lease lapse, takes the lock and continues it;
-- 3. does its guarded write on { pk = "guarded" } with its old fence anyway,
--    tries to renew, and publishes DIR/result:
--    "write <ok|error code>\nvalid <valid_ms before the write>\nrenew <ok|error code>\n".
-- Files are published by rename, so a reader never sees half of one.
local endpoint, table_name, dir = arg[1], arg[2], arg[3]
if not (endpoint and table_name and dir) then
  io.stderr:write("usage: lock_frozen_worker.lua ENDPOINT TABLE DIR\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local W = require "worker_util"
local exists, my_pid = W.exists, W.my_pid

local function publish(name, text)
  assert(W.publish(dir .. "/" .. name, text))
end

local function fail(what, err)
  publish("result", string.format("error %s: %s\n", what, tostring(err and (err.code or err) or "?")))
  os.exit(1)
end

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end

local locks = ddbkit.lock.new{ client = client, table_name = table_name, key = { pk = "frozen-lock" },
                                max_clock_skew_ms = 100 }
local h, err = locks:acquire{ lease_ms = 500, wait_ms = 5000 }
if not h then fail("acquire", err) end
publish("acquired", string.format("acquired %d %s\n", h.fence, my_pid()))

-- Wait for the go signal (an event: the file appears); bounded.
local deadline = core.mono_ms() + 60000
while not exists(dir .. "/go") do
  if core.mono_ms() > deadline then fail("wait", "no go signal within 60 s") end
  core.sleep_ms(5)
end

local valid = h:valid_ms()
local p = {}
for k, v in pairs(h:fence_condition("fence")) do p[k] = v end
p.TableName = table_name
p.Item = { pk = "guarded", fence = h.fence, writer = "frozen" }
local ok, werr = client:put_item(p)
local renewed, rerr = h:renew()
publish("result", string.format("write %s\nvalid %d\nrenew %s\n",
  ok and "ok" or tostring(werr and werr.code), math.floor(valid),
  renewed and "ok" or tostring(rerr and rerr.code)))
client:close()
os.exit(0)
