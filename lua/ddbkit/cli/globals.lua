-- ddbkit.cli.globals: the environment `ddbkit repl` and `ddbkit run` share,
-- as globals: ddbkit, client, cache, dedupe, rate_limit, adaptive, locks,
-- idem, reload. (Not ddbkit.cli.env: that name is the table the executable
-- preloads.)
local ddbkit = require "ddbkit"
local store = require "ddbkit.store"
local without_position = require("ddbkit.cli.errors").without_position

local type, pairs, ipairs, error, pcall = type, pairs, ipairs, error, pcall

local _M = { _VERSION = "0.1.0" }

--- globals.install(G, cfg, client) -> true | nil, message: puts the REPL's
-- and scripts' globals into G. Makes no request. Fails (with G.reload in
-- place, to retry) when the policy or strategy script cannot be loaded.
function _M.install(G, cfg, client)
  local v = cfg.value
  local stores
  -- ddbkit loads these on first use through an __index function, which Tab
  -- completion does not call; the stores load them anyway, so name them now.
  for _, m in ipairs({ "cache", "dedupe", "ratelimit", "adaptive", "idempotency", "hash",
                       "hash_request" }) do
    local _ = ddbkit[m]
  end
  G.ddbkit, G.client = ddbkit, client
  G.idem = ddbkit.idempotency.new{ client = client, table_name = v.idempotency_table }

  -- A lock per name, all on the store table (whose key is pk, sk).
  function G.locks(name, opts)
    if type(name) ~= "string" or name == "" then
      error("bad argument #1 to 'locks' (non-empty string expected, got "
            .. (name == "" and "an empty string" or type(name)) .. ")", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #2 to 'locks' (table expected, got " .. type(opts) .. ")", 2)
    end
    local key = "LOCK#" .. name
    local o = { client = client, table_name = v.table, key = { pk = key, sk = key } }
    for k, x in pairs(opts or {}) do o[k] = x end
    return ddbkit.lock.new(o)
  end

  -- The stores load their policy and strategy scripts when created
  -- (store.load_script, which keeps each compiled file: forget_scripts
  -- makes it read them again), so re-creating them is the reload. The old
  -- stores are closed: one still held somewhere should fail, not keep the
  -- old policy.
  function G.reload()
    store.forget_scripts()
    local ok, fresh = pcall(ddbkit.create_stores, { client = client, table_name = v.table,
      policy = v.policy, adaptive_rate_limit = { strategy = v.strategy } })
    if not ok then error(without_position(fresh), 2) end
    if stores then stores:close() end
    stores = fresh
    G.cache, G.dedupe, G.rate_limit, G.adaptive =
      fresh.cache, fresh.dedupe, fresh.rate_limit, fresh.adaptive_rate_limit
    return { policy = fresh.cache.policy.name,
             strategy = fresh.adaptive_rate_limit:strategy_info() }
  end

  local ok, err = pcall(G.reload)
  if not ok then return nil, without_position(err) end
  return true
end

return _M
