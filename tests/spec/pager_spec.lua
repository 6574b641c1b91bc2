-- Paging against a hostile server: the fault proxy answers Query / Scan
-- with 200 pages whose LastEvaluatedKey repeats (or never ends). Every
-- paging helper and every store loop over pages must stop with nil, err
-- after a bounded number of requests, never loop forever.
local H = require "test_helper"
local ddbkit = require "ddbkit"

local admin, T, S

setup(function()
  admin = H.client()
  T = H.create_table(admin, H.unique("pager"))
  S = H.store_table(admin, "pager-store")
end)

teardown(function()
  H.clear_faults()
  admin:delete_table{ TableName = T }
  admin:delete_table{ TableName = S }
  admin:close()
end)

local function page(key)
  return { Items = {}, Count = 0, ScannedCount = 0,
           LastEvaluatedKey = { pk = { S = key }, sk = { S = "s" } } }
end

-- n pages, all with the same LastEvaluatedKey (more than any bound here:
-- a pager that does not stop uses them all and then fails on DynamoDB
-- Local's answer to the fake key, so the test ends either way).
local function same_key_faults(match, n)
  H.faults{ { kind = "status", status = 200, count = n or 50, match = match,
              body = page("same") } }
end

local function client(opts)
  local o = { max_attempts = 1 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return H.proxied_client(o)
end

local Q = function() return { TableName = T, KeyConditionExpression = "pk = :p",
                              ExpressionAttributeValues = { [":p"] = "x" } } end

describe("a server repeating LastEvaluatedKey", function()
  after_each(H.clear_faults)

  local function drains(name, run)
    it(name .. " stops after the repeat with MalformedResponse", function()
      local c = client()
      same_key_faults(nil)
      local n, res, err = H.requests(c, function() return run(c) end)
      assert.is_nil(res)
      assert.equal("MalformedResponse", err.code)
      assert.matches("repeated LastEvaluatedKey", err.message)
      assert.equal(2, n)   -- the page giving the key, the page repeating it
      c:close()
    end)
  end

  drains("query_all", function(c) return c:query_all(Q()) end)
  drains("scan_all", function(c) return c:scan_all{ TableName = T } end)

  local function iterate(method)
    return function(c)
      for v, err in c[method](c, method:match("^query") and Q() or { TableName = T }) do
        if v == false then return nil, err end
      end
      return true
    end
  end
  drains("query_items", iterate("query_items"))
  drains("scan_items", iterate("scan_items"))
  drains("query_pages", iterate("query_pages"))
  drains("scan_pages", iterate("scan_pages"))

  it("an ExclusiveStartKey given by the caller and answered again is a repeat", function()
    local c = client()
    same_key_faults(nil)
    local q = Q()
    q.ExclusiveStartKey = { pk = "same", sk = "s" }
    local n, res, err = H.requests(c, function() return c:query_all(q) end)
    assert.is_nil(res)
    assert.equal("MalformedResponse", err.code)
    assert.equal(1, n)
    c:close()
  end)

  it("a cycle of two keys is caught too", function()
    local c = client()
    H.faults{
      { kind = "status", status = 200, body = page("a") },
      { kind = "status", status = 200, body = page("b") },
      { kind = "status", status = 200, count = 50, body = page("a") },
    }
    local n, res, err = H.requests(c, function() return c:scan_all{ TableName = T } end)
    assert.is_nil(res)
    assert.equal("MalformedResponse", err.code)
    assert.equal(3, n)
    c:close()
  end)
end)

describe("the page bound", function()
  after_each(H.clear_faults)

  it("stops a walk of new keys after max_pages pages with TooManyPages", function()
    local c = client{ max_pages = 3 }
    local faults = {}
    for i = 1, 10 do faults[i] = { kind = "status", status = 200, body = page("k" .. i) } end
    H.faults(faults)
    local n, res, err = H.requests(c, function() return c:scan_all{ TableName = T } end)
    assert.is_nil(res)
    assert.equal("TooManyPages", err.code)
    assert.matches("max_pages", err.message)
    assert.equal(3, n)
    c:close()
  end)

  it("does not stop a walk that ends within the bound", function()
    local w = H.client()
    for i = 1, 5 do assert(w:put_item{ TableName = T, Item = { pk = "b", sk = "s" .. i } }) end
    local c = H.client{ max_pages = 6 }
    local items, err = c:query_all{ TableName = T, KeyConditionExpression = "pk = :p",
                                    ExpressionAttributeValues = { [":p"] = "b" }, Limit = 1 }
    assert.is_nil(err)
    assert.equal(5, #items)   -- 5 pages of one item and a 6th, empty, without a key
    w:close()
    c:close()
  end)

  it("max_pages is checked", function()
    assert.has_error(function() ddbkit.client{ max_pages = 0 } end,
      "ddbkit.client: opts.max_pages must be an integer >= 1, got number")
  end)
end)

describe("store loops over pages", function()
  after_each(H.clear_faults)

  -- max: requests until the repeat shows (adaptive first reads its
  -- activity: 2 single-page Queries of the GSI, then the slot pages).
  local function store_case(name, make, run, match, max)
    it(name .. " ends with MalformedResponse on a repeated key", function()
      local c = client()
      local s = make(c)
      same_key_faults(match)
      local n, res, err = H.requests(c, function() return run(s) end)
      assert.is_nil(res)
      assert.equal("MalformedResponse", err.code)
      assert.is_true(n <= (max or 3), "requests: " .. n)
      c:close()
    end)
  end

  -- acquire reads one page of the slot partition, never more (issue 12:
  -- it has no page loop to stop); a page that says there is more is a
  -- partial view, and the slot's condition decides.
  local function one_page_case(name, make, run, max_queries)
    it(name .. " reads one page of the slots, whatever the page says", function()
      local c = client()
      local s = make(c)
      same_key_faults("Query")
      c:reset_stats()
      local res, err = run(s)
      local st = c:stats()
      assert.is_nil(err)
      assert.is_true(res)
      assert.is_true(st.operations.Query.requests <= max_queries, "Queries: " .. st.operations.Query.requests)
      assert.is_true(st.requests <= max_queries + 1, "requests: " .. st.requests)
      c:close()
    end)
  end
  one_page_case("ratelimit:acquire",
    function(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end,
    function(s) return s:acquire(H.unique("r")) end, 1)
  -- adaptive: the activity load (2 single-page Queries), then the slot page
  one_page_case("adaptive:acquire",
    function(c) return ddbkit.adaptive.new{ client = c, table_name = S } end,
    function(s) return s:acquire(H.unique("r"), "user") end, 3)
  store_case("ratelimit:can_proceed (the window count)",
    function(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end,
    function(s) return s:can_proceed("r") end, "Query")
  store_case("ratelimit:get_wait_time",
    function(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end,
    function(s) return s:get_wait_time("r") end, "Query")
  store_case("ratelimit:reset",
    function(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end,
    function(s) return s:reset("r") end, "Query")
  store_case("ratelimit:clear",
    function(c) return ddbkit.ratelimit.new{ client = c, table_name = S } end,
    function(s) return s:clear() end, "Scan")
  store_case("cache:invalidate_by_tag",
    function(c) return ddbkit.cache.new{ client = c, table_name = S } end,
    function(s) return s:invalidate_by_tag("t") end, "Query")
  store_case("cache:clear",
    function(c) return ddbkit.cache.new{ client = c, table_name = S } end,
    function(s) return s:clear() end, "Scan")
  store_case("dedupe:clear",
    function(c) return ddbkit.dedupe.new{ client = c, table_name = S } end,
    function(s) return s:clear() end, "Scan")
end)
