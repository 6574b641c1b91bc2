-- The key-prefix policy swap, through the cache: the shipped tenant-prefix
-- example moves items under "<tenant>|CACHE#...", tenants do not see each
-- other's entries, and a broken policy fails with PolicyError naming the
-- script before anything is written.
local H = require "test_helper"
local ddbkit = require "ddbkit"

local ROOT = H.spec_dir() .. "/../.."
local TENANT_SCRIPT = ROOT .. "/scripts/examples/tenant_prefix.lua"
local BASE = dofile(ROOT .. "/scripts/policies/key_prefix.lua")

local function new_table(c) return H.store_table(c, "policy") end

local function keys_of(c, tname)
  local out = {}
  for _, it in ipairs(assert(c:scan_all{ TableName = tname, ConsistentRead = true })) do
    out[#out + 1] = it.pk .. " " .. it.sk
  end
  table.sort(out)
  return out
end

-- A tenant policy as a table, so the test chooses the tenant.
local function tenant(name)
  return {
    name = "tenant-prefix(" .. name .. ")",
    prefix = function(kind)
      local p = BASE.prefix(kind)
      return p and (name .. "|" .. p)
    end,
  }
end

describe("key-prefix policy (through ddbkit.cache)", function()
  local c, tname

  setup(function()
    c = H.client()
    tname = new_table(c)
  end)

  it("the tenant-prefix example script puts items under <tenant>|CACHE#", function()
    local t = os.getenv("DDBKIT_TENANT") or "default"  -- the script reads it at load time
    for _, spec in ipairs({ TENANT_SCRIPT, "examples.tenant_prefix" }) do
      local cache = ddbkit.cache.new{ client = c, table_name = tname, policy = spec }
      assert.is_true(cache:set_with_tags("h1", { v = 1 }, 0, { "tg" }))
      local keys = keys_of(c, tname)
      assert.are.same({ t .. "|CACHE#h1 " .. t .. "|CACHE#h1", t .. "|TAG#tg " .. t .. "|CACHE#h1" }, keys)
      local tag = assert(c:get_item{ TableName = tname,
        Key = { pk = t .. "|TAG#tg", sk = t .. "|CACHE#h1" } }).Item
      assert.are.equal(t .. "|CACHE#h1", tag.gsi1pk)
      assert.are.equal(t .. "|TAG#tg", tag.gsi1sk)
      assert.are.equal(1, cache:get("h1").v)
      assert.are.equal(1, cache:invalidate_by_tag("tg"))
      assert.are.same({}, keys_of(c, tname))
    end
  end)

  it("two tenants on one table do not see each other's entries", function()
    local a = ddbkit.cache.new{ client = c, table_name = tname, policy = tenant("acme") }
    local b = ddbkit.cache.new{ client = c, table_name = tname, policy = tenant("globex") }
    local node = ddbkit.cache.new{ client = c, table_name = tname }
    assert.is_true(a:set("same-hash", "for acme", 0))
    assert.is_nil(b:get("same-hash"))
    assert.is_nil(node:get("same-hash"))
    assert.is_true(b:set_with_tags("same-hash", "for globex", 0, { "shared" }))
    assert.is_true(a:set_with_tags("other", "acme tagged", 0, { "shared" }))
    assert.are.equal("for acme", a:get("same-hash"))
    assert.are.equal("for globex", b:get("same-hash"))
    -- invalidation, delete and a scoped clear stay inside the tenant
    assert.are.equal(1, b:invalidate_by_tag("shared"))
    assert.are.equal("acme tagged", a:get("other"))
    assert.is_true(b:set("x", 1, 0))
    assert.is_true(a:delete("same-hash"))
    assert.are.equal(1, b:get("x"))
    assert.are.equal(1, b:clear("x"))
    assert.are.equal("acme tagged", a:get("other"))
    assert.are.same({ "acme|CACHE#other acme|CACHE#other", "acme|TAG#shared acme|CACHE#other" },
                    keys_of(c, tname))
    assert.are.equal(2, a:clear())
    assert.are.same({}, keys_of(c, tname))
  end)

  describe("a broken policy", function()
    local dir
    local BAD = {
      raises = 'error("tenant lookup failed")',
      returns_nil = "return nil",
      returns_empty = 'return ""',
      returns_control = 'return "acme\\n|CACHE#"',
      returns_number = "return 42",
      tag_only_bad = 'if kind == "tag" then return "" end return "CACHE#"',
      -- these used to reach the encoder (ValidationException) or DynamoDB
      -- (a key over its size limit) instead of naming the script
      returns_invalid_utf8 = 'return "acme\\255|CACHE#"',
      returns_surrogate = 'return "acme\\237\\160\\128|CACHE#"',
      returns_overlong = 'return "\\192\\175CACHE#"',
      returns_truncated_utf8 = 'return "CACHE#\\226\\130"',
      returns_oversized = 'return string.rep("p", 1500)',
      returns_just_too_long = 'return string.rep("p", 513)',
    }

    setup(function() dir = H.mktemp_dir() end)
    teardown(function()
      for name in pairs(BAD) do os.remove(dir .. "/" .. name .. ".lua") end
      os.execute("env -u LD_PRELOAD rmdir " .. H.shell_quote(dir))
    end)

    for name, body in pairs(BAD) do
      it("that " .. name:gsub("_", " ") .. " yields PolicyError naming the script, writes nothing", function()
        local path = dir .. "/" .. name .. ".lua"
        local f = assert(io.open(path, "w"))
        f:write("return { prefix = function(kind) " .. body .. " end }\n")
        f:close()
        local t = new_table(c)
        local cache = ddbkit.cache.new{ client = c, table_name = t, policy = path }
        for _, call in ipairs({
          function() return cache:set("h", 1, 60) end,
          function() return cache:set_with_tags("h", 1, 60, { "tg" }) end,
          function() return cache:get("h") end,
          function() return cache:delete("h") end,
          function() return cache:invalidate_by_tag("tg") end,
          function() return cache:invalidate_by_tags{ "tg" } end,
          function() return cache:clear() end,
        }) do
          local v, err = call()
          assert.is_nil(v)
          assert.are.equal("PolicyError", err.code)
          assert.truthy(err.message:find(path, 1, true), err.message)
        end
        assert.are.same({}, keys_of(c, t))
      end)
    end

    it("accepts a UTF-8 prefix of exactly 512 bytes, and the longest key fits", function()
      local prefix = string.rep("é", 255) .. "C#"          -- 512 bytes
      local cache = ddbkit.cache.new{ client = c, table_name = tname,
        policy = { name = "long", prefix = function() return prefix end } }
      local hash = string.rep("h", 512)
      assert.is_true(cache:set(hash, 1, 0))
      assert.are.equal(1, cache:get(hash))
      assert.is_true(cache:delete(hash))
    end)

    it("does not echo a bad prefix into the message", function()
      local cache = ddbkit.cache.new{ client = c, table_name = tname,
        policy = { name = "echo", prefix = function() return string.rep("z", 4000) end } }
      local v, err = cache:set("h", 1, 60)
      assert.is_nil(v)
      assert.are.equal("PolicyError", err.code)
      assert.truthy(err.message:find("4000-byte", 1, true), err.message)
      assert.is_nil(err.message:find("zzzz", 1, true))
    end)

    it("a policy naming a table DynamoDB would refuse yields PolicyError", function()
      for _, bad in ipairs{ "a", "bad name!", string.rep("t", 256), "t\255t" } do
        local cache = ddbkit.cache.new{ client = c, table_name = tname, policy = {
          name = "bad-table", prefix = BASE.prefix, table_name = function() return bad end } }
        local v, err = cache:set("h", 1, 60)
        assert.is_nil(v)
        assert.are.equal("PolicyError", err.code)
        assert.truthy(err.message:find("bad-table", 1, true))
      end
    end)

    it("a table policy is named by its name field", function()
      local cache = ddbkit.cache.new{ client = c, table_name = tname,
        policy = { name = "my-policy", prefix = function() return 7 end } }
      local v, err = cache:set("h", 1, 60)
      assert.is_nil(v)
      assert.are.equal("PolicyError", err.code)
      assert.truthy(err.message:find("my-policy", 1, true))
      assert.are.same({}, keys_of(c, tname))
    end)

    it("a policy that names no table for the cache yields PolicyError", function()
      local cache = ddbkit.cache.new{ client = c, table_name = tname, policy = {
        name = "no-table", prefix = BASE.prefix, table_name = function() return "" end } }
      local v, err = cache:set("h", 1, 60)
      assert.is_nil(v)
      assert.are.equal("PolicyError", err.code)
      assert.truthy(err.message:find("no-table", 1, true))
      assert.are.same({}, keys_of(c, tname))
    end)

    it("a policy that cannot load raises at new(), naming it", function()
      assert.has_error(function()
        ddbkit.cache.new{ client = c, policy = dir .. "/does_not_exist.lua" }
      end)
      assert.has_error(function() ddbkit.cache.new{ client = c, policy = { name = "x" } } end,
        "ddbkit: key-prefix policy x has no prefix(kind) function")
      assert.has_error(function() ddbkit.cache.new{ client = c, policy = 5 } end,
        "ddbkit.cache.new: opts.policy must be a module name, a file path or a table")
    end)
  end)
end)
