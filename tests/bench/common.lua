-- What the Lua bench scripts share: loaded by path (the scripts run under
-- different LUA_PATHs), as
--   local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local ddbkit = require "ddbkit"

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
-- credentials (opts add to them); raises when it cannot be made.
function common.client(endpoint, opts)
  local o = { region = "us-east-1", endpoint = endpoint,
              credentials = { access_key_id = "ddbkitbench", secret_access_key = "x" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c, err = ddbkit.client(o)
  if not c then error("client: " .. tostring(err), 2) end
  return c
end

--- common.whole(s) -> the non-negative integer s spells, or nil
function common.whole(s)
  local n = tonumber(s)
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

return common
