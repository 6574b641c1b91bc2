-- `make bench`: creates table "bench" (pk S, hash key) in DynamoDB Local and
-- puts the one item every client reads. The item is the one
-- tests/bench/nginx.conf.in returns: pk, name, n, a list of 3 strings and a
-- 200-byte blob (bytes 0..199).
--   lua5.4 tests/bench/setup.lua ENDPOINT
local ddbkit = require "ddbkit"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local endpoint = assert(arg[1], "usage: setup.lua ENDPOINT")
local c = common.client(endpoint)

local _, err = c:describe_table{ TableName = "bench" }
if err and err.code == "ResourceNotFoundException" then
  assert(c:create_table{
    TableName = "bench",
    AttributeDefinitions = { { AttributeName = "pk", AttributeType = "S" } },
    KeySchema = { { AttributeName = "pk", KeyType = "HASH" } },
    BillingMode = "PAY_PER_REQUEST",
  })
  assert(c:wait_for_table("bench", 30000))
elseif err then
  error(tostring(err))
end

local bytes = {}
for i = 0, 199 do bytes[#bytes + 1] = string.char(i % 256) end

assert(c:put_item{
  TableName = "bench",
  Item = {
    pk = "p1",
    name = "bench-item",
    n = 42,
    tags = { "alpha", "beta", "gamma" },
    blob = ddbkit.binary(table.concat(bytes)),
  },
})

local res = assert(c:get_item{ TableName = "bench", Key = { pk = "p1" } })
assert(res.Item and res.Item.pk == "p1" and res.Item.n == 42 and #res.Item.tags == 3
       and #res.Item.blob == 200, "the bench item did not read back as written")
c:close()
