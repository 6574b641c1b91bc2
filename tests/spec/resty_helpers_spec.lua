-- ddbkit.resty's helpers (cache_proxy, idempotent) behind a real nginx
-- (tests/nginx/harness.lua: 2 workers, one loopback port), driven with curl
-- the way clients and monitors drive them: HEAD, gzip clients and
-- upstreams, Vary, binary bodies, bodies nginx spools to disk.
local H = require "test_helper"
package.path = H.spec_dir() .. "/../nginx/?.lua;" .. package.path
local harness = require "harness"
local ddbkit = require "ddbkit"
local cjson = require "cjson.safe"

describe("ddbkit.resty behind nginx", function()
  local N

  setup(function()
    assert(H.proxy and H.proxy ~= "", "the fault proxy is not running (DDBKIT_TEST_PROXY)")
    N = harness.start(H)
  end)

  teardown(function()
    if N then N.stop() end
  end)

  local function counter(name)
    local _, _, body = N.request("/counter?name=" .. name)
    return assert(cjson.decode(body), body).n
  end

  -- The cache entry for `key`, once the helper stored it (after ngx.eof).
  local function stored(key)
    local cache = ddbkit.cache.new{ client = N.admin, table_name = N.store_table }
    return N.wait_for("the cache entry", 10, function() return cache:get(key) end)
  end

  local function gunzip(bytes)
    local path = N.prefix .. "/gz.bin"
    H.write_file(path, bytes)
    local out, ok = N.sh("gzip -dc < " .. H.shell_quote(path))
    return ok and out or nil
  end

  describe("cache_proxy", function()
    it("keeps a gzip client's entry apart from a plain client's", function()
      local path = "/cached/gz/" .. N.run
      local plain = "origin body for /origin/cached/gz/" .. N.run .. "? run 1\n"
      local status, h, body = N.request(path, "-H 'Accept-Encoding: gzip'")
      assert.are.equal(200, status, N.log_errors())
      assert.are.equal("MISS", h["x-cache"])
      assert.are.equal("gzip", h["content-encoding"])
      assert.are.equal(plain, gunzip(body))
      stored(ddbkit.hash_request("GET /cached/gz/" .. N.run, {}) .. ":gzip")
      -- A client that did not ask for gzip never gets the gzip entry.
      status, h, body = N.request(path)
      assert.are.equal(200, status)
      assert.are.equal("MISS", h["x-cache"])
      assert.is_nil(h["content-encoding"])
      assert.are.equal(plain:gsub("run 1", "run 2"), body)
      stored(ddbkit.hash_request("GET /cached/gz/" .. N.run, {}))
      status, h, body = N.request(path)
      assert.are.equal("HIT", h["x-cache"])
      assert.is_nil(h["content-encoding"])
      assert.are.equal(plain:gsub("run 1", "run 2"), body)
      -- "gzip, deflate, br" and "gzip;q=0.5" are both the gzip entry.
      for _, ae in ipairs{ "gzip, deflate, br", "deflate;q=1, gzip;q=0.5" } do
        status, h, body = N.request(path, "-H 'Accept-Encoding: " .. ae .. "'")
        assert.are.equal("HIT", h["x-cache"], ae)
        assert.are.equal("gzip", h["content-encoding"], ae)
        assert.are.equal(plain, gunzip(body), ae)
      end
      -- gzip;q=0 is a refusal: the plain entry.
      status, h, body = N.request(path, "-H 'Accept-Encoding: gzip;q=0, br'")
      assert.are.equal("HIT", h["x-cache"])
      assert.is_nil(h["content-encoding"])
      assert.are.equal(plain:gsub("run 1", "run 2"), body)
      assert.are.equal(2, counter("origin:/origin/cached/gz/" .. N.run))
    end)

    it("never stores a response that varies on more than Accept-Encoding", function()
      for _, vary in ipairs{ "*", "Cookie" } do
        local path = "/cached/vary/" .. N.run .. "?vary=" .. vary
        local status, h = N.request(path)
        assert.are.equal(200, status, N.log_errors())
        assert.are.equal("MISS", h["x-cache"], vary)
        -- A response that may be stored, asked after the one above: once
        -- its entry is there, the one above would be too.
        local control = "/cached/vary-control/" .. N.run .. "/" .. (vary == "*" and "star" or vary)
        N.request(control)
        stored(ddbkit.hash_request("GET " .. control, {}))
        status, h = N.request(path)
        assert.are.equal(200, status)
        assert.are.equal("MISS", h["x-cache"], vary)
      end
      assert.are.equal(4, counter("origin:/origin/cached/vary/" .. N.run))
    end)

    it("answers HEAD on a miss and on a hit, from the GET entry", function()
      local path = "/cached/head/" .. N.run
      -- curl -I: a HEAD, reading no body whatever the Content-Length says
      local status, h = N.request(path, "-I")
      assert.are.equal(200, status, N.log_errors())
      assert.are.equal("MISS", h["x-cache"])
      local get_body = "origin body for /origin/cached/head/" .. N.run .. "? run 1\n"
      stored(ddbkit.hash_request("GET /cached/head/" .. N.run, {}))
      status, h = N.request(path, "-I")
      assert.are.equal(200, status, N.log_errors())
      assert.are.equal("HIT", h["x-cache"])
      assert.are.equal(tostring(#get_body), h["content-length"])
      -- The GET is served from the entry the HEAD's miss stored.
      local body
      status, h, body = N.request(path)
      assert.are.equal(200, status)
      assert.are.equal("HIT", h["x-cache"])
      assert.are.equal(get_body, body)
      assert.are.equal(1, counter("origin:/origin/cached/head/" .. N.run))
    end)

    it("passes a HEAD it does not cache through, with the upstream's Content-Length", function()
      local path = "/cached/head-auth/" .. N.run
      local status, h = N.request(path, "-I -H 'Authorization: Bearer x'")
      assert.are.equal(200, status, N.log_errors())
      assert.are.equal("BYPASS", h["x-cache"])
      local get_body = "origin body for /origin/cached/head-auth/" .. N.run .. "? run 2\n"
      assert.are.equal(tostring(#get_body), h["content-length"])
      local body
      status, h, body = N.request(path, "-H 'Authorization: Bearer x'")
      assert.are.equal("BYPASS", h["x-cache"])
      assert.are.equal(get_body, body)
    end)
  end)
end)
