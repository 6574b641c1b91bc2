-- Creates the two tables the demo (and `make run`) needs, if they are
-- missing; an existing table is left as it is (only its TTL is switched on
-- when it is off). The stores themselves never create tables.
--   lua5.4 scripts/setup_tables.lua ENDPOINT [STORE_TABLE [IDEMPOTENCY_TABLE]]
--
--   store table        ddbkit.TABLE_SCHEMA, TTL on `ttl`
--                      (default "http-client-toolkit")
--   idempotency table  ddbkit.IDEMPOTENCY_TABLE_SCHEMA, TTL on `expiresAt`
--                      (default "idempotency-cache")
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"

local endpoint = assert(arg[1], "usage: setup_tables.lua ENDPOINT [STORE_TABLE [IDEMPOTENCY_TABLE]]")
local store_table = arg[2] or ddbkit.DEFAULT_TABLE_NAME
local idem_table = arg[3] or schema.IDEMPOTENCY_TABLE_NAME

local client = assert(ddbkit.client{ endpoint = endpoint, region = "us-east-1",
  credentials = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" } })

local function check(res, err, what)
  if not res then error(what .. ": " .. tostring(err), 0) end
  return res
end

-- Creates `name` with `table_schema` unless it exists, then makes sure TTL
-- is on `ttl_attr`. Returns what was done, for one line of output.
local function ensure(name, table_schema, ttl_attr)
  local did
  local _, err = client:describe_table{ TableName = name }
  if err and err.code == "ResourceNotFoundException" then
    local ok, cerr = client:create_table(schema.create_table_params(table_schema, name))
    -- someone else creating it at the same moment is as good as done
    if not ok and cerr.code ~= "ResourceInUseException" then
      error("creating " .. name .. ": " .. tostring(cerr), 0)
    end
    did = "created"
  elseif err then
    error("describing " .. name .. ": " .. tostring(err), 0)
  else
    did = "already exists"
  end
  local active, werr = client:wait_for_table(name)
  check(active, werr, "waiting for " .. name)

  local ttl, derr = client:describe_time_to_live{ TableName = name }
  check(ttl, derr, "reading the TTL of " .. name)
  local d = ttl.TimeToLiveDescription or {}
  local status = d.TimeToLiveStatus
  if status == "ENABLED" or status == "ENABLING" then
    if d.AttributeName ~= ttl_attr then
      error(("table %s has TTL on %s, not %s"):format(name, tostring(d.AttributeName), ttl_attr), 0)
    end
  else
    local ok, terr = client:update_time_to_live{ TableName = name,
      TimeToLiveSpecification = { AttributeName = ttl_attr, Enabled = true } }
    check(ok, terr, "enabling TTL on " .. name)
    if did == "already exists" then did = did .. ", TTL switched on" end
  end
  print(("table %-20s %s (TTL on %s)"):format(name, did, ttl_attr))
end

ensure(store_table, ddbkit.TABLE_SCHEMA, schema.TTL_ATTRIBUTE)
ensure(idem_table, ddbkit.IDEMPOTENCY_TABLE_SCHEMA, schema.IDEMPOTENCY_TTL_ATTRIBUTE)
client:close()
