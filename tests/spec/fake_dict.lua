-- An in-process stand-in for an ngx.shared.DICT (lua-nginx-module's
-- semantics for the methods ddbkit uses: get, incr, add, set, delete,
-- expiry in seconds, 0 = never; never full), on a clock the spec moves
-- (state.T, ms). Several stores given the same one behave as the workers
-- of one nginx. The real dict is exercised by openresty_spec in nginx.
local M = {}
M.__index = M

function M.new(state)
  return setmetatable({ state = state, data = {}, exp = {}, ops = 0 }, M)
end

local function live(self, key)
  local e = self.exp[key]
  if e and e <= self.state.T then self.data[key], self.exp[key] = nil, nil end
  return self.data[key]
end

local function put(self, key, value, ttl)
  self.data[key] = value
  self.exp[key] = (ttl and ttl > 0) and self.state.T + ttl * 1000 or nil
end

function M:get(key)
  self.ops = self.ops + 1
  return live(self, key)
end

function M:set(key, value, ttl)
  self.ops = self.ops + 1
  put(self, key, value, ttl)
  return true
end

function M:add(key, value, ttl)
  self.ops = self.ops + 1
  if live(self, key) ~= nil then return false, "exists" end
  put(self, key, value, ttl)
  return true
end

function M:incr(key, value, init, init_ttl)
  self.ops = self.ops + 1
  local v = live(self, key)
  if v == nil then
    if init == nil then return nil, "not found" end
    put(self, key, init + value, init_ttl)
    return init + value
  end
  if type(v) ~= "number" then return nil, "not a number" end
  self.data[key] = v + value
  return v + value
end

function M:delete(key)
  self.ops = self.ops + 1
  self.data[key], self.exp[key] = nil, nil
end

-- For the spec: the keys matching a Lua pattern (what the LRU could evict).
function M:keys(pattern)
  local out = {}
  for k in pairs(self.data) do if live(self, k) ~= nil and k:find(pattern) then out[#out + 1] = k end end
  return out
end

return M
