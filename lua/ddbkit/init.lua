-- ddbkit: DynamoDB for programs that embed Lua.
--
--   local ddbkit = require "ddbkit"
--   local client = assert(ddbkit.client{ region = "us-east-1" })
--   local res, err = client:get_item{ TableName = "t", Key = { pk = "a", sk = "b" } }
local core = require "ddbkit.core"
local client = require "ddbkit.client"
local schema = require "ddbkit.schema"
local lock = require "ddbkit.lock"
local scheduler = require "ddbkit.scheduler"

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

  -- Tasks on the default scheduler (for clients with the coroutine
  -- runtime, ddbkit.runtime.coroutine): spawn(fn, ...) -> task,
  -- step(timeout_ms?) -> live tasks, fds() -> fds, timeout_ms (for a host's
  -- poll, then step(0)), run(fn, ...) -> true, fn's results | false, err,
  -- register(co) -> task.
  spawn = scheduler.spawn,
  step = scheduler.step,
  fds = scheduler.fds,
  run = scheduler.run,
  register = scheduler.register,
  scheduler = scheduler,   -- on_error, stats

  TABLE_SCHEMA = schema.TABLE_SCHEMA,
  DEFAULT_TABLE_NAME = schema.DEFAULT_TABLE_NAME,
  IDEMPOTENCY_TABLE_SCHEMA = schema.IDEMPOTENCY_TABLE_SCHEMA,
  IDEMPOTENCY_TABLE_NAME = schema.IDEMPOTENCY_TABLE_NAME,
}

-- The stores load on first use: ddbkit.cache, ddbkit.dedupe,
-- ddbkit.ratelimit, ddbkit.adaptive, ddbkit.idempotency (and
-- ddbkit.hash_request).
local LAZY = { cache = "ddbkit.cache", dedupe = "ddbkit.dedupe",
               ratelimit = "ddbkit.ratelimit", adaptive = "ddbkit.adaptive", hash = "ddbkit.hash",
               idempotency = "ddbkit.idempotency" }
setmetatable(_M, { __index = function(t, k)
  local name = LAZY[k]
  if name then
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end
  if k == "hash_request" then
    local f = require("ddbkit.hash").hash_request
    rawset(t, k, f)
    return f
  end
end })

local STORES = {
  cache = "ddbkit.cache", dedupe = "ddbkit.dedupe",
  rate_limit = "ddbkit.ratelimit", adaptive_rate_limit = "ddbkit.adaptive",
}

--- ddbkit.create_stores{ client, table_name?, policy?, cache?, dedupe?,
--    rate_limit?, adaptive_rate_limit? } -> stores
-- Every store on one table (and one key-prefix policy); each store's own
-- table of options may override table_name and policy. stores:close()
-- closes them all.
function _M.create_stores(opts)
  if type(opts) ~= "table" then error("ddbkit.create_stores: opts must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "client" and k ~= "table_name" and k ~= "policy" and not STORES[k] then
      error("ddbkit.create_stores: unknown option opts." .. tostring(k), 2)
    end
  end
  local stores = {}
  for field, module in pairs(STORES) do
    local o = { client = opts.client, table_name = opts.table_name, policy = opts.policy }
    for k, v in pairs(opts[field] or {}) do o[k] = v end
    stores[field] = require(module).new(o)
  end
  function stores:close()
    for field in pairs(STORES) do self[field]:close() end
  end
  return stores
end

return _M
