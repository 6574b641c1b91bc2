-- ddbkit.cache against DynamoDB Local: every method, the TTL rules of
-- compat.md A.1 (with a fake clock), tags, clear, request budgets measured
-- with client:stats(), and the Node item layout both ways.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"
local cjson = require "cjson.safe"

local NOW_MS = 1700000000000  -- the fake wall clock starts here
local NOW_S = NOW_MS / 1000

local function new_table(c) return H.store_table(c, "cache") end

local function raw(c, tname, pk, sk)
  local res = assert(c:get_item{ TableName = tname, Key = { pk = pk, sk = sk or pk },
                                 ConsistentRead = true })
  return res.Item
end

local function all_items(c, tname)
  return assert(c:scan_all{ TableName = tname, ConsistentRead = true })
end

local function keys_of(c, tname)
  local out = {}
  for _, it in ipairs(all_items(c, tname)) do out[#out + 1] = it.pk .. " " .. it.sk end
  table.sort(out)
  return out
end

local function requests(c) return c:stats().requests end
local function op_calls(c, op)
  local o = c:stats().operations[op]
  return o and o.requests or 0
end

describe("ddbkit.cache", function()
  local c, tname, cache, fake, clock

  setup(function()
    clock = { t = NOW_MS }
    fake = { send = blocking.send, sleep = function() end,
             now_ms = function() return clock.t end, mono_ms = blocking.mono_ms }
    c = H.client{ runtime = fake }
    tname = new_table(c)
    cache = ddbkit.cache.new{ client = c, table_name = tname }
  end)

  before_each(function() clock.t = NOW_MS end)

  describe("new", function()
    it("checks its options and names the field", function()
      assert.has_error(function() ddbkit.cache.new{} end,
        "ddbkit.cache.new: opts.client must be a ddbkit.client")
      assert.has_error(function() ddbkit.cache.new{ client = c, bogus = 1 } end,
        "ddbkit.cache.new: unknown option opts.bogus")
      assert.has_error(function() ddbkit.cache.new{ client = c, max_entry_size_bytes = 0 } end,
        "ddbkit.cache.new: opts.max_entry_size_bytes must be a positive number")
      assert.has_error(function() ddbkit.cache.new{ client = c, table_name = "" } end,
        "ddbkit.cache.new: opts.table_name must be a non-empty string")
      assert.has_error(function() ddbkit.cache.new{ client = {} } end,
        "ddbkit.cache.new: opts.client must be a ddbkit.client")
    end)

    it("is reachable as ddbkit.cache and closes", function()
      local s = ddbkit.cache.new{ client = c }
      assert.are.equal("http-client-toolkit", s.table_name)
      assert.is_true(s:close())
    end)
  end)

  describe("get / set / delete", function()
    it("misses with nil and no error", function()
      local v, err = cache:get("nothing-here")
      assert.is_nil(v)
      assert.is_nil(err)
    end)

    it("round-trips JSON values", function()
      for i, v in ipairs({ "text", 42, true, false, { a = "b", list = { 1, 2, 3 } }, ddbkit.array{} }) do
        assert.is_true(cache:set("rt" .. i, v, 60))
        local got, err = cache:get("rt" .. i)
        assert.is_nil(err)
        assert.is_true(H.same(cjson.decode(cjson.encode(v)), got) or got == v)
      end
    end)

    it("stores nil as __UNDEFINED__ and reads it back as nil", function()
      assert.is_true(cache:set("undef", nil, 60))
      assert.are.equal("__UNDEFINED__", raw(c, tname, "CACHE#undef").value)
      local v, err = cache:get("undef")
      assert.is_nil(v)
      assert.is_nil(err)
    end)

    it("delete removes the entry", function()
      assert.is_true(cache:set("del1", "x", 60))
      assert.is_true(cache:delete("del1"))
      assert.is_nil(raw(c, tname, "CACHE#del1"))
      assert.is_nil(cache:get("del1"))
      assert.is_true(cache:delete("never-there"))
    end)

    it("raises on a ttl that is not a finite number", function()
      assert.has_error(function() cache:set("x", 1, "60") end)
      assert.has_error(function() cache:set("x", 1, 0 / 0) end)
      assert.has_error(function() cache:set_with_tags("x", 1, 60, "tag") end)
    end)

    it("returns the Node messages for invalid hashes", function()
      local cases = {
        { "", "hash must not be empty" },
        { "a\nb", "hash contains unsupported control characters" },
        { "a\127", "hash contains unsupported control characters" },
        { ("x"):rep(513), "hash exceeds maximum length of 512 bytes" },
      }
      for _, case in ipairs(cases) do
        for _, call in ipairs({
          function() return cache:get(case[1]) end,
          function() return cache:set(case[1], 1, 60) end,
          function() return cache:delete(case[1]) end,
          function() return cache:set_with_tags(case[1], 1, 60, {}) end,
        }) do
          local v, err = call()
          assert.is_nil(v)
          assert.are.equal("InvalidArgument", err.code)
          assert.are.equal(case[2], err.message)
        end
      end
      local v, err = cache:set_with_tags("ok", 1, 60, { "good", "" })
      assert.is_nil(v)
      assert.are.equal("tag must not be empty", err.message)
      v, err = cache:invalidate_by_tag("a\0b")
      assert.is_nil(v)
      assert.are.equal("tag contains unsupported control characters", err.message)
    end)

    it("fails with the compat message on a missing table", function()
      local s = ddbkit.cache.new{ client = c, table_name = "no-such-table-cache" }
      local want = 'DynamoDB table "no-such-table-cache" was not found. Create the table using '
                   .. "your infrastructure before using DynamoDB stores."
      for _, call in ipairs({
        function() return s:get("h") end, function() return s:set("h", 1, 1) end,
        function() return s:delete("h") end, function() return s:set_with_tags("h", 1, 1, { "t" }) end,
        function() return s:invalidate_by_tag("t") end, function() return s:clear() end,
      }) do
        local v, err = call()
        assert.is_nil(v)
        assert.are.equal(want, err.message)
      end
    end)
  end)

  describe("TTL", function()
    it("0 never expires", function()
      assert.is_true(cache:set("ttl0", "forever", 0))
      assert.are.equal(0, raw(c, tname, "CACHE#ttl0").ttl)
      clock.t = NOW_MS + 10 * 365 * 86400 * 1000
      assert.are.equal("forever", cache:get("ttl0"))
    end)

    it("positive: now + ttl seconds; expired entries are misses and deleted", function()
      assert.is_true(cache:set("ttlp", "soon", 30))
      local item = raw(c, tname, "CACHE#ttlp")
      assert.are.equal(NOW_S + 30, item.ttl)
      assert.are.equal(NOW_MS, item.createdAt)
      clock.t = NOW_MS + 29999
      assert.are.equal("soon", cache:get("ttlp"))
      clock.t = NOW_MS + 30000
      c:reset_stats()
      local v, err = cache:get("ttlp")
      assert.is_nil(v)
      assert.is_nil(err)
      assert.are.equal(2, requests(c))  -- the GetItem + the DeleteItem of the expired entry
      assert.is_nil(raw(c, tname, "CACHE#ttlp"))  -- gone before DynamoDB's TTL would act
    end)

    it("negative means already expired", function()
      assert.is_true(cache:set("ttln", "gone", -5))
      assert.are.equal(NOW_S, raw(c, tname, "CACHE#ttln").ttl)
      assert.is_nil(cache:get("ttln"))
      assert.is_nil(raw(c, tname, "CACHE#ttln"))
    end)

    it("does not delete an entry replaced between the read and the delete", function()
      -- an expired entry as another process wrote it, then replaced by a fresh one:
      -- the conditional delete of the expired copy must not remove the fresh one
      assert.is_true(cache:set("race", "fresh", 60))
      local fresh = raw(c, tname, "CACHE#race")
      assert.is_truthy(fresh)
      -- simulate: get saw an expired copy (ttl = now) that no longer matches
      local real_get = c.get_item
      c.get_item = function(self, p)
        local r = real_get(self, p)
        if r and r.Item then r.Item.ttl = NOW_S - 1 end
        return r
      end
      local v = cache:get("race")
      c.get_item = nil
      assert.is_nil(v)
      assert.are.equal("\"fresh\"", raw(c, tname, "CACHE#race").value)
    end)
  end)

  describe("values", function()
    it("treats undecodable JSON as a miss and deletes it", function()
      assert(c:put_item{ TableName = tname, Item = { pk = "CACHE#bad", sk = "CACHE#bad",
        value = "{not json", ttl = 0, createdAt = NOW_MS } })
      c:reset_stats()
      local v, err = cache:get("bad")
      assert.is_nil(v)
      assert.is_nil(err)
      assert.are.equal(2, requests(c))
      assert.is_nil(raw(c, tname, "CACHE#bad"))
    end)

    it("does not store an oversized value: false and a message naming the size and the limit", function()
      local small = ddbkit.cache.new{ client = c, table_name = tname, max_entry_size_bytes = 10 }
      c:reset_stats()
      local ok, why = small:set("big", ("x"):rep(9), 60)      -- "xxxxxxxxx" + quotes = 11 bytes
      assert.is_false(ok)
      assert.are.equal("not stored: the value is 11 bytes of JSON, over max_entry_size_bytes (10)", why)
      assert.are.equal(0, requests(c))                        -- nothing sent, as Node sends nothing
      assert.is_nil(raw(c, tname, "CACHE#big"))
      assert.is_true(small:set("fits", ("x"):rep(8), 60))     -- 10 bytes: stored
      assert.is_truthy(raw(c, tname, "CACHE#fits"))
      ok, why = small:set_with_tags("bigt", ("x"):rep(20), 60, { "tg" })
      assert.is_false(ok)
      assert.are.equal("not stored: the value is 22 bytes of JSON, over max_entry_size_bytes (10)", why)
      assert.is_nil(raw(c, tname, "CACHE#bigt"))
      assert.is_nil(raw(c, tname, "TAG#tg", "CACHE#bigt"))
      -- the default limit: 399360 bytes of JSON
      local s = ("y"):rep(399360 - 2)
      assert.is_true(cache:set("edge", s, 60))
      assert.are.equal(s, cache:get("edge"))
      ok, why = cache:set("over", s .. "y", 60)
      assert.is_false(ok)
      assert.truthy(why:find("399361 bytes", 1, true), why)
      assert.truthy(why:find("(399360)", 1, true), why)
      assert.is_nil(raw(c, tname, "CACHE#over"))
    end)
  end)

  describe("tags", function()
    it("set_with_tags writes the entry and one item per tag, Node fields included", function()
      assert.is_true(cache:set_with_tags("tg1", { v = 1 }, 120, { "a", "b", "a" }))
      local e = raw(c, tname, "CACHE#tg1")
      assert.are.equal(NOW_S + 120, e.ttl)
      for _, tag in ipairs({ "a", "b" }) do
        local t = raw(c, tname, "TAG#" .. tag, "CACHE#tg1")
        assert.are.equal(e.ttl, t.ttl)
        assert.are.equal("CACHE#tg1", t.gsi1pk)
        assert.are.equal("TAG#" .. tag, t.gsi1sk)
      end
    end)

    it("set_with_tags replaces old tags", function()
      assert.is_true(cache:set_with_tags("tg2", 1, 0, { "x1", "x2" }))
      assert.is_true(cache:set_with_tags("tg2", 2, 0, { "x2", "x3" }))
      assert.is_nil(raw(c, tname, "TAG#x1", "CACHE#tg2"))
      assert.is_truthy(raw(c, tname, "TAG#x2", "CACHE#tg2"))
      assert.is_truthy(raw(c, tname, "TAG#x3", "CACHE#tg2"))
      -- a plain set in between (an UpdateItem: the entry keeps its tag list)
      assert.is_true(cache:set("tg2", 3, 0))
      assert.is_true(cache:set_with_tags("tg2", 4, 0, { "x4" }))
      assert.is_nil(raw(c, tname, "TAG#x2", "CACHE#tg2"))
      assert.is_nil(raw(c, tname, "TAG#x3", "CACHE#tg2"))
      assert.is_truthy(raw(c, tname, "TAG#x4", "CACHE#tg2"))
      assert.is_true(cache:set_with_tags("tg2", 5, 0, {}))
      assert.is_nil(raw(c, tname, "TAG#x4", "CACHE#tg2"))
      assert.are.equal(5, cache:get("tg2"))
    end)

    it("delete removes the tag items too", function()
      assert.is_true(cache:set_with_tags("tg3", 1, 0, { "d1", "d2" }))
      assert.is_true(cache:delete("tg3"))
      assert.is_nil(raw(c, tname, "TAG#d1", "CACHE#tg3"))
      assert.is_nil(raw(c, tname, "TAG#d2", "CACHE#tg3"))
      -- after a plain set the entry still lists them (set is an UpdateItem)
      assert.is_true(cache:set_with_tags("tg3", 1, 0, { "d3" }))
      assert.is_true(cache:set("tg3", 2, 0))
      assert.is_true(cache:delete("tg3"))
      assert.is_nil(raw(c, tname, "TAG#d3", "CACHE#tg3"))
    end)

    it("invalidate_by_tag removes each distinct entry once and counts them", function()
      assert.is_true(cache:set_with_tags("i1", 1, 0, { "grp", "solo" }))
      assert.is_true(cache:set_with_tags("i2", 2, 0, { "grp" }))
      assert.is_true(cache:set("i3", 3, 0))
      assert.are.equal(2, cache:invalidate_by_tag("grp"))
      assert.is_nil(cache:get("i1"))
      assert.is_nil(cache:get("i2"))
      assert.are.equal(3, cache:get("i3"))
      assert.is_nil(raw(c, tname, "TAG#grp", "CACHE#i1"))
      assert.are.equal(0, cache:invalidate_by_tag("grp"))
      assert.are.equal(0, cache:invalidate_by_tag("never-used"))
    end)

    it("invalidate_by_tags counts an entry named by several tags once", function()
      assert.is_true(cache:set_with_tags("m1", 1, 0, { "p", "q" }))
      assert.is_true(cache:set_with_tags("m2", 2, 0, { "q" }))
      assert.is_true(cache:set_with_tags("m3", 3, 0, { "r" }))
      assert.are.equal(2, cache:invalidate_by_tags{ "p", "q", "p" })
      assert.is_nil(cache:get("m1"))
      assert.is_nil(cache:get("m2"))
      assert.are.equal(3, cache:get("m3"))
      assert.are.equal(0, cache:invalidate_by_tags{})
      assert.has_error(function() cache:invalidate_by_tags("r") end)
    end)
  end)

  describe("clear", function()
    it("with a scope removes only CACHE#<scope>* entries", function()
      local c2 = H.client()
      local t2 = new_table(c2)
      local s = ddbkit.cache.new{ client = c2, table_name = t2 }
      assert.is_true(s:set("users:1", 1, 0))
      assert.is_true(s:set("users:2", 2, 0))
      assert.is_true(s:set_with_tags("orders:1", 3, 0, { "o" }))
      assert(c2:put_item{ TableName = t2, Item = { pk = "DEDUPE#x", sk = "DEDUPE#x", status = "pending" } })
      assert.are.equal(2, s:clear("users:"))
      assert.are.same({ "CACHE#orders:1 CACHE#orders:1", "DEDUPE#x DEDUPE#x", "TAG#o CACHE#orders:1" },
                      keys_of(c2, t2))
      -- no scope: every CACHE# and TAG# item, nothing else
      assert.is_true(s:set("z", 1, 0))
      assert.are.equal(3, s:clear())
      assert.are.same({ "DEDUPE#x DEDUPE#x" }, keys_of(c2, t2))
    end)
  end)

  describe("request budgets", function()
    it("get costs exactly 1 request, hit or miss", function()
      assert.is_true(cache:set("b1", "v", 0))
      c:reset_stats()
      assert.are.equal("v", cache:get("b1"))
      assert.are.equal(1, requests(c))
      c:reset_stats()
      assert.is_nil(cache:get("b-miss"))
      assert.are.equal(1, requests(c))
    end)

    it("delete and set_with_tags on 10,000 other items: no Scan, O(tags)", function()
      local c2 = H.client()
      local t2 = new_table(c2)
      -- node_tags = "ignore": a table no Node service writes (the default,
      -- "scan", is measured below and in cache_node_spec)
      local s = ddbkit.cache.new{ client = c2, table_name = t2, node_tags = "ignore" }
      local vouched = ddbkit.cache.new{ client = c2, table_name = t2 }
      local function measure()
        c2:reset_stats()
        assert.is_true(s:set_with_tags("hot", 1, 0, { "t1", "t2", "t3" }))
        assert.is_true(s:set_with_tags("hot", 2, 0, { "t3", "t4" }))
        assert.is_true(s:set("hot", 3, 0))  -- an UpdateItem: the entry keeps its tag list
        assert.is_true(s:set_with_tags("hot", 4, 0, { "t5" }))
        assert.is_true(s:delete("hot"))
        local st = c2:stats()
        assert.are.equal(0, op_calls(c2, "Scan"))
        -- the default mode, on an entry ddbkit wrote: no Scan either
        assert.is_true(vouched:set_with_tags("warm", 1, 0, { "w1", "w2" }))  -- new: may scan
        c2:reset_stats()
        assert.is_true(vouched:set_with_tags("warm", 2, 0, { "w2", "w3" }))
        assert.is_true(vouched:set("warm", 3, 0))
        assert.is_true(vouched:set_with_tags("warm", 4, 0, { "w4" }))
        assert.is_true(vouched:delete("warm"))
        assert.are.equal(0, op_calls(c2, "Scan"))
        assert.are.equal(0, op_calls(c2, "Query"))
        assert.are.equal(2 + 1 + 2 + 2, requests(c2))
        return st.requests, st
      end
      local empty_cost = measure()
      -- 10,000 other items: 400 BatchWriteItem of 25
      for b = 0, 399 do
        local chunk = {}
        for i = 1, 25 do
          local k = string.format("CACHE#filler-%05d", b * 25 + i)
          chunk[i] = { PutRequest = { Item = { pk = k, sk = k, value = "1", ttl = 0, createdAt = NOW_MS } } }
        end
        assert(c2:batch_write_item{ RequestItems = { [t2] = chunk } })
      end
      local full_cost, st = measure()
      assert.are.equal(empty_cost, full_cost)  -- independent of the table size
      -- new hash: put+query+batch; replace (entry lists its tags): put+batch;
      -- set: update; replace after a plain set (list kept): put+batch;
      -- delete: delete+batch
      assert.are.equal(3 + 2 + 1 + 2 + 2, full_cost)
      assert.are.equal(1, st.operations.Query.requests)
      assert.is_nil(raw(c2, t2, "CACHE#hot"))
      for i = 1, 5 do assert.is_nil(raw(c2, t2, "TAG#t" .. i, "CACHE#hot")) end
      -- delete of an entry without a tag list: 1 DeleteItem + 1 Query (+ batch if found)
      assert.is_true(s:set("plain", 1, 0))
      c2:reset_stats()
      assert.is_true(s:delete("plain"))
      assert.are.equal(2, requests(c2))
      assert.are.equal(0, op_calls(c2, "Scan"))
    end)
  end)

  describe("interop with the Node layout", function()
    it("reads entries and tag items written as the Node package writes them", function()
      local now_s = NOW_S
      assert(c:put_item{ TableName = tname, Item = { pk = "CACHE#node1", sk = "CACHE#node1",
        value = '{"status":200,"body":"hi","list":[1,2]}', ttl = now_s + 60, createdAt = NOW_MS - 5 } })
      assert(c:put_item{ TableName = tname, Item = { pk = "CACHE#node2", sk = "CACHE#node2",
        value = "__UNDEFINED__", ttl = 0, createdAt = NOW_MS } })
      assert(c:put_item{ TableName = tname, Item = { pk = "CACHE#node3", sk = "CACHE#node3",
        value = '"old"', ttl = now_s - 1, createdAt = NOW_MS - 99000 } })
      assert(c:put_item{ TableName = tname, Item = { pk = "TAG#nodetag", sk = "CACHE#node1", ttl = now_s + 60 } })
      local v = cache:get("node1")
      assert.are.equal(200, v.status)
      assert.are.equal("hi", v.body)
      assert.are.equal(2, #v.list)
      local u, err = cache:get("node2")
      assert.is_nil(u)
      assert.is_nil(err)
      assert.is_nil(cache:get("node3"))
      assert.is_nil(raw(c, tname, "CACHE#node3"))
      assert.are.equal(1, cache:invalidate_by_tag("nodetag"))
      assert.is_nil(raw(c, tname, "CACHE#node1"))
      assert.is_nil(raw(c, tname, "TAG#nodetag", "CACHE#node1"))
    end)

    it("writes exactly the attributes the Node package reads", function()
      assert.is_true(cache:set("out1", { a = "b", n = 1 }, 60))
      local e = raw(c, tname, "CACHE#out1")
      assert.are.same({ "createdAt", "pk", "sk", "ttl", "value" },
        (function() local k = {} for name in pairs(e) do k[#k + 1] = name end table.sort(k) return k end)())
      assert.are.equal("CACHE#out1", e.pk)
      assert.are.equal("CACHE#out1", e.sk)
      assert.are.same({ a = "b", n = 1 }, cjson.decode(e.value))
      assert.are.equal("number", type(e.ttl))
      assert.are.equal(NOW_S + 60, e.ttl)
      assert.are.equal(NOW_MS, e.createdAt)
      assert.is_true(cache:set_with_tags("out2", "s", 60, { "tt" }))
      local t = raw(c, tname, "TAG#tt", "CACHE#out2")
      assert.are.equal("TAG#tt", t.pk)
      assert.are.equal("CACHE#out2", t.sk)
      assert.are.equal(NOW_S + 60, t.ttl)
      local e2 = raw(c, tname, "CACHE#out2")
      assert.are.equal('"s"', e2.value)
      assert.are.equal(1, #e2.ddbkitTagKeys)
      assert.are.equal("TAG#tt", e2.ddbkitTagKeys[1])
      -- what Node's invalidateByTag does (Query TAG#tt, delete mapping + entry) finds it
      local q = assert(c:query_all{ TableName = tname, KeyConditionExpression = "pk = :p",
                                    ExpressionAttributeValues = { [":p"] = "TAG#tt" } })
      assert.are.equal(1, #q)
      assert.are.equal("CACHE#out2", q[1].sk)
    end)
  end)
end)
