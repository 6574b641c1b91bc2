-- ddbkit.cache beside the Node package on one table (issue 14, compat.md
-- A.1): items are written and read exactly as the Node code does, with
-- raw DynamoDB calls, and node itself gives the JSON texts and byte
-- lengths JavaScript computes.
--   * a value Node wrote, read and written back by ddbkit, is byte-identical;
--   * the size limit is measured on JSON.stringify's UTF-8 bytes;
--   * tag items Node wrote (pk, sk, ttl only) do not survive a ddbkit
--     delete or retag, and Node's own rule (Scan by sk) finds ddbkit's.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local blocking = require "ddbkit.runtime.blocking"

local NOW_MS = 1700000000000


local function hex(s) return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

-- Runs a node script over lines of hex input; returns its output lines.
local function node_lines(script, lines)
  local input, js = os.tmpname(), os.tmpname()
  local f = assert(io.open(input, "wb"))
  for _, l in ipairs(lines) do f:write(hex(l), "\n") end
  f:close()
  f = assert(io.open(js, "wb"))
  f:write("const L = require('fs').readFileSync(process.argv[2], 'latin1').split('\\n');\n",
          "L.pop();\nconst out = [];\n", script, "\nprocess.stdout.write(out.join('\\n') + '\\n');\n")
  f:close()
  local p = assert(io.popen("node " .. js .. " " .. input))
  local res = {}
  for line in p:lines() do res[#res + 1] = line end
  p:close()
  os.remove(input)
  os.remove(js)
  assert(#res == #lines, "node answered " .. #res .. " of " .. #lines .. " lines")
  return res
end

-- JSON.stringify(eval(src)) for each JavaScript expression: the text the
-- Node package stores for that value.
local function node_texts(exprs)
  local out = node_lines([[
for (const h of L) {
  const v = eval('(' + Buffer.from(h, 'hex').toString('utf8') + ')');
  out.push(Buffer.from(JSON.stringify(v), 'utf8').toString('hex'));
}]], exprs)
  for i, h in ipairs(out) do out[i] = unhex(h) end
  return out
end

-- Buffer.byteLength(JSON.stringify(JSON.parse(text))): the size the Node
-- package compares with maxEntrySizeBytes.
local function node_sizes(texts)
  local out = node_lines([[
for (const h of L) {
  const v = JSON.parse(Buffer.from(h, 'hex').toString('utf8'));
  out.push(String(Buffer.byteLength(JSON.stringify(v), 'utf8')));
}]], texts)
  for i, s in ipairs(out) do out[i] = tonumber(s) end
  return out
end

local function raw(c, tname, pk, sk)
  local res = assert(c:get_item{ TableName = tname, Key = { pk = pk, sk = sk or pk },
                                 ConsistentRead = true })
  return res.Item
end

-- The Node package, item for item (compat.md A.1) ------------------------

local function node_set(c, tname, hash, text, ttl)
  assert(c:put_item{ TableName = tname, Item = { pk = "CACHE#" .. hash, sk = "CACHE#" .. hash,
    value = text, ttl = ttl or 0, createdAt = NOW_MS } })
end

-- What Node's rule finds for a hash: a Scan filtered on sk (every tag
-- item of the hash, whoever wrote it), as "pk" strings, sorted.
local function node_tag_items(c, tname, hash)
  local items = assert(c:scan_all{ TableName = tname, ConsistentRead = true,
    FilterExpression = "sk = :s AND begins_with(pk, :t)",
    ExpressionAttributeValues = { [":s"] = "CACHE#" .. hash, [":t"] = "TAG#" } })
  local out = {}
  for _, it in ipairs(items) do out[#out + 1] = it.pk end
  table.sort(out)
  return out
end

local function node_set_with_tags(c, tname, hash, text, ttl, tags)
  node_set(c, tname, hash, text, ttl)
  for _, pk in ipairs(node_tag_items(c, tname, hash)) do
    assert(c:delete_item{ TableName = tname, Key = { pk = pk, sk = "CACHE#" .. hash } })
  end
  for _, tag in ipairs(tags) do
    assert(c:put_item{ TableName = tname, Item = { pk = "TAG#" .. tag, sk = "CACHE#" .. hash,
                                                   ttl = ttl or 0 } })
  end
end

local function node_delete(c, tname, hash)
  assert(c:delete_item{ TableName = tname, Key = { pk = "CACHE#" .. hash, sk = "CACHE#" .. hash } })
  for _, pk in ipairs(node_tag_items(c, tname, hash)) do
    assert(c:delete_item{ TableName = tname, Key = { pk = pk, sk = "CACHE#" .. hash } })
  end
end

local function ops(c)
  local st = c:stats()
  local o = {}
  for name, v in pairs(st.operations) do o[name] = v.requests end
  return st.requests, o
end

describe("ddbkit.cache beside the Node package", function()
  local c, tname, cache, clock

  setup(function()
    clock = { t = NOW_MS }
    local fake = { send = blocking.send, sleep = function() end,
                   now_ms = function() return clock.t end, mono_ms = blocking.mono_ms }
    c = H.client{ runtime = fake }
    tname = H.store_table(c, "cachenode")
    cache = ddbkit.cache.new{ client = c, table_name = tname }
  end)

  describe("values", function()
    local SHAPES = {
      "{list: [], nested: [[], {}]}", "[]", "{}", "[[]]", "[{}]", "{a: {}, b: []}",
      "{b: 1, a: {d: [], c: {}}, '2': 'two', '1': 'one', '01': 'zero-one'}",
      "{x: [null, true, false, 0.1, -5, 1e21, 1e-7, 0.1 + 0.2, 2**53 + 1, -0]}",
      "'a/b\\u007f\\u0000\\u001f\\t\"\\\\'", "{'é': '\\u2028\\ud83d\\ude00', '\\uffff': 1, z: 2}",
      "{'\\ud800': '\\udc00'}", "[1, 'x', [2, [3, [4, {}]]]]", "{n: null}", "null", "0", "'s'",
      "{status: 200, headers: {'content-type': 'application/json'}, body: '{\"a\":[]}'}",
    }

    it("a value Node wrote reads back and is written back byte-identical", function()
      local texts = node_texts(SHAPES)
      for i, text in ipairs(texts) do
        local h = "shape" .. i
        node_set(c, tname, h, text)
        local v, err = cache:get(h)
        assert.is_nil(err)
        assert.is_true(cache:set(h .. "-back", v, 0))
        assert.are.equal(text, raw(c, tname, "CACHE#" .. h .. "-back").value,
                         "shape " .. SHAPES[i])
        -- and through set_with_tags' entry as well
        assert.is_true(cache:set_with_tags(h .. "-tagged", v, 0, { "shape" }))
        assert.are.equal(text, raw(c, tname, "CACHE#" .. h .. "-tagged").value)
      end
      assert.is_true(cache:invalidate_by_tag("shape") == #texts)
    end)

    it("a stored empty list stays a list, an empty object an object", function()
      node_set(c, tname, "empties", '{"list":[],"nested":[[],{}]}')
      local v = cache:get("empties")
      assert.is_true(ddbkit.is_array(v.list))
      assert.is_true(ddbkit.is_array(v.nested[1]))
      assert.is_false(ddbkit.is_array(v.nested[2]))
    end)

    it("Node's __UNDEFINED__ reads as nil, and nil is written as Node writes it", function()
      node_set(c, tname, "undef", "__UNDEFINED__")
      local v, err = cache:get("undef")
      assert.is_nil(v)
      assert.is_nil(err)
      assert.is_truthy(raw(c, tname, "CACHE#undef"))  -- a hit on undefined, not a miss
      assert.is_true(cache:set("undef2", nil, 0))
      assert.are.equal("__UNDEFINED__", raw(c, tname, "CACHE#undef2").value)
    end)

    it("the size limit counts JSON.stringify's UTF-8 bytes, as Node does, both sides of it", function()
      local LIMIT = 1000
      local small = ddbkit.cache.new{ client = c, table_name = tname, max_entry_size_bytes = LIMIT }
      -- strings whose JavaScript JSON text is LIMIT and LIMIT + 1 bytes:
      -- "/" and DEL are 1 byte (not escaped), "é" 2, "😀" 4, "\n" 2 ("\n")
      local cases = {
        { "slash", ("/"):rep(LIMIT - 2), "/" },
        { "del", ("\127"):rep(LIMIT - 2), "\127" },
        { "e-acute", ("é"):rep((LIMIT - 2) / 2), "/" },
        { "emoji", ("😀"):rep(249) .. "ab", "/" },
        { "newline", ("\n"):rep((LIMIT - 2) / 2), "/" },
        { "object", nil, nil },
      }
      local texts = {}
      for i, cs in ipairs(cases) do
        if cs[2] then
          texts[#texts + 1] = '"' .. cs[2]:gsub("\n", "\\n") .. '"'
          texts[#texts + 1] = '"' .. (cs[2] .. cs[3]):gsub("\n", "\\n") .. '"'
        else
          local s = ("/"):rep(LIMIT - 8)
          cases[i][2], cases[i][3] = { k = s }, { k = s .. "\127" }
          texts[#texts + 1] = '{"k":"' .. s .. '"}'
          texts[#texts + 1] = '{"k":"' .. s .. '\127"}'
        end
      end
      local sizes = node_sizes(texts)
      for i, cs in ipairs(cases) do
        assert.are.equal(LIMIT, sizes[2 * i - 1], cs[1])
        assert.are.equal(LIMIT + 1, sizes[2 * i], cs[1])
        local at, over = cs[2], cs[3]
        if type(at) == "string" then over = at .. over end
        assert.is_true(small:set("size-at-" .. cs[1], at, 60))
        assert.are.equal(LIMIT, #raw(c, tname, "CACHE#size-at-" .. cs[1]).value, cs[1])
        assert.is_false(small:set("size-over-" .. cs[1], over, 60))  -- not stored (Node: silently)
        assert.is_nil(raw(c, tname, "CACHE#size-over-" .. cs[1]), cs[1])
      end
    end)

    it("the default limit: 200,000 '/' (200,002 bytes) is stored, as Node stores it", function()
      local s = ("/"):rep(200000)
      assert.are.same({ 200002 }, node_sizes({ '"' .. s .. '"' }))
      assert.is_true(cache:set("slashes", s, 60))
      assert.are.equal(200002, #raw(c, tname, "CACHE#slashes").value)
      assert.are.equal(s, cache:get("slashes"))
      -- exactly at 399,360 bytes stored, one more not
      local at = ("/"):rep(399360 - 2)
      assert.is_true(cache:set("slashes-at", at, 60))
      assert.are.equal(399360, #raw(c, tname, "CACHE#slashes-at").value)
      assert.is_false(cache:set("slashes-over", at .. "/", 60))
      assert.is_nil(raw(c, tname, "CACHE#slashes-over"))
    end)
  end)

  describe("tag items Node wrote (pk, sk, ttl only)", function()
    it("are removed by ddbkit's delete", function()
      node_set_with_tags(c, tname, "nd1", '{"v":1}', 0, { "na", "nb" })
      assert.are.same({ "TAG#na", "TAG#nb" }, node_tag_items(c, tname, "nd1"))
      c:reset_stats()
      assert.is_true(cache:delete("nd1"))
      local n, o = ops(c)
      assert.are.same({}, node_tag_items(c, tname, "nd1"))
      assert.is_nil(raw(c, tname, "CACHE#nd1"))
      -- DeleteItem + a Scan (one page on this small table) + one batch
      assert.are.same({ DeleteItem = 1, Scan = 1, BatchWriteItem = 1 }, o)
      assert.are.equal(3, n)
    end)

    it("are replaced by ddbkit's set_with_tags, so invalidating an old tag keeps the fresh entry", function()
      node_set_with_tags(c, tname, "nr1", '{"v":1}', 0, { "old1", "keep" })
      assert.is_true(cache:set_with_tags("nr1", { v = 2 }, 0, { "keep", "new1" }))
      assert.are.same({ "TAG#keep", "TAG#new1" }, node_tag_items(c, tname, "nr1"))
      assert.are.equal(0, cache:invalidate_by_tag("old1"))
      assert.are.same({ v = 2 }, cache:get("nr1"))
      -- the kept tag is ddbkit's now (gsi1 attributes written)
      assert.are.equal("CACHE#nr1", raw(c, tname, "TAG#keep", "CACHE#nr1").gsi1pk)
      assert.are.equal(1, cache:invalidate_by_tag("new1"))
      assert.is_nil(cache:get("nr1"))
    end)

    it("of an entry ddbkit wrote and Node's plain set replaced: ddbkit's and Node's all go", function()
      assert.is_true(cache:set_with_tags("np1", 1, 0, { "da", "db" }))
      node_set(c, tname, "np1", "2")  -- Node's set: the entry loses ddbkit's list, tags stay
      assert.is_nil(raw(c, tname, "CACHE#np1").ddbkitTagKeys)
      -- and a mapping Node wrote earlier for it, still there
      assert(c:put_item{ TableName = tname, Item = { pk = "TAG#dn", sk = "CACHE#np1", ttl = 0 } })
      assert.is_true(cache:set_with_tags("np1", 3, 0, { "dc" }))
      assert.are.same({ "TAG#dc" }, node_tag_items(c, tname, "np1"))
      assert.are.equal(0, cache:invalidate_by_tags{ "da", "db", "dn" })
      assert.are.equal(3, cache:get("np1"))
      -- the same for delete
      node_set(c, tname, "np1", "4")
      assert(c:put_item{ TableName = tname, Item = { pk = "TAG#dn", sk = "CACHE#np1", ttl = 0 } })
      assert.is_true(cache:delete("np1"))
      assert.are.same({}, node_tag_items(c, tname, "np1"))
    end)

    it("of an entry that is gone (an orphan of invalidate_by_tag) go on the next set_with_tags", function()
      node_set_with_tags(c, tname, "no1", "1", 0, { "o1", "o2" })
      assert.are.equal(1, cache:invalidate_by_tag("o1"))  -- leaves TAG#o2, as Node does
      assert.are.same({ "TAG#o2" }, node_tag_items(c, tname, "no1"))
      assert.is_true(cache:set_with_tags("no1", 2, 0, { "o3" }))
      assert.are.same({ "TAG#o3" }, node_tag_items(c, tname, "no1"))
      assert.are.equal(0, cache:invalidate_by_tag("o2"))
      assert.are.equal(2, cache:get("no1"))
    end)
  end)

  describe("a retag whose cleanup fails", function()
    it("takes the entry's tag list off again, so the next delete or retag scans", function()
      local fail_op
      local rt = {
        send = function(core, op, params)
          if op == fail_op then
            return nil, setmetatable({ code = "InjectedFailure", message = "injected",
                                       status = 0, retryable = false }, require("ddbkit.core").error_mt)
          end
          return blocking.send(core, op, params)
        end,
        sleep = function() end, now_ms = function() return clock.t end, mono_ms = blocking.mono_ms,
      }
      local fc = ddbkit.cache.new{ client = H.client{ runtime = rt }, table_name = tname }
      for _, op in ipairs{ "Scan", "BatchWriteItem" } do
        local h = "fail-" .. op
        node_set_with_tags(c, tname, h, "1", 0, { "f1" })
        fail_op = op
        local ok, err = fc:set_with_tags(h, 2, 0, { "f2" })
        fail_op = nil
        assert.is_nil(ok)
        assert.are.equal("InjectedFailure", err.code)
        local e = raw(c, tname, "CACHE#" .. h)
        assert.are.equal("2", e.value)
        assert.is_nil(e.ddbkitTagKeys)  -- not vouched for: TAG#f1 may be left
        assert.is_true(fc:set_with_tags(h, 3, 0, { "f2" }))
        assert.are.same({ "TAG#f2" }, node_tag_items(c, tname, h))
      end
    end)
  end)

  describe("tag items ddbkit wrote, seen by Node's rule", function()
    it("Node's Scan by sk finds them; Node's delete and retag remove them", function()
      assert.is_true(cache:set_with_tags("dn1", 1, 0, { "x", "y" }))
      assert.are.same({ "TAG#x", "TAG#y" }, node_tag_items(c, tname, "dn1"))
      node_delete(c, tname, "dn1")
      assert.are.same({}, node_tag_items(c, tname, "dn1"))
      assert.is_true(cache:set_with_tags("dn2", 1, 0, { "x", "y" }))
      node_set_with_tags(c, tname, "dn2", "2", 0, { "z" })
      assert.are.same({ "TAG#z" }, node_tag_items(c, tname, "dn2"))
      -- then ddbkit deletes the entry Node wrote: Node's tag item goes too
      assert.is_true(cache:delete("dn2"))
      assert.are.same({}, node_tag_items(c, tname, "dn2"))
    end)
  end)

  describe("the no-Scan path for entries ddbkit vouches for", function()
    it("retag, plain set and delete of an entry ddbkit wrote send no Scan and no Query", function()
      assert.is_true(cache:set_with_tags("v1", 1, 0, { "p", "q", "r" }))
      c:reset_stats()
      assert.is_true(cache:set_with_tags("v1", 2, 0, { "r", "s", "t" }))
      local n, o = ops(c)
      assert.are.same({ PutItem = 1, BatchWriteItem = 1 }, o)
      assert.are.equal(2, n)
      c:reset_stats()
      assert.is_true(cache:set("v1", 3, 0))  -- keeps the entry's tag list
      n, o = ops(c)
      assert.are.same({ UpdateItem = 1 }, o)
      assert.is_truthy(raw(c, tname, "CACHE#v1").ddbkitTagKeys)
      c:reset_stats()
      assert.is_true(cache:delete("v1"))
      n, o = ops(c)
      assert.are.same({ DeleteItem = 1, BatchWriteItem = 1 }, o)
      assert.are.equal(2, n)
      assert.are.same({}, node_tag_items(c, tname, "v1"))
    end)

    it("a hash ddbkit cannot vouch for (new, or Node's) costs one Scan like Node's", function()
      c:reset_stats()
      assert.is_true(cache:set_with_tags("new1", 1, 0, { "a" }))
      local n, o = ops(c)
      assert.are.same({ PutItem = 1, Scan = 1, BatchWriteItem = 1 }, o)
      assert.are.equal(3, n)
    end)
  end)

  describe("request counts, each mode, each writer (a table of one Scan page)", function()
    it("are what cache.lua's header states", function()
      local want = {
        -- mode, writer of the old entry, operation -> requests by operation
        { "scan", "ddbkit", "delete", { DeleteItem = 1, BatchWriteItem = 1 } },
        { "scan", "node", "delete", { DeleteItem = 1, Scan = 1, BatchWriteItem = 1 } },
        { "scan", "ddbkit", "retag", { PutItem = 1, BatchWriteItem = 1 } },
        { "scan", "node", "retag", { PutItem = 1, Scan = 1, BatchWriteItem = 1 } },
        { "ignore", "ddbkit", "delete", { DeleteItem = 1, BatchWriteItem = 1 } },
        { "ignore", "node", "delete", { DeleteItem = 1, Query = 1 } },  -- Node's tags stay
        { "ignore", "ddbkit", "retag", { PutItem = 1, BatchWriteItem = 1 } },
        { "ignore", "node", "retag", { PutItem = 1, Query = 1, BatchWriteItem = 1 } },
      }
      for i, w in ipairs(want) do
        local mode, writer, op, expect = w[1], w[2], w[3], w[4]
        local cc = ddbkit.cache.new{ client = c, table_name = tname, node_tags = mode }
        local h = "cost" .. i
        if writer == "ddbkit" then
          assert.is_true(cc:set_with_tags(h, 1, 0, { "c1", "c2", "c3" }))
        else
          node_set_with_tags(c, tname, h, "1", 0, { "c1", "c2", "c3" })
        end
        c:reset_stats()
        if op == "delete" then
          assert.is_true(cc:delete(h))
        else
          assert.is_true(cc:set_with_tags(h, 2, 0, { "c3", "c4", "c5" }))
        end
        local _, o = ops(c)
        assert.are.same(expect, o, mode .. " " .. writer .. " " .. op)
        local left = node_tag_items(c, tname, h)
        if mode == "ignore" and writer == "node" then
          assert.is_true(#left > 0)  -- the documented cost of "ignore" in a mixed fleet
        elseif op == "delete" then
          assert.are.same({}, left)
        else
          assert.are.same({ "TAG#c3", "TAG#c4", "TAG#c5" }, left)
        end
      end
    end)
  end)

  describe("node_tags = \"ignore\" (a table no Node service writes)", function()
    it("never scans: Node's tag items survive, ddbkit's are found through gsi1", function()
      local ig = ddbkit.cache.new{ client = c, table_name = tname, node_tags = "ignore" }
      node_set_with_tags(c, tname, "ig1", "1", 0, { "ia" })
      c:reset_stats()
      assert.is_true(ig:delete("ig1"))
      local n, o = ops(c)
      assert.are.same({ DeleteItem = 1, Query = 1 }, o)
      assert.are.equal(2, n)
      assert.are.same({ "TAG#ia" }, node_tag_items(c, tname, "ig1"))  -- the documented cost
      -- ddbkit's own tag items after a Node set: found through gsi1
      assert.is_true(ig:set_with_tags("ig2", 1, 0, { "ib", "ic" }))
      node_set(c, tname, "ig2", "2")
      c:reset_stats()
      assert.is_true(ig:delete("ig2"))
      n, o = ops(c)
      assert.are.same({ DeleteItem = 1, Query = 1, BatchWriteItem = 1 }, o)
      assert.are.equal(3, n)
      assert.are.same({}, node_tag_items(c, tname, "ig2"))
      -- a new hash: a gsi1 Query, no Scan
      c:reset_stats()
      assert.is_true(ig:set_with_tags("ig3", 1, 0, { "id" }))
      n, o = ops(c)
      assert.are.same({ PutItem = 1, Query = 1, BatchWriteItem = 1 }, o)
    end)

    it("is checked", function()
      assert.has_error(function() ddbkit.cache.new{ client = c, node_tags = "maybe" } end,
        'ddbkit.cache.new: opts.node_tags must be "scan" (a table Node services share, the default) '
        .. 'or "ignore" (no Node writers)')
    end)
  end)
end)
