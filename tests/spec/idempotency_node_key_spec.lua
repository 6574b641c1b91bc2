-- ddbkit.idempotency's cache key and key checks against the Node middleware
-- (@reaatech/idempotency-middleware, compat.md B), with `node` itself as the
-- reference: each batch of cases is computed by one node process with
-- Node's own crypto, JSON.stringify, localeCompare and String.length, and
-- compared with what ddbkit computes. Then both directions on DynamoDB
-- Local: a record written as the Node adapter writes it under Node's key is
-- replayed by ddbkit, and ddbkit's record is found under Node's key.
local H = require "test_helper"
local core = require "ddbkit.core"
local idempotency = require "ddbkit.idempotency"
local keys = require "ddbkit.idempotency.cache_key"
local schema = require "ddbkit.schema"

local null, array = core.null, core.array
local concat, format = table.concat, string.format

local R = require "idem_node_ref"
local node, hex, js_string, same_as_node = R.node, R.hex, R.js_string, R.same_as_node

local function new(opts)
  local o = { client = H.client() }
  for k, v in pairs(opts or {}) do o[k] = v end
  return idempotency.new(o)
end

describe("idempotency cache keys against the Node middleware", function()
  teardown(function() R.cleanup() end)

  it("equals Node's key for bodies: strings, \"\", null, body ?? input, tables", function()
    local plain = new()
    local nobody = new{ include_body_in_key = false }
    local function case(name, js_ctx, ctx, idem, cfg)
      return { name = name, js = format("execKey(%s, 'k-1', %s)", cfg or "{}", js_ctx),
               lua = function() return (idem or plain):cache_key("k-1", ctx) end }
    end
    same_as_node{
      case("no ctx", "undefined", nil),
      case("empty ctx", "{}", {}),
      case("string body", "{ method: 'PUT', path: '/v1/pay', body: 'amount=10&currency=EUR' }",
           { method = "PUT", path = "/v1/pay", body = "amount=10&currency=EUR" }),
      case("empty-string body", "{ body: '' }", { body = "" }),
      case("null body", "{ body: null }", { body = null }),
      case("input when no body", "{ input: 'from input' }", { input = "from input" }),
      case("input when body is null", "{ body: null, input: 'from input' }", { body = null, input = "from input" }),
      case("body before input", "{ body: 'b', input: 'i' }", { body = "b", input = "i" }),
      case("null input", "{ input: null }", { input = null }),
      case("number body", "{ body: 42 }", { body = 42 }),
      case("fraction body", "{ body: 0.1 }", { body = 0.1 }),
      case("boolean body", "{ body: false }", { body = false }),
      case("list body", "{ body: [1, 'two', null, true] }", { body = { 1, "two", null, true } }),
      case("empty list body", "{ body: [] }", { body = array{} }),
      case("one-key object", "{ body: { sku: 'abc/é' } }", { body = { sku = "abc/\195\169" } }),
      case("UTF-8 string body", "{ body: 'caf\\u00e9 \\u{1F600}' }", { body = "caf\195\169 \240\159\152\128" }),
      case("method and path not strings", "{ method: 7, path: null, body: 'x' }", { method = 7, path = null, body = "x" }),
      case("include_body_in_key false", "{ body: 'x' }", { body = "x" }, nobody, "{ includeBodyInKey: false }"),
    }
  end)

  it("equals Node's key for vary headers: name as configured, lowercase lookup, lists, absent", function()
    local cfg_names = { "X-Tenant", "accept-language", "X-B", "x-b", "Z-Missing", "X-Num" }
    local idem = new{ vary_headers = cfg_names }
    local cfg = "{ varyHeaders: ['X-Tenant', 'accept-language', 'X-B', 'x-b', 'Z-Missing', 'X-Num'] }"
    local function case(name, js_headers, headers)
      return { name = name, js = format("execKey(%s, 'k', { path: '/o', headers: %s })", cfg, js_headers),
               lua = function() return idem:cache_key("k", { path = "/o", headers = headers }) end }
    end
    same_as_node{
      case("all lowercase", "{ 'x-tenant': 't1', 'accept-language': 'en', 'x-b': 'b' }",
           { ["x-tenant"] = "t1", ["accept-language"] = "en", ["x-b"] = "b" }),
      case("a header under a mixed-case key is absent", "{ 'X-Tenant': 't1', 'accept-language': 'en' }",
           { ["X-Tenant"] = "t1", ["accept-language"] = "en" }),
      case("a list joined with ', '", "{ 'x-tenant': ['t1', 't2'] }", { ["x-tenant"] = { "t1", "t2" } }),
      case("an empty list", "{ 'x-tenant': [] }", { ["x-tenant"] = array{} }),
      case("a number is left out", "{ 'x-num': 5, 'x-tenant': 't' }", { ["x-num"] = 5, ["x-tenant"] = "t" }),
      case("none present", "{ 'user-agent': 'curl' }", { ["user-agent"] = "curl" }),
      case("no headers table", "undefined", nil),
      case("empty value", "{ 'x-tenant': '' }", { ["x-tenant"] = "" }),
      case("UTF-8 value", "{ 'x-tenant': 'M\\u00fcnchen' }", { ["x-tenant"] = "M\195\188nchen" }),
    }
  end)

  it("sorts vary pairs as JavaScript's localeCompare does (2500+ generated header names)", function()
    -- RFC 7230 token characters: what a header name may hold.
    local token = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    local rnd = 12345
    local function random(n)   -- a fixed LCG: the same names on every run
      rnd = rnd * 48271 % 2147483647   -- exact in doubles too (LuaJIT)
      return rnd % n + 1
    end
    local function name(len)
      local t = {}
      for i = 1, len do
        local j = random(#token)
        t[i] = token:sub(j, j)
      end
      return concat(t)
    end
    local names, seen = {}, {}
    local function add(s) if not seen[s] then seen[s] = true names[#names + 1] = s end end
    for i = 1, #token do add(token:sub(i, i)) end
    for _ = 1, 1500 do add(name(random(6))) end
    -- near neighbours: one character's case flipped, a character dropped
    -- or appended, which only the later collation levels tell apart
    for i = 1, 600 do
      local s = names[#token + i]
      local j = random(#s)
      local c = s:sub(j, j)
      add(s:sub(1, j - 1) .. (c:lower() == c and c:upper() or c:lower()) .. s:sub(j + 1))
      add(s:sub(1, j - 1) .. s:sub(j + 1) .. "")
      add(s .. token:sub(random(#token)):sub(1, 1))
    end
    local quoted = {}
    for i, s in ipairs(names) do quoted[i] = js_string(s) end
    local want = node("const names = [" .. concat(quoted, ",") .. "];\n"
                      .. "names.sort((a, b) => a.localeCompare(b)); for (const n of names) out.push(n);\n"
                      .. "const ties = []; for (let i = 1; i < names.length; i++) "
                      .. "if (names[i - 1].localeCompare(names[i]) === 0) ties.push(names[i]);\n"
                      .. "out.push('ties:' + ties.length);")
    local got = {}
    for i, s in ipairs(names) do got[i] = s end
    table.sort(got, keys.locale_less)
    got[#got + 1] = "ties:0"
    assert.is_true(#names > 2500, #names .. " names")
    assert.are.same(want, got)
  end)

  it("refuses keys as Node does: empty, JavaScript whitespace only, longer than max in UTF-16 units", function()
    local idem = new{ max_key_length = 4 }
    local ws = { "\t", "\n", "\v", "\f", "\r", " ", "\194\160", "\239\187\191", "\225\154\128",
                 "\226\128\128", "\226\128\133", "\226\128\138", "\226\128\168", "\226\128\169",
                 "\226\128\175", "\226\129\159", "\227\128\128" }
    local function run(key)
      return idem:execute(key, nil, function() return "ran" end)
    end
    for _, w in ipairs(ws) do
      local r, err = run(w .. w)
      assert.is_nil(r, hex(w))
      assert.are.equal("KEY_REQUIRED", err.code, hex(w))
      assert.are.equal(400, err.status)
    end
    -- what Node counts, and whether it trims to nothing, for each key
    local probe = { "\194\133", "\226\128\139", "a\t", "\195\169\195\169\195\169\195\169",
                    "\240\159\152\128\240\159\152\128", "\240\159\152\128\240\159\152\128a", "abcd", "abcde",
                    "\228\184\173\230\150\135\229\173\151\231\172\166", "\226\128\139\226\128\139\226\128\139a" }
    local js = {}
    for i, k in ipairs(probe) do js[i] = format("out.push(%s.length + ' ' + (%s.trim() === ''));", js_string(k), js_string(k)) end
    for i, w in ipairs(ws) do js[#js + 1] = format("out.push('ws%d ' + (%s.trim() === ''));", i, js_string(w .. w)) end
    local want = node(concat(js, "\n"))
    for i, w in ipairs(ws) do assert.are.equal("ws" .. i .. " true", want[#probe + i], hex(w)) end
    for i, k in ipairs(probe) do
      local units, blank = want[i]:match("^(%d+) (%a+)$")
      local refused = blank == "true" or tonumber(units) > 4
      local err = keys.check(k, 4)
      assert.are.equal(refused, err ~= nil, hex(k) .. " node: " .. want[i])
      if err then assert.are.equal("KEY_REQUIRED", err.code) end
      assert.are.equal(tonumber(units), keys.utf16_length(k), hex(k))
    end
    assert.is_nil(keys.check("\240\159\152\128\240\159\152\128", 4))
  end)

  it("refuses a key that is not UTF-8 (no JavaScript string has those bytes)", function()
    local idem = new()
    for _, k in ipairs{ "k\233", "\192\175", "\237\160\128", "a\255b" } do
      local r, err = idem:execute(k, nil, function() return "ran" end)
      assert.is_nil(r)
      assert.are.equal("KEY_REQUIRED", err.code, hex(k))
      assert.are.equal(400, err.status)
      assert.matches("UTF%-8", err.message)
    end
  end)

  it("hashes an object body in the order of its JSON text (ctx.body_json, jsjson tables)", function()
    local jsjson = require "ddbkit.jsjson"
    local plain = new()
    local texts = {
      '{"b":1,"a":[1,2,"x"],"10":true,"2":null,"c":{"z":null,"y":"\\u00e9/\\u2028"}}',
      '{ "sku" : "abc",\n  "qty": 2.50, "big": 1e21, "tiny": 1E-7, "neg": -0 }',
      '[{"z":1,"a":2},[],{},"s"]',
      '"just a string"',
      'null',
      '{"__proto__":1,"x":{}}',
    }
    local cases = {}
    for i, text in ipairs(texts) do
      local js = format("execKey({}, 'k', { path: '/j', body: JSON.parse(%s) })", js_string(text))
      cases[#cases + 1] = { name = "body_json " .. i, js = js,
        lua = function() return plain:cache_key("k", { path = "/j", body_json = text }) end }
      cases[#cases + 1] = { name = "decoded table " .. i, js = js,
        lua = function() return plain:cache_key("k", { path = "/j", body = jsjson.decode(text) }) end }
    end
    -- body_json stands for the body: a table beside it is the handler's
    cases[#cases + 1] = { name = "body_json beside a table",
      js = "execKey({}, 'k', { body: { b: 1, a: 2 } })",
      lua = function() return plain:cache_key("k", { body = { a = 2, b = 1 }, body_json = '{"b":1,"a":2}' }) end }
    same_as_node(cases)
    local _, err = plain:execute("k", { body_json = "{not json" }, function() return "ran" end)
    assert.are.equal("BODY_NOT_JSON", err.code)
    assert.are.equal(400, err.status)
  end)

  it("hashes a plain Lua table (no remembered order) in the documented order", function()
    -- jsjson.stringify's order for a table it did not decode: see
    -- cache_key.lua; Node agrees when it saw the keys in that order.
    local jsjson = require "ddbkit.jsjson"
    local plain = new()
    local body = { sku = "abc", qty = 2, tags = { "a", "b" } }
    assert.are.equal(core.sha256_hex("POST:/:k:" .. core.sha256_hex(jsjson.stringify(body)) .. ":"),
                     plain:cache_key("k", { body = body }))
    -- that order: array-index keys ascending, then the others by UTF-16
    -- units. Node's key is the same when its object's keys came in that
    -- order, and differs when they did not ({b, a} below).
    local mixed = { b = 1, a = 2, ["10"] = true, ["2"] = 0, ["\195\169"] = 3, z = 4 }
    local want = node("out.push(execKey({}, 'k', { body: { '2': 0, '10': true, a: 2, b: 1, z: 4, '\\u00e9': 3 } }));\n"
                      .. "out.push(execKey({}, 'k', { body: { b: 1, a: 2 } }));")
    assert.are.equal(want[1], plain:cache_key("k", { body = mixed }))
    assert.are_not.equal(want[2], plain:cache_key("k", { body = { b = 1, a = 2 } }))
    assert.are.equal(want[2], plain:cache_key("k", { body = { b = 1, a = 2 }, body_json = '{"b":1,"a":2}' }))
  end)

  it("refuses vary header names that are not header names", function()
    assert.has_error(function() new{ vary_headers = { "X Tenant" } } end)
    assert.has_error(function() new{ vary_headers = { "X-T\195\169" } } end)
    assert.has_error(function() new{ vary_headers = { "X:T" } } end)
  end)

  describe("the web helper (idem:handle) as the Express integration keys a request", function()
    it("with the key and vary values as Node reads the header bytes (latin1), lowercased names", function()
      local idem = new{ vary_headers = { "X-Tenant", "Accept-Language" } }
      local json = new{ vary_headers = { "X-Tenant" }, json_bodies = true }
      local function req(key, headers, body, ctype)
        local h = { ["Idempotency-Key"] = key, ["Content-Type"] = ctype }
        for k, v in pairs(headers or {}) do h[k] = v end
        return { method = "POST", path = "/orders/a%2Fb", headers = h, body = body }
      end
      -- Node: req.headers (lowercase names, latin1 values), req.body
      local function express(key, headers, js_body, cfg)
        local h = { format("'idempotency-key': bytes('%s')", hex(key)) }
        for k, v in pairs(headers or {}) do h[#h + 1] = format("%s: bytes('%s')", js_string(k:lower()), hex(v)) end
        return format("expressKey(%s, { method: 'POST', path: '/orders/a%%2Fb', headers: { %s }, body: %s })",
                      cfg, concat(h, ", "), js_body)
      end
      local cfg = "{ varyHeaders: ['X-Tenant', 'Accept-Language'] }"
      local cases = {
        { "ASCII", "k-1", { ["X-Tenant"] = "t1" }, "'text body'", "text body" },
        { "UTF-8 key bytes", "k\195\169", { ["x-tenant"] = "M\195\188nchen", ["ACCEPT-LANGUAGE"] = "de" }, "'b'", "b" },
        { "latin1 key bytes", "k\233", {}, "'b'", "b" },
        { "empty body", "k", {}, "''", "" },
        { "no body", "k", {}, "undefined", nil },
      }
      local list = {}
      for _, c in ipairs(cases) do
        list[#list + 1] = { name = c[1], js = express(c[2], c[3], c[4], cfg),
          lua = function() return idem:request_cache_key(req(c[2], c[3], c[5], "text/plain")) end }
      end
      local jcfg = "{ varyHeaders: ['X-Tenant'] }"
      local jtext = '{"b":1,"a":{"y":[],"x":"\\/"}}'
      list[#list + 1] = { name = "JSON body, json_bodies", js = express("k", {}, "JSON.parse(" .. js_string(jtext) .. ")", jcfg),
        lua = function() return json:request_cache_key(req("k", {}, jtext, "application/json; charset=utf-8")) end }
      list[#list + 1] = { name = "empty JSON body is {}", js = express("k", {}, "{}", jcfg),
        lua = function() return json:request_cache_key(req("k", {}, "", "Application/JSON")) end }
      list[#list + 1] = { name = "a text body with json_bodies", js = express("k", {}, js_string(jtext), jcfg),
        lua = function() return json:request_cache_key(req("k", {}, jtext, "text/plain")) end }
      same_as_node(list)
      -- Express passes a request with an empty key header through (no key)
      assert.is_nil(idem:request_cache_key(req("", {}, "b")))
      local _, err = json:request_cache_key(req("k", {}, "{bad", "application/json"))
      assert.are.equal("BODY_NOT_JSON", err.code)
      local r = json:handle(req("k", {}, "{bad", "application/json"), function() return { status = 200 } end)
      assert.are.equal(400, r.status)
    end)
  end)

  describe("on DynamoDB Local", function()
    local admin, T

    setup(function()
      admin = H.client()
      T = H.unique("idemkey")
      assert(admin:create_table(schema.create_table_params(schema.IDEMPOTENCY_TABLE_SCHEMA, T)))
      assert(admin:wait_for_table(T, 30000))
    end)

    teardown(function()
      admin:delete_table{ TableName = T }
      admin:close()
    end)

    -- The record item as the Node adapter's set writes it (compat.md B).
    local function node_set(ck, response, extra)
      local now = core.now_ms()
      local item = { cacheKey = ck, response = response, createdAt = now, ttl = 3600000,
                     expiresAt = math.ceil((now + 3600000) / 1000) }
      for k, v in pairs(extra or {}) do item[k] = v end
      assert(admin:put_item{ TableName = T, Item = item })
    end

    local function raw(ck)
      return assert(admin:get_item{ TableName = T, Key = { cacheKey = ck }, ConsistentRead = true }).Item
    end

    it("replays what Node stored under its key, and stores where Node looks", function()
      local idem = idempotency.new{ client = admin, table_name = T, vary_headers = { "X-Tenant", "X-Region" } }
      local cfg = "{ varyHeaders: ['X-Tenant', 'X-Region'] }"
      local run = H.unique("r")
      local requests = {
        { js = "{ method: 'POST', path: '/orders', body: '', headers: { 'x-tenant': ['a', 'b'] } }",
          lua = { method = "POST", path = "/orders", body = "", headers = { ["x-tenant"] = { "a", "b" } } } },
        { js = "{ path: '/pay', input: 'from input', headers: { 'x-region': 'eu', 'X-Tenant': 'no' } }",
          lua = { path = "/pay", input = "from input", headers = { ["x-region"] = "eu", ["X-Tenant"] = "no" } } },
        { js = "{ method: 'PUT', path: '/x', body: JSON.parse('{\"z\":1,\"a\":[]}') }",
          lua = { method = "PUT", path = "/x", body_json = '{"z":1,"a":[]}' } },
      }
      local js = {}
      for i, r in ipairs(requests) do
        js[#js + 1] = format("out.push(execKey(%s, 'node-%s-%d', %s));", cfg, run, i, r.js)
        js[#js + 1] = format("out.push(execKey(%s, 'lua-%s-%d', %s));", cfg, run, i, r.js)
      end
      local want = node(concat(js, "\n"))
      for i, r in ipairs(requests) do
        -- Node stored a result: ddbkit replays it in one request, handler not run
        node_set(want[2 * i - 1], { from = "node", n = i })
        local runs = 0
        local n, res = H.requests(admin, function()
          return idem:execute(format("node-%s-%d", run, i), r.lua, function() runs = runs + 1 return "ddbkit" end)
        end)
        assert.are.same({ from = "node", n = i }, res)
        assert.are.equal(0, runs)
        assert.are.equal(1, n)
        -- ddbkit stores a result: it is under the key Node computes
        assert.are.equal("lua " .. i, idem:execute(format("lua-%s-%d", run, i), r.lua,
                                                   function() return "lua " .. i end))
        local item = raw(want[2 * i])
        assert.is_not_nil(item, "request " .. i)
        assert.are.equal("lua " .. i, item.response)
      end
    end)

    it("replays an Express-stored response for the same HTTP request, and the other way", function()
      local idem = idempotency.new{ client = admin, table_name = T, vary_headers = { "X-Tenant" } }
      local run = H.unique("h")
      local function req(key)
        return { method = "POST", path = "/orders",
                 headers = { ["idempotency-key"] = key, ["x-tenant"] = "t\233" }, body = '{"sku":1}' }
      end
      local js = {}
      for _, who in ipairs{ "node", "lua" } do
        js[#js + 1] = format("out.push(expressKey({ varyHeaders: ['X-Tenant'] }, { method: 'POST', path: '/orders', "
                             .. "headers: { 'idempotency-key': '%s-%s', 'x-tenant': bytes('74e9') }, body: '{\"sku\":1}' }));",
                             who, run)
      end
      local want = node(concat(js, "\n"))
      node_set(want[1], '{"id":1}', { statusCode = 201, headers = { ["content-type"] = "application/json" } })
      local runs = 0
      local function handler() runs = runs + 1 return { status = 200, body = "ddbkit" } end
      local r = idem:handle(req("node-" .. run), handler)
      assert.are.same({ 201, '{"id":1}', "true" }, { r.status, r.body, r.headers["Idempotent-Replayed"] })
      assert.are.equal(0, runs)
      idem:handle(req("lua-" .. run), handler)
      assert.are.equal(1, runs)
      local item = raw(want[2])
      assert.is_not_nil(item)
      assert.are.same({ "ddbkit", 200 }, { item.response, item.statusCode })
    end)
  end)
end)
