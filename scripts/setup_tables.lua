-- Creates the store table (TABLE_SCHEMA, TTL on `ttl`) if it is missing.
-- Used by `make run`; the stores themselves never create tables.
--   lua5.4 scripts/setup_tables.lua ENDPOINT [TABLE_NAME]
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local endpoint = assert(arg[1], "usage: setup_tables.lua ENDPOINT [TABLE_NAME]")
local name = arg[2] or ddbkit.DEFAULT_TABLE_NAME

local client = assert(ddbkit.client{ endpoint = endpoint, region = "us-east-1",
  credentials = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" } })

local _, err = client:describe_table{ TableName = name }
if err and err.code == "ResourceNotFoundException" then
  assert(client:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, name)))
  assert(client:wait_for_table(name))
  assert(client:update_time_to_live{ TableName = name,
    TimeToLiveSpecification = { AttributeName = schema.TTL_ATTRIBUTE, Enabled = true } })
  print(("created table %s (TTL on %s)"):format(name, schema.TTL_ATTRIBUTE))
elseif err then
  error(tostring(err))
else
  print(("table %s already exists"):format(name))
end
client:close()
