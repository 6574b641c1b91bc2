-- One contender of lock_contention_spec.lua, run as its own OS process:
--
--   lua lock_worker.lua ENDPOINT TABLE OUTFILE [N=100] [THINK_MS=0]
--
-- Acquires and releases the lock { pk = "contended" } in TABLE N times and
-- writes one line per grant to OUTFILE: "<fence> <t_acquired> <t_before_release>",
-- the times from CLOCK_MONOTONIC (ddbkit.core.mono_ms), which every process
-- on the machine shares. Exits 0 when all N grants are recorded; on any
-- failure prints why on stderr and exits non-zero.
--
-- THINK_MS: after each release, pause a random 0..THINK_MS ms before the next
-- acquire. Not synchronisation: without it the releasing process nearly
-- always wins the lock straight back (the others are in backoff), so grants
-- come in long runs per process; with a few ms most grants change hands
-- between processes, which is where mutual exclusion can break.
local endpoint, table_name, outfile = arg[1], arg[2], arg[3]
local n = tonumber(arg[4] or "100")
local think = tonumber(arg[5] or "0")
if not (endpoint and table_name and outfile and n and think) then
  io.stderr:write("usage: lock_worker.lua ENDPOINT TABLE OUTFILE [N] [THINK_MS]\n")
  os.exit(2)
end

local ddbkit = require "ddbkit"
local core = require "ddbkit.core"

-- LuaJIT starts every process with the same random sequence.
math.randomseed(math.floor(core.mono_ms() * 1000) % 2147483647)

local function fail(what, err)
  io.stderr:write(string.format("lock_worker: %s: %s\n", what, tostring(err and (err.code or err) or "?")))
  if err and err.message then io.stderr:write("  " .. tostring(err.message) .. "\n") end
  os.exit(1)
end

local client, cerr = ddbkit.client{
  region = "us-east-1", endpoint = endpoint, timeout_ms = 5000,
  credentials = { access_key_id = "ddbkittest", secret_access_key = "ddbkittestsecret" },
}
if not client then fail("client", cerr) end

local locks = ddbkit.lock.new{ client = client, table_name = table_name, key = { pk = "contended" } }
local out = io.open(outfile, "w")
if not out then fail("open " .. outfile) end

for i = 1, n do
  local h, err = locks:acquire{ lease_ms = 10000, wait_ms = 60000 }
  if not h then fail("acquire #" .. i, err) end
  local t_acquired = core.mono_ms()
  local fence = h.fence
  local t_before_release = core.mono_ms()
  local ok, rerr = h:release()
  if not ok then fail("release #" .. i, rerr) end
  out:write(string.format("%d %.4f %.4f\n", fence, t_acquired, t_before_release))
  if think > 0 then core.sleep_ms(math.random() * think) end
end

out:close()
client:close()
os.exit(0)
