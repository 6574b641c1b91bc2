-- ddbkit.create_stores: every store on one table, sharing one client and
-- one key-prefix policy, each also reachable as ddbkit.<store>.
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local H = require "test_helper"

local client, T

setup(function()
  client = H.client()
  T = H.unique("stores")
  assert(client:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
  assert(client:wait_for_table(T))
end)

teardown(function()
  client:delete_table{ TableName = T }
  client:close()
end)

describe("ddbkit.create_stores", function()
  it("builds the four stores on one table, each working", function()
    local stores = ddbkit.create_stores{
      client = client, table_name = T,
      cache = { max_entry_size_bytes = 1000 },
      dedupe = { job_timeout_ms = 60000, poll_interval_ms = 50 },
      rate_limit = { default_config = { limit = 2, window_ms = 60000 } },
      adaptive_rate_limit = { default_config = { limit = 10, window_ms = 60000 } },
    }
    assert(stores.cache:set("h", { v = 1 }, 60))
    assert.are.same({ v = 1 }, stores.cache:get("h"))
    local job = assert(stores.dedupe:register_or_join("job"))
    assert.is_true(job.is_owner)
    assert.is_true(stores.rate_limit:acquire("api"))
    assert.is_true(stores.rate_limit:acquire("api"))
    assert.is_false(stores.rate_limit:acquire("api"))
    assert.is_true(stores.adaptive_rate_limit:acquire("api", "user"))
    -- all of it landed in the one table, under the Node prefixes
    local keys = {}
    for item in client:scan_items{ TableName = T } do keys[#keys + 1] = item.pk end
    table.sort(keys)
    local joined = table.concat(keys, " ")
    assert.is_truthy(joined:find("CACHE#h", 1, true))
    assert.is_truthy(joined:find("DEDUPE#job", 1, true))
    assert.is_truthy(joined:find("RATELIMIT#api", 1, true))
    assert.is_truthy(joined:find("RATELIMIT_SLOT#api", 1, true))
    stores:close()
  end)

  it("gives every store the shared policy", function()
    local policy = { name = "short", prefix = function(kind) return kind:sub(1, 2):upper() .. "#" end }
    local stores = ddbkit.create_stores{ client = client, table_name = T, policy = policy }
    assert(stores.cache:set("p", 1, 60))
    local raw = assert(client:get_item{ TableName = T, Key = { pk = "CA#p", sk = "CA#p" } })
    assert.are.equal("1", raw.Item.value)
    stores:close()
  end)

  it("raises on an unknown option, naming it", function()
    assert.has_error(function() ddbkit.create_stores{ client = client, kache = {} } end,
                     "ddbkit.create_stores: unknown option opts.kache")
  end)

  it("reaches each store module and hash_request from ddbkit", function()
    assert.are.equal(require("ddbkit.cache"), ddbkit.cache)
    assert.are.equal(require("ddbkit.ratelimit"), ddbkit.ratelimit)
    assert.are.equal(require("ddbkit.dedupe"), ddbkit.dedupe)
    assert.are.equal(require("ddbkit.adaptive"), ddbkit.adaptive)
    assert.are.equal(64, #ddbkit.hash_request("/users", { id = 1 }))
  end)
end)
