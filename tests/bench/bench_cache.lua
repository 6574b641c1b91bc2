-- ddbkit.cache in `make bench`: cache:get("h1") N times against the
-- "nginx-cache" server of tests/bench/nginx.conf.in, which answers every
-- GetItem with the cache entry CACHE#h1 (Node layout, ttl 0) whose value is
-- the JSON text {"user":"ada","n":42,"tags":["a","b"]}. Every call is a
-- hit: one signed GetItem, the Item decoded, the value's JSON text decoded
-- into a Lua table, which is checked each time. Runs on Lua 5.4 and on
-- LuaJIT (run.sh sets LUA_PATH/LUA_CPATH to the matching core.so).
--
--   lua5.4|luajit tests/bench/bench_cache.lua ENDPOINT TARGET CLIENT N WARMUP
--
-- Prints one line:
--   RESULT target=TARGET client=CLIENT bench=cache-get n=N cpu_us_per_req=X req_per_s=Y
-- CPU is os.clock() (the process's CPU time, user+sys) over the measured
-- loop; wall time is ddbkit.core.mono_ms(). The request count is checked
-- too (client:stats(): exactly one request per get).
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local endpoint, target, name = arg[1], arg[2], arg[3]
local n, warmup = tonumber(arg[4]), tonumber(arg[5])
if not (endpoint and target and name and n and warmup) or n <= 0 or warmup < 0 then
  io.stderr:write("usage: bench_cache.lua ENDPOINT TARGET CLIENT N WARMUP\n")
  os.exit(2)
end

local c = common.client(endpoint)
local cache = require("ddbkit.cache").new{ client = c, table_name = "bench" }

local function run(count)
  for i = 1, count do
    local v, err = cache:get("h1")
    if v == nil then
      io.stderr:write(("bench_cache: get %d: %s\n"):format(i, err and tostring(err) or "a miss"))
      os.exit(1)
    end
    local tags = v.tags
    if not (v.user == "ada" and v.n == 42 and tags and tags[1] == "a" and tags[2] == "b"
            and tags[3] == nil) then
      io.stderr:write(("bench_cache: get %d: not the stored value\n"):format(i))
      os.exit(1)
    end
  end
end

run(warmup)
local cpu_us, per_s, requests = common.measure(c, n, run, n)
if requests ~= n then
  io.stderr:write(("bench_cache: %d gets sent %d requests (expected one each)\n"):format(n, requests))
  os.exit(1)
end

print(("RESULT target=%s client=%s bench=cache-get n=%d cpu_us_per_req=%.2f req_per_s=%.0f")
  :format(target, name, n, cpu_us, per_s))
c:close()
