-- ddbkit from Lua in `make bench`: client:get_item{...} N times, the Item
-- decoded into a Lua table each time and checked. Runs on Lua 5.4 and on
-- LuaJIT (run.sh sets LUA_PATH/LUA_CPATH to the matching core.so).
--
--   lua5.4|luajit tests/bench/bench_lua.lua ENDPOINT TARGET CLIENT N WARMUP
--
-- Prints one line:
--   RESULT target=TARGET client=CLIENT n=N cpu_us_per_req=X req_per_s=Y
-- CPU is os.clock() (the process's CPU time, user+sys) over the measured
-- loop; wall time is ddbkit.core.mono_ms().
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local endpoint, target, name = arg[1], arg[2], arg[3]
local n, warmup = tonumber(arg[4]), tonumber(arg[5])
if not (endpoint and target and name and n and warmup) or n <= 0 or warmup < 0 then
  io.stderr:write("usage: bench_lua.lua ENDPOINT TARGET CLIENT N WARMUP\n")
  os.exit(2)
end

local c = common.client(endpoint)

local params = { TableName = "bench", Key = { pk = "p1" } }

local function run(count)
  for i = 1, count do
    local res, err = c:get_item(params)
    if not res then
      io.stderr:write(("bench_lua: request %d: %s\n"):format(i, tostring(err)))
      os.exit(1)
    end
    if not (res.Item and res.Item.pk == "p1") then
      io.stderr:write(("bench_lua: request %d: no item p1 in the response\n"):format(i))
      os.exit(1)
    end
  end
end

run(warmup)
local cpu_us, per_s = common.measure(c, n, run, n)

print(("RESULT target=%s client=%s n=%d cpu_us_per_req=%.2f req_per_s=%.0f")
  :format(target, name, n, cpu_us, per_s))
c:close()
