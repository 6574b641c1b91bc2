-- The store table schema shared with the Node package
-- @http-client-toolkit/store-dynamodb (its TABLE_SCHEMA / DEFAULT_TABLE_NAME),
-- as CreateTable parameters; TTL is enabled separately on `ttl`.
local _M = { _VERSION = "0.1.0" }

_M.DEFAULT_TABLE_NAME = "http-client-toolkit"
_M.TTL_ATTRIBUTE = "ttl"

local function key(name, kind) return { AttributeName = name, KeyType = kind } end
local function attr(name) return { AttributeName = name, AttributeType = "S" } end

_M.TABLE_SCHEMA = {
  AttributeDefinitions = { attr("pk"), attr("sk"), attr("gsi1pk"), attr("gsi1sk") },
  KeySchema = { key("pk", "HASH"), key("sk", "RANGE") },
  GlobalSecondaryIndexes = {
    {
      IndexName = "gsi1",
      KeySchema = { key("gsi1pk", "HASH"), key("gsi1sk", "RANGE") },
      Projection = { ProjectionType = "ALL" },
    },
  },
  BillingMode = "PAY_PER_REQUEST",
}

-- The idempotency table of @reaatech/idempotency-middleware-adapter-dynamodb.
_M.IDEMPOTENCY_TABLE_NAME = "idempotency-cache"
_M.IDEMPOTENCY_TTL_ATTRIBUTE = "expiresAt"
_M.IDEMPOTENCY_TABLE_SCHEMA = {
  AttributeDefinitions = { attr("cacheKey") },
  KeySchema = { key("cacheKey", "HASH") },
  BillingMode = "PAY_PER_REQUEST",
}

-- Returns a fresh CreateTable request for `schema` named `name`: callers may
-- change it without touching the shared definition.
function _M.create_table_params(schema, name)
  local function copy(v)
    if type(v) ~= "table" then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = copy(x) end
    return t
  end
  local p = copy(schema)
  p.TableName = name
  return p
end

return _M
