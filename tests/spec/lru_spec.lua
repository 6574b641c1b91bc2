-- ddbkit.lru: the generic least-recently-used map (no DynamoDB needed).
local lru = require "ddbkit.lru"

describe("ddbkit.lru", function()
  it("refuses a size that is not an integer >= 1, naming it", function()
    for _, bad in ipairs{ 0, -1, 1.5, "3", nil } do
      assert.has_error(function() lru.new(bad) end, "ddbkit.lru.new: size must be an integer >= 1")
    end
  end)

  it("gets what was set, and nil for what was not", function()
    local m = lru.new(3)
    m:set("a", 1)
    m:set("b", false)
    assert.are.equal(1, m:get("a"))
    assert.is_false(m:get("b"))
    assert.is_nil(m:get("c"))
    assert.are.equal(2, m:count())
  end)

  it("evicts the least recently used entry when full; a get or a set makes an entry recent", function()
    local m = lru.new(2)
    m:set("a", 1)
    m:set("b", 2)
    assert.are.equal(1, m:get("a"))   -- a is now the most recent: b goes next
    m:set("c", 3)
    assert.is_nil(m:get("b"))
    assert.are.equal(1, m:get("a"))
    assert.are.equal(3, m:get("c"))
    m:set("a", 10)                     -- replacing makes it recent too: c goes next
    m:set("d", 4)
    assert.is_nil(m:get("c"))
    assert.are.equal(10, m:get("a"))
    assert.are.equal(2, m:count())
  end)

  it("drops an entry read after its expires_at, and never expires one read without a time", function()
    local m = lru.new(4)
    m:set("a", "x", 100)
    m:set("b", "y")
    assert.are.equal("x", m:get("a", 100))   -- not before it is past
    assert.are.equal("x", m:get("a"))
    assert.is_nil(m:get("a", 101))
    assert.is_nil(m:get("a"))                -- gone, not only hidden
    assert.are.equal("y", m:get("b", 1e15))
    assert.are.equal(1, m:count())
  end)

  it("deletes, and a nil value deletes too", function()
    local m = lru.new(2)
    m:set("a", 1)
    m:set("b", 2)
    m:delete("a")
    m:delete("missing")
    m:set("b", nil)
    assert.is_nil(m:get("a"))
    assert.is_nil(m:get("b"))
    assert.are.equal(0, m:count())
    m:set("c", 3)
    m:set("d", 4)
    assert.are.equal(3, m:get("c"))
    assert.are.equal(4, m:get("d"))
  end)

  it("a size of one keeps only the newest entry", function()
    local m = lru.new(1)
    for i = 1, 10 do m:set(i, i * i) end
    assert.are.equal(1, m:count())
    assert.are.equal(100, m:get(10))
    assert.is_nil(m:get(9))
  end)
end)
