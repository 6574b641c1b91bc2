-- What the Lua bench scripts share: loaded by path (the scripts run under
-- different LUA_PATHs), as
--   local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"

local common = {}

--- common.die_for(name) -> die(fmt, ...): prints "name: message" on stderr
-- and exits 1.
function common.die_for(name)
  return function(fmt, ...)
    io.stderr:write(name .. ": " .. fmt:format(...) .. "\n")
    os.exit(1)
  end
end

--- common.client(endpoint, opts?) -> a ddbkit.client with the bench's
-- credentials (opts add to them). When it cannot be made, the script ends:
-- "script: client: why" on stderr, exit status 1.
function common.client(endpoint, opts)
  local o = { region = "us-east-1", endpoint = endpoint,
              credentials = { access_key_id = "ddbkitbench", secret_access_key = "x" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c, err = ddbkit.client(o)
  if not c then
    local script = (arg and arg[0] or "bench"):match("([^/]*)%.lua$") or "bench"
    common.die_for(script)("client: %s", tostring(err))
  end
  return c
end

--- common.measure(client, count, fn, ...) -> cpu_us, per_s, requests
-- Runs fn(...) once, after a full collection, as count operations: their
-- CPU microseconds each (os.clock, the process's user+sys, every thread),
-- the operations per wall second, and the requests client sent meanwhile.
function common.measure(client, count, fn, ...)
  collectgarbage()
  local r0 = client:stats().requests
  local c0, w0 = os.clock(), core.mono_ms()
  fn(...)
  local c1, w1 = os.clock(), core.mono_ms()
  return (c1 - c0) * 1e6 / count, count / ((w1 - w0) / 1000), client:stats().requests - r0
end

--- common.whole(s) -> the non-negative integer s spells, or nil
function common.whole(s)
  local n = tonumber(s)
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

return common
