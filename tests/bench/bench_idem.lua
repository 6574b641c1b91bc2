-- Idempotency (ddbkit.idempotency) in `make bench`, against DynamoDB Local
-- only. Runs on Lua 5.4 and on LuaJIT (run.sh sets LUA_PATH/LUA_CPATH to the
-- matching core.so). Two modes:
--
--   bench_idem.lua setup ENDPOINT TABLE
--       Creates TABLE with ddbkit.schema.IDEMPOTENCY_TABLE_SCHEMA (HASH key
--       cacheKey) unless it exists, and waits until it is active. The table
--       is left in place, like `bench` and `bench_stores` (DynamoDB Local
--       runs in memory and is stopped at the end).
--
--   bench_idem.lua run ENDPOINT TABLE CLIENT MODE LRU N WARMUP
--       MODE is compat or fast, LRU the lru_size (0: none; only with fast).
--       One idempotency instance on TABLE; the keys are new to the table
--       (they carry CLIENT, MODE, LRU and the start time of this process).
--       Every call is
--         idem:execute(key, { method = "POST", path = "/orders",
--                             body = '{"sku":"abc","qty":1}' }, handler)
--       where handler(ctx) returns { id = i, status = "created" }.
--       WARMUP unmeasured keys (a first call and a replay each), then:
--         first   N measured calls on N distinct new keys (the handler runs,
--                 the result is stored),
--         replay  the same N keys again, in the same order (every one
--                 stored: the handler must not run, the stored result comes
--                 back).
--       Every result is checked (id and status, and the handler ran exactly
--       once per key); a wrong one or an error ends the run with exit
--       status 1. Prints one line per phase:
--         RESULT target=ddblocal client=CLIENT bench=idem mode=MODE lru=LRU
--                phase=first|replay n=N requests_per_call=X
--                cpu_us_per_call=Y calls_per_s=Z
--       requests are client:stats().requests (every HTTP request sent,
--       retries included), CPU is os.clock() (user+sys of the process, so
--       also the engine's lease-renewal thread), wall time is
--       ddbkit.core.mono_ms(), all over the measured loop only.
--
-- With LRU > 0 a replay is served from the in-process LRU only while the
-- key is still in it: N must not exceed LRU for the replay to cost 0
-- requests (the first calls put keys in order, so a replay of more than LRU
-- keys in the same order finds each one just evicted).
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local core = require "ddbkit.core"
local schema = require "ddbkit.schema"
local idempotency = require "ddbkit.idempotency"

local mode = arg[1]
local BODY = '{"sku":"abc","qty":1}'

local die = common.die_for("bench_idem")

local function usage()
  io.stderr:write([[
usage: bench_idem.lua setup ENDPOINT TABLE
       bench_idem.lua run   ENDPOINT TABLE CLIENT compat|fast LRU N WARMUP
]])
  os.exit(2)
end

local whole = common.whole

-- ------------------------------------------------------------ setup

local function run_setup(endpoint, tbl)
  local c = common.client(endpoint)
  local _, err = c:describe_table{ TableName = tbl }
  if err and err.code == "ResourceNotFoundException" then
    local ok, cerr = c:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, tbl))
    if not ok then die("create_table %s: %s", tbl, tostring(cerr)) end
    local desc, werr = c:wait_for_table(tbl, 30000)
    if not desc then die("wait_for_table %s: %s", tbl, tostring(werr)) end
  elseif err then
    die("describe_table %s: %s", tbl, tostring(err))
  end
  c:close()
end

-- -------------------------------------------------------------- run

local function run_calls(endpoint, tbl, name, mode_name, lru, n, warmup)
  local c = common.client(endpoint)
  local idem = idempotency.new{
    client = c, table_name = tbl, mode = mode_name,
    lru_size = lru > 0 and lru or nil,
  }
  local prefix = ("bench-%s-%s-%d-%d-"):format(name, mode_name, lru, core.now_ms())
  local ctx = { method = "POST", path = "/orders", body = BODY }
  local ran = 0    -- handler runs so far
  local current    -- the id the handler of the current call returns

  local function handler()
    ran = ran + 1
    return { id = current, status = "created" }
  end

  -- Calls keys first..last (ids first..last); `expect_runs` is how many
  -- handler runs the loop must add.
  local function loop(first, last, phase, expect_runs)
    local ran0 = ran
    for i = first, last do
      current = i
      local res, err = idem:execute(prefix .. i, ctx, handler)
      if res == nil then
        die("%s %s lru=%d %s call %d: %s (code %s, status %s)", name, mode_name, lru, phase, i,
            tostring(err and err.message or err), tostring(err and err.code), tostring(err and err.status))
      end
      if type(res) ~= "table" or res.id ~= i or res.status ~= "created" then
        die("%s %s lru=%d %s call %d: wrong result (id %s, status %s)", name, mode_name, lru, phase, i,
            tostring(type(res) == "table" and res.id), tostring(type(res) == "table" and res.status))
      end
    end
    if ran - ran0 ~= expect_runs then
      die("%s %s lru=%d %s: the handler ran %d times for %d calls (expected %d)", name, mode_name,
          lru, phase, ran - ran0, last - first + 1, expect_runs)
    end
  end

  local function measured(first, last, phase, expect_runs)
    local count = last - first + 1
    local cpu_us, per_s, requests = common.measure(c, count, loop, first, last, phase,
                                                   expect_runs)
    print(("RESULT target=ddblocal client=%s bench=idem mode=%s lru=%d phase=%s n=%d requests_per_call=%.3f cpu_us_per_call=%.2f calls_per_s=%.0f")
      :format(name, mode_name, lru, phase, count, requests / count, cpu_us, per_s))
  end

  -- Warm-up keys are -warmup+1..0, measured keys 1..n.
  if warmup > 0 then
    loop(1 - warmup, 0, "warm-up first", warmup)
    loop(1 - warmup, 0, "warm-up replay", 0)
  end
  measured(1, n, "first", n)
  measured(1, n, "replay", 0)
  idem:close()
  c:close()
end

-- ------------------------------------------------------------- main

if mode == "setup" then
  if not (arg[2] and arg[3]) then usage() end
  run_setup(arg[2], arg[3])
elseif mode == "run" then
  local lru, n, warmup = whole(arg[6]), whole(arg[7]), whole(arg[8])
  if not (arg[2] and arg[3] and arg[4] and lru and n and warmup) or n < 1
     or (arg[5] ~= "compat" and arg[5] ~= "fast") or (lru > 0 and arg[5] ~= "fast") then
    usage()
  end
  run_calls(arg[2], arg[3], arg[4], arg[5], lru, n, warmup)
else
  usage()
end
