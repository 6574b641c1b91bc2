-- One acquirer of ratelimit_contention_spec.lua, run as its own OS process:
--
--   lua ratelimit_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS [MODE]
--
-- MODE: "plain" (default: ddbkit.ratelimit), or "adaptive:U:B":
-- ddbkit.adaptive whose strategy always splits the limit U for user, B for
-- background (this process's view of user activity, forced), acquiring
-- user and background in turn.
--
-- Calls acquire(RESOURCE) in a loop for RUN_MS (monotonic clock) and writes
-- one line per call to OUTFILE:
--   "G <granted_ms> <requests>"   a grant: the wall-clock ms stored with it
--   "D <requests>"                a denial
-- and, last, "R <first_call_wall_ms> <last_return_wall_ms>".
-- <granted_ms> is the last runtime now_ms that acquire read: the one for
-- the winning transaction (the slot's and log item's timestamp), or, when
-- that transaction was slow and the slot was stamped again, the second
-- stamp (caught by wrapping the runtime's now_ms); <requests> is client:stats().requests for that call.
-- After a denial it pauses a random 0..5 ms (through the runtime), as a
-- polite caller would, so six hot loops do not starve DynamoDB Local.
-- Exits 0 when done; on any failure prints why on stderr and exits 1.
--
-- Or, for the seeding test of ratelimit_spec.lua:
--
--   lua ratelimit_worker.lua --first-slot ENDPOINT TABLE RESOURCE PID ENTROPY
--
-- simulates a module preloaded before fork (nginx's init_by_lua): the
-- interpreter's random generator and ddbkit.core.uuid are fixed while
-- ddbkit.ratelimit loads, as they would be in every forked worker; after
-- the load uuid is real again ("real"), or fixed once more for its first
-- call ("fixed": the seed's, so only the process id differs between runs). The process id is PID, told by
-- an ngx stub (ngx.worker.pid). Then one acquire at the largest limit, and
-- prints the slot number it took.
if arg[1] == "--first-slot" then
  local endpoint, table_name, resource, pid, entropy = arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6]
  _G.ngx = { worker = { pid = function() return pid end } }
  math.randomseed(42)
  local core = require "ddbkit.core"
  local real_uuid = core.uuid
  local loading, fixed_after = true, entropy == "fixed" and 1 or 0
  core.uuid = function()
    if loading then return "0badf00d-0000-4000-8000-000000000000" end
    if fixed_after > 0 then      -- the first draw after the load: the seed's
      fixed_after = fixed_after - 1
      return "0badf00d-0000-4000-8000-000000000000"
    end
    return real_uuid()
  end
  local ratelimit = require "ddbkit.ratelimit"
  loading = false
  local ddbkit = require "ddbkit"
  local client = assert(ddbkit.client{
    region = "us-east-1", endpoint = endpoint, timeout_ms = 5000,
    runtime = require "ddbkit.runtime.blocking",    -- not OpenResty's, whatever the ngx stub says
    credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" } })
  local rl = ratelimit.new{ client = client, table_name = table_name,
                            default_config = { limit = ratelimit.MAX_LIMIT, window_ms = 60000 } }
  local ok, err = rl:acquire(resource)
  assert(ok == true, "acquire: " .. tostring(err and err.message))
  local slots = assert(client:query_all{ TableName = table_name, ConsistentRead = true,
    KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. resource } })
  assert(#slots == 1, "one slot")
  io.write(slots[1].sk:match("^SLOT#(%d+)$"), "\n")
  os.exit(0)
end

local endpoint, table_name, resource, outfile = arg[1], arg[2], arg[3], arg[4]
local run_ms, limit, window_ms = tonumber(arg[5]), tonumber(arg[6]), tonumber(arg[7])
local mode = arg[8] or "plain"
local split_user, split_background = mode:match("^adaptive:(%d+):(%d+)$")
if not (endpoint and table_name and resource and outfile and run_ms and limit and window_ms)
   or not (mode == "plain" or split_user) then
  io.stderr:write("usage: ratelimit_worker.lua ENDPOINT TABLE RESOURCE OUTFILE RUN_MS LIMIT WINDOW_MS "
                  .. "[plain|adaptive:U:B]\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"

local function fail(what, err)
  io.stderr:write(string.format("ratelimit_worker: %s: %s\n", what, tostring(err)))
  os.exit(1)
end

local last_now
local runtime = {
  send = blocking.send, sleep = blocking.sleep, mono_ms = blocking.mono_ms,
  now_ms = function()
    last_now = blocking.now_ms()
    return last_now
  end,
}

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000, runtime = runtime,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end

local rl, priorities
if split_user then
  local u, b = tonumber(split_user), tonumber(split_background)
  rl = ddbkit.adaptive.new{ client = client, table_name = table_name,
    default_config = { limit = limit, window_ms = window_ms },
    strategy = { name = "forced-" .. u .. "-" .. b, compute = function()
      return { user_reserved = u, background_max = b, background_paused = false, reason = "forced" }
    end } }
  priorities = { "user", "background" }
else
  rl = ddbkit.ratelimit.new{ client = client, table_name = table_name,
                             default_config = { limit = limit, window_ms = window_ms } }
end
local out = io.open(outfile, "w") or fail("open", outfile)

local lines = {}
local first_call = blocking.now_ms()
local deadline = blocking.mono_ms() + run_ms
-- LuaJIT starts every process on the same random sequence
math.randomseed(tonumber(require("ddbkit.core").uuid():sub(1, 8), 16))
while blocking.mono_ms() < deadline do
  client:reset_stats()
  local ok, err = rl:acquire(resource, priorities and priorities[#lines % 2 + 1])
  local n = client:stats().requests
  if ok == nil then fail("acquire", err) end
  if ok then
    lines[#lines + 1] = string.format("G %.0f %d", last_now, n)
  else
    lines[#lines + 1] = string.format("D %d", n)
    runtime.sleep(math.random(0, 5))
  end
end
lines[#lines + 1] = string.format("R %.0f %.0f", first_call, blocking.now_ms())
out:write(table.concat(lines, "\n"), "\n")
out:close()
client:close()
os.exit(0)
