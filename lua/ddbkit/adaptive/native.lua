-- ddbkit.adaptive, native layout: the priority-aware rate limit on the
-- lease mechanism of ddbkit.ratelimit's native layout
-- (lua/ddbkit/ratelimit/native.lua: read its header first; the item, the
-- rule, the give-back, the ambiguity handling and the exactness proof are
-- that file's and its code, run here with a tag per priority). Chosen with
-- ddbkit.adaptive.new{ ..., layout = "native" }; the Node package does not
-- read these items.
--
--   local arl = ddbkit.adaptive.new{ client = client, layout = "native",
--     default_config = { limit = 200, window_ms = 3600000 } }
--   local ok, err = arl:acquire("api", "user")        -- or "background"
--
-- The item: one per resource, pk = sk = "<prefix>resource" (the key-prefix
-- policy's kind "adaptive_native", "ARLN#" by default), the attributes of
-- the native rate-limit item (v, w, b, ttl). The priority of a bucket is
-- its end's residue on the grid g: user leases end at k*g, background
-- leases at k*g + 1 (a recorded end 1 ms later than the user rule would
-- write: still >= the lease's real end, so the proof is unchanged; g >= 2
-- here). So the codec, the item size bound and the fuzz target are the
-- native ones. g is computed for 14 grid points per priority (not 30), so
-- both priorities' live buckets fit in the 32.
--
-- Rule at take time, for priority p with share s_p (this process's
-- strategy): (sum of all live buckets) + n <= limit, and (sum of p's live
-- buckets) + n <= s_p. A paused background or a share of 0 takes nothing
-- (false, no request).
-- What that guarantees (the native header's argument, applied to the
-- leases the rule counted):
-- * the total: no window of window_ms holds more than `limit` grants of
--   both priorities, across all processes, whatever each process's split
--   (the limit is the same for all);
-- * per process: the grants of p this process makes in any window are at
--   most its own share s_p (apply the argument to its last lease of p in
--   the window: its earlier ones were in the item that lease's write was
--   conditioned on). Across processes whose splits differ, p's grants in a
--   window are at most the largest s_p of the process that took the last
--   lease of p in it: a share is approximate per process, the total exact.
-- Same clock assumption and bound as the native rate limit
-- (max_clock_skew_ms).
-- A share applies at take time: when a recalculation shrinks it, a lease
-- already taken is still spent (at most lease_ms more), as the bound
-- above says (it is the share of the lease's take).
-- Config: every process on a resource must use the same limit, window_ms,
-- lease_ms and max_clock_skew_ms (g depends on all four). Where they
-- differ, the priorities read from the residues can be wrong (shares
-- off); the total does not read them and stays exact.
--
-- Activity for the strategy: in process memory only. The native layout has
-- no log items, so each process feeds scripts/strategies/adaptive.lua (or
-- the strategy given) with the timestamps of ITS OWN grants (user
-- timestamps, whether any user / background grant was made), from the
-- moment the store is made. Processes' views therefore differ (one may
-- split 9/1 while another splits 5/5); that is allowed: the total stays
-- exact. The capacity is recomputed at most once per
-- recalculation_interval_ms per resource, as in the Node layout.
--
-- Costs (requests): acquire 0 while the priority's lease holds grants,
-- when it knows the window (or its share) full, and for a paused
-- background or a share of 0; else 1 PutItem (+1 per race lost, at most
-- 10; +1 for a give-back written alone). can_proceed, get_wait_time 0 with
-- a live lease, a known-full window, a share of 0 or a limit of 0; else
-- 1 GetItem. get_status 1 GetItem. reset 1 DeleteItem. Cooldowns, configs,
-- clear and close are ddbkit.ratelimit's; clear also deletes these items.
-- Not supported (raise): record() (no log items).
local store = require "ddbkit.store"
local ratelimit = require "ddbkit.ratelimit"
local native = require "ddbkit.ratelimit.native"
local adaptive = require "ddbkit.adaptive"

local N, A = native.internal, adaptive.internal
local pairs, ipairs, error, setmetatable, type = pairs, ipairs, error, setmetatable, type
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = A.NAME
local KIND = "adaptive_native"
local OFF = { user = 0, background = 1 }

for _, m in pairs({ "set_cooldown", "get_cooldown", "clear_cooldown", "set_resource_config",
                    "get_resource_config", "clear", "close" }) do
  _M[m] = ratelimit[m]
end

--- native.new(opts) (through ddbkit.adaptive.new{ layout = "native", ... }):
--- the Node layout's options plus max_clock_skew_ms (default 0) and
--- lease_ms (see the native rate limit).
function _M.new(opts)
  opts = store.options(NAME .. ".new", opts, {
    client = store.is_client, table_name = store.is_string, policy = store.is_any,
    default_config = ratelimit.config_error, resource_configs = ratelimit.check_resource_configs,
    adaptive_config = store.is_table, strategy = store.is_any, layout = N.is_layout,
    max_clock_skew_ms = store.is_non_negative, lease_ms = store.is_positive,
    shared_dict = N.is_dict,
  })
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 3) end
  local self = ratelimit.init(setmetatable({}, mt), NAME, opts, { limit = 200, window_ms = 3600000 })
  self.store_name = A.STORE_NAME
  self.layout = "native"
  self.adaptive = A.adaptive_config(opts.adaptive_config)
  self.max_samples = max(100, floor(self.adaptive.high_activity_threshold * 20))
  local strategy, sname = store.load_script(opts.strategy, "strategies.adaptive", "adaptive strategy")
  if type(strategy.compute) ~= "function" then
    error(NAME .. ".new: adaptive strategy " .. sname .. " has no compute function", 3)
  end
  self.strategy, self.strategy_name = strategy, sname
  self.activity, self.capacity = {}, {}
  -- the lease machinery's fields (ddbkit.ratelimit.native)
  self.skew = opts.max_clock_skew_ms or 0
  self.lease_ms = opts.lease_ms
  self.kind, self.grid_points, self.min_grid = KIND, 14, 2
  self.clear_kinds = { "ratelimit", "ratelimit_slot", "cooldown", KIND }
  self.states, self.nstates = {}, 0
  self.shared = N.shared_of(NAME, opts.shared_dict)
  return self
end

local function forget(self, resource)
  local tbl, pk = ratelimit.table_of(self), store.key(self.policy, KIND, resource)
  for p, off in pairs(OFF) do
    local k = resource .. "\0" .. p
    if self.states[k] then self.states[k] = nil; self.nstates = self.nstates - 1 end
    if self.shared and tbl and pk then self.shared:forget(N.shared_key(tbl, pk, { off = off })) end
  end
  self.capacity[resource] = nil
end
function _M.on_config(self, resource) forget(self, resource) end
function _M.on_clear(self) self.states, self.nstates, self.activity, self.capacity = {}, 0, {}, {} end

-- Everything a priority operation needs: table, key, config, capacity.
local function prepare(self, resource)
  local tbl, pk = N.prepare(self, resource)
  if not tbl then return nil, pk end
  local a = self.activity[resource]
  if not a then
    a = { user = {}, any_user = false, any_background = false }
    self.activity[resource] = a
  end
  local cfg = ratelimit.config_for(self, resource)
  local cap, cerr = A.capacity_of(self, resource, a, cfg)
  if not cap then return nil, cerr end
  return { table = tbl, pk = pk, cfg = cfg, cap = cap, activity = a }
end

local function state(self, resource, priority, create)
  local k = resource .. "\0" .. priority
  if create then return N.state_of(self, k) end
  return self.states[k]
end

-- The item now (1 GetItem): total used, per priority used and first live
-- end, now.
local function usage(self, p)
  local s, err = N.read(self, p.table, p.pk)
  if not s then return nil, err end
  local now = floor(self.runtime.now_ms())
  local w, _, g = N.params(self, p.cfg)
  local ends, sums, used = N.live(s, now, w, self.skew)
  local u = { used = used, first = ends[1], now = now, user = 0, background = 0 }
  for i = 1, #ends do
    local pr = ends[i] % g == 1 and "background" or "user"
    u[pr] = u[pr] + sums[i]
    u[pr .. "_first"] = u[pr .. "_first"] or ends[i]
  end
  return u
end

--- store:acquire(resource, priority?) -> true | false | nil, err
function _M:acquire(resource, priority)
  priority = A.check_priority(priority, "acquire")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local share = A.share_of(p.cap, priority)
  if share <= 0 then return false end
  local st = state(self, resource, priority, true)
  local ok, aerr = N.spend(self, st, p.table, p.pk, p.cfg, { off = OFF[priority], share = share })
  if ok then A.track(self, resource, priority, floor(self.runtime.now_ms())) end
  return ok, aerr
end

--- store:can_proceed(resource, priority?) -> boolean | nil, err
function _M:can_proceed(resource, priority)
  priority = A.check_priority(priority, "can_proceed")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local share = A.share_of(p.cap, priority)
  if share <= 0 or p.cfg.limit <= 0 then return false end
  local st, P = state(self, resource, priority), N.shared_key(p.table, p.pk, { off = OFF[priority] })
  if N.left(self, st, P) > 0 then return true end
  if N.full_until(self, st, P) then return false end
  local u, uerr = usage(self, p)
  if not u then return nil, uerr end
  return u.used < p.cfg.limit and u[priority] < share
end

--- store:get_wait_time(resource, priority?) -> ms | nil, err: 0 with
-- capacity; window_ms when the limit is 0; recalculation_interval_ms for a
-- paused background or a share of 0; else until the first bucket that
-- holds the window (or the priority's share) full leaves it.
function _M:get_wait_time(resource, priority)
  priority = A.check_priority(priority, "get_wait_time")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  if p.cfg.limit <= 0 then return p.cfg.window_ms end
  local share = A.share_of(p.cap, priority)
  if share <= 0 then return self.adaptive.recalculation_interval_ms end
  local st, P = state(self, resource, priority), N.shared_key(p.table, p.pk, { off = OFF[priority] })
  if N.left(self, st, P) > 0 then return 0 end
  local full = N.full_until(self, st, P)
  if full then return max(0, ceil(full - self.runtime.mono_ms())) end
  local u, uerr = usage(self, p)
  if not u then return nil, uerr end
  local first
  if u.used >= p.cfg.limit then first = u.first
  elseif u[priority] >= share then first = u[priority .. "_first"]
  else return 0 end
  if not first then return 0 end
  return max(0, first + p.cfg.window_ms + self.skew - u.now + 1)
end

--- store:get_status(resource) -> { remaining, available, reset_time,
--- limit, adaptive = { user_reserved, background_max, background_paused,
--- recent_user_activity, reason } } | nil, err (1 GetItem).
-- The used counts are the item's: leased grants, spent or not, count as
-- used, less this process's own unspent ones. remaining: the Node rule,
-- user_reserved - user_used + background_max - background_used; available:
-- what acquire may still grant (each priority's unused share, a paused
-- background's as 0, at most what the total leaves). The shares and
-- recent_user_activity are this process's view (its own grants).
function _M:get_status(resource)
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local u, uerr = usage(self, p)
  if not u then return nil, uerr end
  local total, remaining, available = u.used, 0, 0
  for _, pr in ipairs({ "user", "background" }) do
    local mine = N.left(self, state(self, resource, pr), N.shared_key(p.table, p.pk, { off = OFF[pr] }))
    local used = u[pr] - mine
    total = total - (u[pr] - used)
    local share = pr == "user" and p.cap.user_reserved or p.cap.background_max
    remaining = remaining + (share - used)
    available = available + max(0, A.share_of(p.cap, pr) - used)
  end
  available = max(0, min(available, p.cfg.limit - total))
  local m = A.metrics_of(self, p.activity, u.now)
  return {
    remaining = remaining, available = available, reset_time = u.now + p.cfg.window_ms,
    limit = p.cfg.limit,
    adaptive = {
      user_reserved = p.cap.user_reserved, background_max = p.cap.background_max,
      background_paused = p.cap.background_paused, recent_user_activity = m.recent_user,
      reason = p.cap.reason,
    },
  }
end

--- store:reset(resource) -> true | nil, err: deletes the item (1 request)
-- and what this process remembers of the resource (leases, activity).
function _M:reset(resource)
  local tbl, pk = N.prepare(self, resource)
  if not tbl then return nil, pk end
  forget(self, resource)
  self.activity[resource] = nil
  local ok, err = self.client:delete_item{ TableName = tbl, Key = { pk = pk, sk = pk } }
  if not ok then return nil, err end
  return true
end

--- store:record(): not supported (the native layout has no log items).
function _M:record()
  error(NAME .. ":record is not supported by the native layout (it has no log items; "
        .. "acquire tracks this process's activity)", 2)
end

--- store:strategy_info() -> the strategy's name
function _M:strategy_info() return self.strategy_name end

return _M
