-- ddbkit: DynamoDB for programs that embed Lua.
--
--   local ddbkit = require "ddbkit"
--   local client = assert(ddbkit.client{ region = "us-east-1" })
--   local res, err = client:get_item{ TableName = "t", Key = { pk = "a", sk = "b" } }
local core = require "ddbkit.core"
local client = require "ddbkit.client"
local schema = require "ddbkit.schema"
local lock = require "ddbkit.lock"

local _M = {
  _VERSION = core.version,
  client = client.new,
  lock = lock,

  -- Values that plain Lua cannot say on its own.
  null = core.null,          -- DynamoDB NULL
  array = core.array,        -- mark a table as a list (so {} is an empty L)
  binary = core.binary,      -- bytes, stored as B
  set = core.set,            -- SS / NS / BS, by element type
  decimal = core.decimal,    -- a number kept as its exact decimal text
  is_binary = core.is_binary,
  is_set = core.is_set,
  is_decimal = core.is_decimal,
  is_array = core.is_array,

  TABLE_SCHEMA = schema.TABLE_SCHEMA,
  DEFAULT_TABLE_NAME = schema.DEFAULT_TABLE_NAME,
  IDEMPOTENCY_TABLE_SCHEMA = schema.IDEMPOTENCY_TABLE_SCHEMA,
  IDEMPOTENCY_TABLE_NAME = schema.IDEMPOTENCY_TABLE_NAME,
}

return _M
