-- A process of credentials_lua_spec.lua (the chain reads the environment,
-- which Lua cannot set): runs the engine's credential machine from Lua as
-- the OpenResty runtime does (ddbkit.credentials.engine, core.cred_begin /
-- next / feed_http / take / cred_end), but with curl for its HTTP and a
-- table for the shared dict, so the binding's fetch userdata runs under
-- the sanitizers outside nginx. The environment names the container
-- endpoint of the fake (AWS_CONTAINER_CREDENTIALS_FULL_URI, its token) and
-- DDBKIT_TEST_PROXY; prints "RESULT <json>".
local cjson = require "cjson.safe"
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local credentials = require "ddbkit.credentials"
local blocking = require "ddbkit.runtime.blocking"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local requests = 0

-- The machine's HTTP action through curl: status, body | nil, err.
local function request(a)
  requests = requests + 1
  local out = os.tmpname()
  local parts = { "env -u LD_PRELOAD curl -s -o", q(out), "-w '%{http_code}'", "-X", q(a.method),
                  "-m", string.format("%.3f", a.timeout_ms / 1000) }
  for k, v in pairs(a.headers) do parts[#parts + 1] = "-H " .. q(k .. ": " .. v) end
  if a.body ~= "" then parts[#parts + 1] = "--data-binary " .. q(a.body) end
  parts[#parts + 1] = q(a.url)
  local p = assert(io.popen(table.concat(parts, " ")))
  local code = tonumber(p:read("*a"))
  p:close()
  local f = io.open(out, "rb")
  local body = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(out)
  if not code or code == 0 then
    return nil, setmetatable({ code = "ConnectionError", message = "no answer" }, core.error_mt)
  end
  return code, body
end

-- What ngx.shared.DICT offers the driver: get, set, add (fails when the key
-- is there), delete. TTLs are not played: the run is shorter than any.
local store = {}
local dict = {
  get = function(_, k) return store[k] end,
  set = function(_, k, v) store[k] = v return true end,
  add = function(_, k, v) if store[k] ~= nil then return false, "exists" end store[k] = v return true end,
  delete = function(_, k) store[k] = nil end,
}

local rt
rt = setmetatable({
  name = "lua-driven",
  request = request,
  exec = function() return -1, "", "no exec in this test" end,
  credentials = function(cc) return credentials.engine(cc, rt, { dict = dict, verify = true }) end,
}, { __index = blocking })

local R = {}
local function client()
  return assert(ddbkit.client{ endpoint = os.getenv("DDBKIT_TEST_PROXY"), runtime = rt })
end

local c1 = client()
R.first = c1:list_tables{ Limit = 1 } ~= nil
R.info1 = c1:credentials()
R.requests_after_first = requests
-- The dict now holds them; a second client (its own cell) takes them from
-- there instead of fetching.
local n = 0
for _ in pairs(store) do n = n + 1 end
R.dict_entries = n
local c2 = client()
R.second = c2:list_tables{ Limit = 1 } ~= nil
R.requests_after_second = requests
R.info2 = c2:credentials()

-- A fetch dropped half-way (its coroutine died) gives its claim back.
local c3 = client()
local f = core.cred_begin(c3.core)
R.began = type(f) == "userdata"
R.first_action = f:next().kind
R.take_early = select(2, pcall(f.take, f))
R.end_other = select(2, pcall(core.cred_end, c1.core, f))
R.while_claimed = core.cred_begin(c3.core)   -- false: a fetch runs
f = nil   -- luacheck: ignore
collectgarbage()
collectgarbage()
local f2 = core.cred_begin(c3.core)
R.after_gc = type(f2) == "userdata"
-- Run it to its end by hand: done, take, end.
local done = credentials.drive(f2, rt, true)
R.done = done
local t = f2:take()
R.take_fields = {}
for k in pairs(t) do R.take_fields[#R.take_fields + 1] = k end
table.sort(R.take_fields)
R.ended = core.cred_end(c3.core, f2)
R.used_after_end = select(2, pcall(f2.next, f2))
R.state3 = core.cred_state(c3.core)
R.third = c3:list_tables{ Limit = 1 } ~= nil
io.write("RESULT ", cjson.encode(R), "\n")
