-- ddbkit.ratelimit in `make bench` (issue 12): requests and bytes read per
-- acquire at limits 10, 1,000 and 100,000 (the Node layout, compat.md A.3),
-- against DynamoDB Local. Exact counts from client:stats() (requests,
-- bytes_in: the response bytes), not timings; one run. Lua 5.4 or LuaJIT.
--
--   bench_ratelimit.lua ENDPOINT TABLE CALLS
--
-- Creates TABLE with the store schema unless it exists. For each limit
-- (window 60 s, so nothing leaves the window during a scenario), on a fresh
-- resource and a fresh store (a new process's view):
--   empty      CALLS acquires from an empty window
--   half-other the same after another process took half of the slots
--              (min(limit / 2, 5000), written as the Node package writes
--              them: this store has never seen them)
-- Prints one line per scenario:
--   RESULT bench=ratelimit limit=L scenario=S calls=N grants=G denials=D
--          req_per_call=X bytes_in_per_call=Y max_req=M queries=Q
-- and ends with exit status 1 when a scenario breaks the limit (more
-- grants than free slots) or an acquire fails.
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local die = common.die_for("bench_ratelimit")
local endpoint, tname, calls = arg[1], arg[2], common.whole(arg[3])
if not (endpoint and tname and calls and calls >= 1) then
  io.stderr:write("usage: bench_ratelimit.lua ENDPOINT TABLE CALLS\n")
  os.exit(2)
end

local LIMITS = { 10, 1000, 100000 }
local WINDOW_MS = 60000
local OTHER_MAX = 5000

local c = common.client(endpoint)

local _, derr = c:describe_table{ TableName = tname }
if derr and derr.code == "ResourceNotFoundException" then
  local ok, cerr = c:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, tname))
  if not ok then die("create_table %s: %s", tname, tostring(cerr)) end
  local desc, werr = c:wait_for_table(tname, 30000)
  if not desc then die("wait_for_table %s: %s", tname, tostring(werr)) end
elseif derr then
  die("describe_table %s: %s", tname, tostring(derr))
end

local run_id = require("ddbkit.core").uuid():sub(1, 8)   -- resources of this run only

-- Slots 0 .. count-1 of resource taken now by "another process".
local function other_slots(resource, count)
  local now = math.floor(c.runtime.now_ms())
  local reqs = {}
  local function flush()
    if #reqs == 0 then return end
    local ok, err = c:batch_write_item{ RequestItems = { [tname] = reqs } }
    if not ok then die("writing the other process's slots: %s", tostring(err)) end
    reqs = {}
  end
  for n = 0, count - 1 do
    reqs[#reqs + 1] = { PutRequest = { Item = { pk = "RATELIMIT_SLOT#" .. resource, sk = "SLOT#" .. n,
      timestamp = now, ttl = math.floor((now + WINDOW_MS) / 1000) } } }
    if #reqs == 25 then flush() end
  end
  flush()
end

local function scenario(limit, name, taken)
  local resource = ("bench-rl-%s-%d-%s"):format(run_id, limit, name)
  if taken > 0 then other_slots(resource, taken) end
  local rl = ddbkit.ratelimit.new{ client = c, table_name = tname,
                                   default_config = { limit = limit, window_ms = WINDOW_MS } }
  local grants, denials, requests, bytes, max, queries = 0, 0, 0, 0, 0, 0
  for i = 1, calls do
    c:reset_stats()
    local ok, err = rl:acquire(resource)
    local s = c:stats()
    if ok == nil then die("limit %d, %s: acquire %d: %s", limit, name, i, tostring(err)) end
    if ok then grants = grants + 1 else denials = denials + 1 end
    requests = requests + s.requests
    bytes = bytes + s.bytes_in
    if s.requests > max then max = s.requests end
    queries = queries + ((s.operations or {}).Query or { requests = 0 }).requests
  end
  if grants > limit - taken then
    die("limit %d, %s: %d grants with %d slots free", limit, name, grants, limit - taken)
  end
  print(("RESULT bench=ratelimit limit=%d scenario=%s calls=%d grants=%d denials=%d req_per_call=%.3f "
         .. "bytes_in_per_call=%.0f max_req=%d queries=%d")
    :format(limit, name, calls, grants, denials, requests / calls, bytes / calls, max, queries))
end

for _, limit in ipairs(LIMITS) do
  scenario(limit, "empty", 0)
  scenario(limit, "half-other", math.min(math.floor(limit / 2), OTHER_MAX))
end
c:close()
