-- The README's examples, run as they are written, so the README cannot
-- drift from the code:
--   * every ```lua block runs against DynamoDB Local (the first one, the
--     quick start, on its own; each later one after it, as the README says
--     they continue it), except gateway.lua, which runs inside nginx, and a
--     block marked <!-- fragment --> on the line before it, which is only
--     compiled;
--   * the first ```c block (the C quick start) is compiled against the build
--     tree and run;
--   * the ```nginx block and the gateway.lua block after it run in a real
--     nginx on loopback ports. The only changes, as the README says: the two
--     ports, the three directories (/etc/nginx/lua, /usr/local/share/lua/5.1,
--     /usr/local/lib/lua/5.1 -> a temp dir, the checkout's lua/ and
--     build/luajit/), the load_module lines (dropped when nginx has Lua built
--     in) and the endpoint (DDBKIT_ENDPOINT, which the README passes in).
-- The examples write to the two tables `make run` creates; this spec
-- creates them when they are missing, as `make run` does.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local DOC = require "doc_examples"

local q = H.shell_quote
local ROOT = H.spec_dir() .. "/../.."
local README = assert(H.read_file(ROOT .. "/README.md"), "README.md not found")
local DRIVER = ROOT .. "/tests/nginx/driver.sh"

local sh = H.sh

local blocks = function() return DOC.blocks(README, "README.md") end

local function of_lang(lang)
  local out = {}
  for _, b in ipairs(blocks()) do if b.lang == lang then out[#out + 1] = b end end
  return out
end

local run_lua = DOC.run

local function has_line(lines, pattern)
  for _, l in ipairs(lines) do if l:find(pattern) then return true end end
  return false
end

describe("the README's Lua examples", function()
  local lua_blocks = of_lang("lua")
  local quick = lua_blocks[1]

  setup(DOC.make_run_tables)

  it("the first ```lua block is the quick start and runs as written", function()
    assert.truthy(quick.text:find('require "ddbkit"', 1, true))
    local out = run_lua(quick.text, "README.md:" .. quick.line)
    assert.are.equal("42\tshield", out[1])
    assert.are.equal("nil\tConditionalCheckFailedException\t42", out[2])
    assert.truthy(out[3]:find("^ConditionalCheckFailedException: "), out[3])
    assert.are.equal("player-7", out[4])
    assert.truthy(tonumber(out[5]) and tonumber(out[5]) >= 4, out[5])
  end)

  -- What each later block must print, found by a line of its text.
  local expect = {
    { "update_time_to_live", function(out)
        assert.are.equal(2, #out)
        table.sort(out)
        assert.truthy(out[1]:match("^http%-client%-toolkit\t"), out[1])
        assert.truthy(out[2]:match("^idempotency%-cache\t"), out[2])
        for _, l in ipairs(out) do
          local r = l:match("\t(.*)$")
          assert.is_true(r == "TTL on" or r == "ValidationException", l)
        end
      end },
    { "create_stores", function(out) assert.are.same({ "ada" }, out) end },
    { "ddbkit.lock.new", function(out)
        assert.are.equal(1, #out)
        assert.truthy(out[1]:match("^holding world%-7 with fence %d+$"), out[1])
      end },
    { 'layout = "native"', function(out) assert.are.same({ "true\ttrue" }, out) end },
    { "ddbkit.idempotency.new", function(out) assert.are.same({ "9\t1", "9\t1" }, out) end },
    { 'runtime = "coroutine"', function(out)
        assert.are.equal(1, #out)
        assert.truthy(out[1]:match("^true\t%d+$"), out[1])
      end },
  }

  it("every other ```lua block runs after the quick start, or is a marked fragment", function()
    local ran, checked = 0, {}
    for i = 2, #lua_blocks do
      local b = lua_blocks[i]
      local name = "README.md:" .. b.line
      if b.text:match("^%-%- gateway%.lua") then
        -- runs inside nginx, below; here it must at least compile
        assert((loadstring or load)(b.text, "=" .. name))
      elseif b.fragment then
        assert((loadstring or load)(b.text, "=" .. name))
      else
        local out = run_lua(quick.text .. "\ndo\n" .. b.text .. "\nend\n", name)
        -- drop the quick start's own five lines
        local own = {}
        for j = 6, #out do own[#own + 1] = out[j] end
        local matched = false
        for _, e in ipairs(expect) do
          if b.text:find(e[1], 1, true) then
            e[2](own)
            checked[e[1]] = true
            matched = true
          end
        end
        assert(matched, name .. ": a runnable block this spec has no expectation for")
        ran = ran + 1
      end
    end
    for _, e in ipairs(expect) do
      assert.is_true(checked[e[1]] == true, "no README block has " .. e[1])
    end
    assert.is_true(ran >= #expect)
  end)
end)

describe("the README's C quick start", function()
  it("compiles against the build tree and runs against DynamoDB Local", function()
    local c_block = of_lang("c")[1]
    assert.truthy(c_block and c_block.text:find("ddbk_client_new", 1, true))
    local dir = H.mktemp_dir()
    H.write_file(dir .. "/quick.c", c_block.text)
    local out, ok = sh(string.format("cc -std=c11 -Wall -Wextra -Werror -I%s -o %s %s %s "
      .. "-lcurl -lssl -lcrypto -lyajl -lexpat -lpthread -lm",
      q(ROOT .. "/engine"), q(dir .. "/quick"), q(dir .. "/quick.c"), q(ROOT .. "/build/libddbkit.a")))
    assert.is_true(ok, out)
    out, ok = sh(H.bounded("env DDBKIT_ENDPOINT=" .. q(H.endpoint) .. " " .. q(dir .. "/quick"), 60))
    assert.is_true(ok, out)
    assert.truthy(out:find('GetItem: {"Item":', 1, true), out)
    assert.truthy(out:find('"42"', 1, true), out)
    sh("rm -rf " .. q(dir))
  end)
end)

describe("the README's OpenResty example", function()
  local nginx_bin = (sh("sh -c 'command -v nginx || echo /usr/sbin/nginx'"):match("[^\n]+"))

  local function free_port()
    return (assert(sh(q(ROOT .. "/tests/harness/free_port.sh")):match("%d+")))
  end

  -- The README's nginx.conf with only its ports, directories and (for
  -- an nginx with Lua built in) module lines changed; gateway.lua beside it.
  local function render(prefix, ports)
    local nginx, gateway
    local bs = blocks()
    for i, b in ipairs(bs) do
      if b.lang == "nginx" and b.text:find("gateway", 1, true) then
        nginx = b
        gateway = bs[i + 1]
        break
      end
    end
    assert(nginx, "README.md has no ```nginx block that uses gateway.lua")
    assert(gateway and gateway.lang == "lua" and gateway.text:match("^%-%- gateway%.lua"),
      "the block after the nginx.conf must be gateway.lua")
    local conf = nginx.text
    local function sub(from, to)
      local n
      conf, n = conf:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
      assert(n > 0, "README nginx.conf: " .. from .. " not found")
    end
    sub("127.0.0.1:8080", "127.0.0.1:" .. ports.gateway)
    sub("127.0.0.1:8081", "127.0.0.1:" .. ports.origin)
    sub("/etc/nginx/lua/", prefix .. "/lua/")
    sub("/usr/local/share/lua/5.1/", ROOT .. "/lua/")
    sub("/usr/local/lib/lua/5.1/", ROOT .. "/build/luajit/")
    if sh(q(nginx_bin) .. " -V"):find("lua-nginx-module", 1, true) then
      conf = conf:gsub("\nload_module [^\n]*", "")   -- as the README's comment says
    end
    sh("mkdir -p " .. q(prefix .. "/lua") .. " " .. q(prefix .. "/logs"))
    H.write_file(prefix .. "/nginx.conf", conf)
    H.write_file(prefix .. "/lua/gateway.lua", gateway.text)
  end

  local function run_nginx(prefix, endpoint)
    local env = string.format("env DDBKIT_ENDPOINT=%s AWS_ACCESS_KEY_ID=local "
      .. "AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1", q(endpoint))
    -- run options only: foreground (so the PID is nginx's), the log and pid
    -- files in the prefix, workers as whoever runs the tests
    local g = string.format("daemon off; pid %s/logs/nginx.pid; error_log %s/logs/error.log info; user %s %s;",
      prefix, prefix, sh("id -un"):match("%S+"), sh("id -gn"):match("%S+"))
    local out, ok = sh(string.format("%s %s -t -p %s -c %s -e %s -g %s", env, q(nginx_bin), q(prefix .. "/"),
      q(prefix .. "/nginx.conf"), q(prefix .. "/logs/error.log"), q(g)))
    assert(ok, "nginx -t failed on the README's nginx.conf:\n" .. out)
    local p = assert(io.popen(string.format("env -u LD_PRELOAD %s %s -p %s -c %s -e %s -g %s "
      .. "</dev/null >>%s 2>&1 & echo $!", env, q(nginx_bin), q(prefix .. "/"), q(prefix .. "/nginx.conf"),
      q(prefix .. "/logs/error.log"), q(g), q(prefix .. "/logs/stdout.log"))))
    local pid = p:read("*l")
    p:close()
    H.write_file(prefix .. "/master.pid", pid .. "\n")   -- driver.sh stop ends it by this PID
    return pid
  end

  local function stop(prefix) sh(q(DRIVER) .. " stop " .. q(prefix)) end

  local function wait_up(port, pid, prefix)
    for _ = 1, 100 do   -- up to ~10 s
      local code = H.http("GET", "http://127.0.0.1:" .. port .. "/", { timeout = 1 })
      if code == 200 then return end
      if not H.alive(pid) then
        error("nginx exited at start-up:\n" .. (H.read_file(prefix .. "/logs/error.log") or ""))
      end
      sh("sleep 0.1")
    end
    error("nginx did not answer on " .. port)
  end

  local function headers_of(path)
    local t = {}
    for line in (H.read_file(path) or ""):gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then t[k:lower()] = v end
    end
    return t
  end

  local function get(url, method, extra_headers)
    local hfile = os.tmpname()
    local opts = { extra = "-D " .. q(hfile), headers = extra_headers }
    local code, body = H.http(method or "GET", url, opts)
    local h = headers_of(hfile)
    os.remove(hfile)
    return code, body, h
  end

  setup(DOC.make_run_tables)

  it("passes nginx -t and serves the cache, the limit and idempotent POSTs through ddbkit", function()
    local prefix = H.mktemp_dir()
    local ports = { gateway = free_port(), origin = free_port() }
    if ports.origin == ports.gateway then ports.origin = free_port() end
    render(prefix, ports)
    local pid = run_nginx(prefix, H.endpoint)
    finally(function() stop(prefix); sh("rm -rf " .. q(prefix)) end)
    wait_up(ports.origin, pid, prefix)
    local base = "http://127.0.0.1:" .. ports.gateway
    local path = "/api/readme-" .. os.time() .. "-" .. math.random(1e6)

    local code, body, h = get(base .. path)
    assert.are.equal(200, code, body .. (H.read_file(prefix .. "/logs/error.log") or ""))
    assert.are.equal("origin: GET " .. path .. "\n", body)
    assert.are.equal("MISS", h["x-cache"])
    -- the miss is stored after the response: poll a bounded number of times
    local hit
    for _ = 1, 50 do
      code, body, h = get(base .. path)
      if h["x-cache"] == "HIT" then hit = true break end
      sh("sleep 0.1")
    end
    assert.is_true(hit, "no HIT after the MISS")
    assert.are.equal(200, code)
    assert.are.equal("origin: GET " .. path .. "\n", body)

    local key = "readme-" .. os.time() .. "-" .. math.random(1e6)
    local c1, b1, h1 = get(base .. "/orders", "POST", { "Idempotency-Key: " .. key })
    local c2, b2, h2 = get(base .. "/orders", "POST", { "Idempotency-Key: " .. key })
    assert.are.equal(200, c1, b1)
    assert.are.equal("origin: POST /orders\n", b1)
    assert.is_nil(h1["idempotent-replayed"])
    assert.are.equal(200, c2, b2)
    assert.are.equal(b1, b2)
    assert.are.equal("true", h2["idempotent-replayed"])

    local log = H.read_file(prefix .. "/logs/error.log") or ""
    assert.is_nil(log:find("%[error%]"), log)
  end)

  it("a client that cannot be made answers 500 and the log names why", function()
    local prefix = H.mktemp_dir()
    local ports = { gateway = free_port(), origin = free_port() }
    if ports.origin == ports.gateway then ports.origin = free_port() end
    render(prefix, ports)
    local pid = run_nginx(prefix, "http://127.0.0.1:0")   -- port 0: the client refuses it
    finally(function() stop(prefix); sh("rm -rf " .. q(prefix)) end)
    wait_up(ports.origin, pid, prefix)
    local code = get("http://127.0.0.1:" .. ports.gateway .. "/api/x")
    assert.are.equal(500, code)
    local log = H.read_file(prefix .. "/logs/error.log") or ""
    assert.truthy(log:find("gateway: ddbkit.client: InvalidArgument: endpoint must be http(s)://host[:port]",
      1, true), log)
    assert.is_nil(log:find("unknown reason", 1, true), log)
  end)
end)

describe("error values format themselves", function()
  it("tostring, error() and assert() show code and message, from the engine and from Lua", function()
    local c = H.client()
    local _, cerr = c:get_item{ TableName = H.unique("missing"), Key = { pk = "a" } }
    assert.truthy(tostring(cerr):find("^ResourceNotFoundException: "), tostring(cerr))
    local cache = ddbkit.cache.new{ client = c }
    local _, serr = cache:get("")                               -- a Lua-made error
    assert.are.equal("InvalidArgument: hash must not be empty", tostring(serr))
    local idem = ddbkit.idempotency.new{ client = c }
    local _, ierr = idem:execute("  ", nil, function() return 1 end)
    assert.truthy(tostring(ierr):find("^KEY_REQUIRED: "), tostring(ierr))
    local ok, raised = pcall(error, cerr)
    assert.is_false(ok)
    assert.truthy(tostring(raised):find("^ResourceNotFoundException: "))
    ok, raised = pcall(assert, nil, serr)
    assert.is_false(ok)
    assert.are.equal("InvalidArgument: hash must not be empty", tostring(raised))
    -- a lock's refusal (the troubleshooting table's `busy`), from the engine's lock machine
    local tname = H.store_table(c, "readme-lock")
    local key = { pk = "LOCK#x", sk = "LOCK#x" }
    local h = assert(ddbkit.lock.new{ client = c, table_name = tname, key = key }:acquire{ lease_ms = 10000 })
    local h2, lerr = ddbkit.lock.new{ client = c, table_name = tname, key = key }:acquire{ lease_ms = 10000 }
    assert.is_nil(h2)
    assert.are.equal("busy", lerr.code)
    assert.truthy(tostring(lerr):find("^busy: "), tostring(lerr))
    assert.is_table(lerr.holder)
    assert(h:release())
    c:close()
  end)

  it("an uncaught error table prints its code and message from the interpreter", function()
    local code = 'local ddbkit = require "ddbkit"; local c = ddbkit.cache.new{ client = '
      .. 'ddbkit.client{ endpoint = "http://127.0.0.1:1", region = "us-east-1", '
      .. 'credentials = { access_key_id = "a", secret_access_key = "b" } } }; assert(c:get(""))'
    local out = sh(H.bounded(q(H.interpreter()) .. " -e " .. q(code), 30))
    assert.truthy(out:find("InvalidArgument: hash must not be empty", 1, true), out)
  end)
end)
