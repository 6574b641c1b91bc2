-- The test nginx (tests/nginx/nginx.conf.in, handlers in app.lua) for a
-- busted spec: creates the store and idempotency tables, starts nginx
-- through driver.sh (a temp prefix, 2 workers, one loopback port) and stops
-- it by PID. Only drives nginx from outside (curl), so specs using it run
-- the same under Lua 5.4 and LuaJIT.
--
--   local N = harness.start(H)        -- in setup()
--   local status, headers, body = N.request("/path", "-X POST ...")
--   N.stop()                          -- in teardown()
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local _M = {}

function _M.start(H)
  local q = H.shell_quote
  local read_file = H.read_file
  local driver = H.spec_dir() .. "/../nginx/driver.sh"
  local N = { H = H, driver = driver }

  local sh = H.sh
  N.sh = sh

  -- A bounded poll: f() truthy within `seconds`, or the test fails with `what`.
  function N.wait_for(what, seconds, f)
    local deadline = os.time() + seconds
    while true do
      local v = f()
      if v then return v end
      if os.time() > deadline then error("timed out waiting for " .. what, 2) end
      sh("sleep 0.05")
    end
  end

  local function parse_headers(text)
    local status, h = nil, {}
    for line in (text or ""):gmatch("[^\r\n]+") do
      local s = line:match("^HTTP/%d[%.%d]* (%d%d%d)")
      if s then status, h = tonumber(s), {} end   -- the last response's headers
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then
        k = k:lower()
        h[k] = h[k] and (h[k] .. ", " .. v) or v
      end
    end
    return status, h
  end

  --- N.request(path, curl_args?) -> status, headers (lowercase names, repeated
  -- ones joined with ", "), body (bytes as sent: no --compressed)
  function N.request(path, args)
    local hdr = N.prefix .. "/req.headers"
    local body = N.prefix .. "/req.body"
    os.remove(body)
    sh(string.format("curl -s -m 30 -D %s -o %s %s %s", q(hdr), q(body), args or "",
                     q(N.base .. path)))
    local status, h = parse_headers(read_file(hdr))
    return status, h, read_file(body) or ""
  end

  -- The [error] lines of nginx's error.log (the last few), for failure messages.
  function N.log_errors()
    local out = {}
    for line in (read_file(N.prefix .. "/logs/error.log") or ""):gmatch("[^\n]+") do
      if line:find("[error]", 1, true) and not line:find("init_worker", 1, true) then
        out[#out + 1] = line:sub(1, 400)
      end
    end
    return table.concat(out, "\n", math.max(1, #out - 2))
  end

  function N.stop()
    if N.stopped then return end
    N.stopped = true
    local sout, sok = sh("bash " .. q(driver) .. " stop " .. q(N.prefix))
    if not sok then print(sout) end
    if N.admin then
      N.admin:delete_table{ TableName = N.store_table }
      N.admin:delete_table{ TableName = N.idem_table }
      N.admin:close()
    end
    if N.prefix:match("^/tmp/") then sh("rm -rf " .. q(N.prefix)) end
  end

  N.admin = H.client()
  N.store_table = H.store_table(N.admin, "ngx")
  N.idem_table = H.unique("ngx-idem")
  assert(N.admin:create_table(schema.create_table_params(ddbkit.IDEMPOTENCY_TABLE_SCHEMA, N.idem_table)))
  assert(N.admin:wait_for_table(N.idem_table, 30000))
  N.run = H.unique("run")
  N.prefix = H.mktemp_dir()
  local out, ok = sh(string.format(
    "env DDBKIT_TEST_ENDPOINT=%s DDBKIT_TEST_PROXY=%s DDBKIT_TEST_HOSTILE=%s DDBKIT_NGX_STORE_TABLE=%s "
    .. "DDBKIT_NGX_IDEM_TABLE=%s DDBKIT_NGX_RUN=%s bash %s start %s",
    q(H.endpoint), q(H.proxy or ""), q(H.hostile or ""), q(N.store_table), q(N.idem_table), q(N.run), q(driver),
    q(N.prefix)))
  local pid, p = out:match("(%d+) (%d+)%s*$")
  if not (ok and pid) then
    N.stop()
    error("nginx did not start:\n" .. out, 2)
  end
  N.port = tonumber(p)
  N.base = "http://127.0.0.1:" .. N.port

  return N
end

return _M
