-- ddbkit.ratelimit, native layout: exact sliding-window rate limits whose
-- decisions are made in memory from leases, one conditional write per
-- lease. Chosen with ddbkit.ratelimit.new{ ..., layout = "native" }; the
-- Node package does not read these items (use the default layout, "node",
-- where Node services share the limit).
--
--   local rl = ddbkit.ratelimit.new{ client = client, layout = "native",
--     default_config = { limit = 20000, window_ms = 1000 },
--     resource_configs = { ["slow-api"] = { limit = 10, window_ms = 60000 } } }
--   local ok, err = rl:acquire("api-key:42")      -- true | false | nil, err
--
-- The item: one per resource, pk = sk = "<prefix>resource" (the key-prefix
-- policy's kind "ratelimit_native", "RLN#" by default), attributes
--   v   version (a number), +1 at every write: the optimistic condition
--   w   the token of the write that made this version (see "Ambiguity")
--   b   the leases that still count, as at most B (32) buckets
--       "E:s,E:s,...": s grants of leases whose recorded end is E (epoch ms,
--       a multiple of the grid g); E is the lease's end rounded UP to g
--   ttl seconds: ceil of the last bucket's end + window_ms + skew, so TTL
--       never removes the item while a bucket still counts
-- Size: at most 32 x ~22 bytes: under 1 KB (1 WCU per write) whatever the
-- limit (sums have at most 10 digits) or the number of processes.
--
-- A lease: n grants this process may spend during [t, e], t the wall-clock
-- time read just before the write that takes it (after the item state the
-- write is conditioned on was known), e = t + L. The process stops
-- spending at its monotonic clock's t + L (mono read with t). L = lease_ms
-- (default max(min(window_ms / 10, 1000), min(window_ms / 2, 20))). n = this
-- process's demand rate on the resource (calls since its previous take
-- over the time since) x L, at least 1, at most what is free.
--
-- Rule at take time t (one conditional PutItem, version check; on a lost
-- race the item comes back with ReturnValuesOnConditionCheckFailure =
-- ALL_OLD, so the retry needs no read): drop every bucket with
-- E <= t - W - S (W = window_ms, S = max_clock_skew_ms); then
-- (sum of the kept buckets) + n <= limit.
--
-- Why no window of W holds more than `limit` grants (all processes):
-- take any interval I = (a, a + W] and the leases with a grant spent in
-- I; let X be the last of them taken (writes are serialized by the
-- version). Any other such lease Y was in the item X's write was
-- conditioned on, with a recorded end E_Y >= its spends (rounded up, and
-- shortening below keeps that). In real time: E_Y >= tau_Y > a >=
-- tau_X - W >= t_X - W, as X spends only after t_X. Clocks: E_Y was read
-- on Y's clock, t_X on X's; if they differ by at most S, E_Y > t_X - W - S
-- on the clocks as stored, so X's rule counted Y (a bucket is dropped only
-- when E <= now - W - S, which by the same argument no later taker would
-- have needed). So the grants in I are at most X's rule's sum + n_X <=
-- limit. Assumption: wall clocks of the processes within S of each other
-- (default S = 0: one machine, or clocks that agree as the Node layout
-- assumes), no wall-clock jumps during a lease. If they differ by D > S,
-- the bound degrades to: no interval of W - (D - S) holds more than
-- `limit` grants.
--
-- Giving back (free of requests): when a process takes its next lease, the
-- same write rewrites its previous lease, which it no longer spends (it
-- was exhausted or had expired): its n grants leave bucket E and its s
-- spent grants go to the bucket of its last spend (rounded up). The record
-- still covers every spend (count and time), so the argument holds. It is
-- done only when E > now - W (then no process can have dropped that
-- bucket, under the clock assumption) and bucket E exists with at least n
-- (buckets are never merged, so it is ours). Without it an exhausted
-- lease would count until e + W and utilisation would lose ~L/W.
-- Grants unspent at the end of a lease that is never followed by another
-- are lost capacity until e + W.
--
-- Ambiguity: every take writes a fresh token w. A write whose answer was
-- lost and was sent again by the engine fails its own version condition;
-- the ALL_OLD item then carries our token, and that is a success. When the
-- outcome stays unknown (an error other than the condition), the lease is
-- not used (lost capacity, never an over-grant) and the previous lease's
-- give-back is forgotten (it may have been applied: never applied twice).
--
-- Buckets: the grid g = ceil((W + 2S + L) / (B - 2)), so the ends that can
-- still count (within (now - W - S, now + L + S]) fit in B - 1 buckets. A
-- write that would need more (processes with different configs on one
-- resource) is refused (false): never a merge, which would break the
-- give-back's "bucket E is ours".
--
-- Refusals: when the item leaves less than 1 grant free, the process
-- refuses locally, with no request, until the first bucket leaves the
-- window (E_min + W + S, on the monotonic clock); get_wait_time answers
-- that. A refused process gives back its previous lease only with its next
-- write.
--
-- Costs (requests): acquire 0 while a lease holds grants or the window is
-- known full; else 1 PutItem (+1 per race lost to another process, at most
-- 6). can_proceed, get_wait_time: 0 with a live lease or a known-full
-- window, else 1 GetItem. get_status 1 GetItem. reset 1 DeleteItem.
-- Cooldowns, set/get_resource_config, clear and close are the Node
-- layout's (ddbkit.ratelimit), clear also deleting these items.
--
-- Per process: the state (lease, item last seen) is per store object and
-- resource; make one store per process (or OpenResty worker). At most
-- MAX_RESOURCES are remembered; past that all are dropped (their leases
-- are lost capacity). The OpenResty lua_shared_dict sharing of one lease by
-- all workers is not built: each worker holds its own leases (exactness
-- holds; writes are per worker). Coroutines sharing a store: spending is
-- never interrupted (no yield), a give-back is claimed by one write only.
--
-- reset() deletes the item; leases other processes hold stay spendable
-- until they end (at most L), as in-flight Node grants do.
local ddbkit_core = require "ddbkit.core"
local store = require "ddbkit.store"
local client_mod = require "ddbkit.client"
local ratelimit = require "ddbkit.ratelimit"

local type, pairs, error, setmetatable, tostring, tonumber =
      type, pairs, error, setmetatable, tostring, tonumber
local floor, ceil, max, min, format, concat = math.floor, math.ceil, math.max, math.min,
      string.format, table.concat
local uuid = ddbkit_core.uuid

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.ratelimit"
local KIND = "ratelimit_native"
local B = 32                 -- buckets per item
local MAX_WRITES = 6         -- per take
local MAX_RESOURCES = 1024
_M.BUCKETS, _M.MAX_WRITES = B, MAX_WRITES

-- The shared parts of the Node layout, not copied.
for _, m in pairs({ "set_cooldown", "get_cooldown", "clear_cooldown", "set_resource_config",
                    "get_resource_config", "clear", "close" }) do
  _M[m] = ratelimit[m]
end

local function is_layout(v) if v ~= "native" then return '"native"' end end

--- native.new(opts) (through ddbkit.ratelimit.new{ layout = "native", ... }):
--- the Node layout's options plus max_clock_skew_ms (default 0) and
--- lease_ms (default: see the header).
function _M.new(opts)
  opts = store.options(NAME .. ".new", opts, {
    client = store.is_client, table_name = store.is_string, policy = store.is_any,
    default_config = ratelimit.config_error, resource_configs = ratelimit.check_resource_configs,
    layout = is_layout, max_clock_skew_ms = store.is_non_negative, lease_ms = store.is_positive,
  })
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 3) end
  local self = ratelimit.init(setmetatable({}, mt), NAME, opts, { limit = 60, window_ms = 60000 })
  self.store_name = "rate_limit"
  self.layout = "native"
  self.skew = opts.max_clock_skew_ms or 0
  self.lease_ms = opts.lease_ms
  self.clear_kinds = { "ratelimit", "ratelimit_slot", "cooldown", KIND }
  self.states, self.nstates = {}, 0
  return self
end

-- Local state --------------------------------------------------------------

local function forget(self) self.states, self.nstates = {}, 0 end
function _M:on_clear() forget(self) end
function _M:on_config(resource)
  if self.states[resource] then
    self.states[resource] = nil
    self.nstates = self.nstates - 1
  end
end

-- What a config implies: window W, lease L, grid g.
local function params(self, cfg)
  local w = cfg.window_ms
  local l = self.lease_ms or max(min(w / 10, 1000), min(w / 2, 20))
  local g = ceil((w + 2 * self.skew + l) / (B - 2))
  return w, l, max(1, g)
end

local function state_of(self, resource)
  local st = self.states[resource]
  if st then return st end
  if self.nstates >= MAX_RESOURCES then forget(self) end
  st = { left = 0, calls = 0 }
  self.states[resource] = st
  self.nstates = self.nstates + 1
  return st
end

-- Item codec ---------------------------------------------------------------

-- "E:s,E:s" -> sorted arrays ends, sums (nil when malformed: then the item
-- is treated as unreadable, an error, never as empty).
local function decode(b)
  local ends, sums = {}, {}
  if b == nil or b == "" then return ends, sums end
  if type(b) ~= "string" then return nil end
  local prev = -1
  for e, s in b:gmatch("(%d+):(%d+)") do
    e, s = tonumber(e), tonumber(s)
    if e <= prev then return nil end
    ends[#ends + 1], sums[#sums + 1], prev = e, s, e
  end
  if #ends > B then return nil end
  return ends, sums
end

local function encode(ends, sums)
  local parts = {}
  for i = 1, #ends do parts[i] = format("%.0f:%.0f", ends[i], sums[i]) end
  return concat(parts, ",")
end

-- The item's state { v, w, ends, sums } or nil, err.
local function state_of_item(item)
  if item == nil then return { v = 0, ends = {}, sums = {} } end
  local ends, sums = decode(item.b)
  local v = item.v
  if not ends or type(v) ~= "number" then
    return nil, store.err("ValidationError", "the native rate limit item " .. tostring(item.pk)
                          .. " is not ddbkit's (attributes v, b)")
  end
  return { v = v, w = item.w, ends = ends, sums = sums }
end

-- Copy of the buckets still counting at `now`.
local function live(s, now, w, skew)
  local ends, sums, used = {}, {}, 0
  for i = 1, #s.ends do
    if s.ends[i] > now - w - skew then
      ends[#ends + 1], sums[#sums + 1] = s.ends[i], s.sums[i]
      used = used + s.sums[i]
    end
  end
  return ends, sums, used
end

local function add(ends, sums, e, n)
  for i = 1, #ends do
    if ends[i] == e then sums[i] = sums[i] + n; return true end
    if ends[i] > e then
      if #ends >= B then return false end
      table.insert(ends, i, e); table.insert(sums, i, n)
      return true
    end
  end
  if #ends >= B then return false end
  ends[#ends + 1], sums[#sums + 1] = e, n
  return true
end

local function remove(ends, sums, e, n)
  for i = 1, #ends do
    if ends[i] == e then
      if sums[i] < n then return false end
      sums[i] = sums[i] - n
      if sums[i] == 0 then table.remove(ends, i); table.remove(sums, i) end
      return true
    end
  end
  return false
end

-- Keys ---------------------------------------------------------------------

local function prepare(self, resource)
  ratelimit.check_open(self)
  local bad = store.check_part("resource", resource)
  if bad then return nil, bad end
  local tbl, terr = ratelimit.table_of(self)
  if not tbl then return nil, terr end
  local pk, kerr = store.key(self.policy, KIND, resource)
  if not pk then return nil, kerr end
  return tbl, pk
end

local function read(self, tbl, pk)
  local res, err = self.client:get_item{ TableName = tbl, Key = { pk = pk, sk = pk },
                                         ConsistentRead = true }
  if not res then return nil, err end
  return state_of_item(res.Item)
end

-- The window known full until the first bucket leaves it.
local function learn_full(self, st, ends, now, w)
  local due = (ends[1] or now) + w + self.skew - now + 1
  st.full_until = self.runtime.mono_ms() + max(1, due)
end

-- Taking a lease -----------------------------------------------------------

-- One conditional write per attempt; true (a lease installed, one grant
-- spent), false, or nil, err.
local function take(self, st, tbl, pk, cfg)
  local rt = self.runtime
  local w, l, g = params(self, cfg)
  local limit, skew = cfg.limit, self.skew
  -- demand: calls since the previous take over the time since
  local mono0 = rt.mono_ms()
  local rate = st.take_mono and st.calls / max(1, mono0 - st.take_mono) or 0
  local want = max(1, ceil(rate * l))
  -- the previous lease's give-back, claimed by this take only
  local back = st.back
  st.back = nil
  local s = st.item or state_of_item(nil)
  local token = uuid()
  for _ = 1, MAX_WRITES do
    local now, mono = floor(rt.now_ms()), rt.mono_ms()
    local ends, sums, used = live(s, now, w, skew)
    if back and back.e > now - w and remove(ends, sums, back.e, back.n) then
      used = used - back.n
      local e2 = min(back.e, ceil(back.last / g) * g)
      if back.spent > 0 and e2 > now - w - skew then
        if add(ends, sums, e2, back.spent) then
          used = used + back.spent
        else
          -- no room for the shortened record: the lease stays as it was
          -- (room: bucket e was just emptied or still exists)
          add(ends, sums, back.e, back.n)
          used = used + back.n
        end
      end
    end
    local free = limit - used
    if free < 1 then
      st.item = s
      st.back = back        -- not written: the next take may still give it back
      learn_full(self, st, ends, now, w)
      return false
    end
    local n = min(want, free)
    local e = ceil((now + l) / g) * g
    if not add(ends, sums, e, n) then
      st.item, st.back = s, back
      return false
    end
    local v = s.v + 1
    local params_ = {
      TableName = tbl,
      Item = { pk = pk, sk = pk, v = v, w = token, b = encode(ends, sums),
               ttl = ceil((ends[#ends] + w + skew) / 1000) },
      ReturnValuesOnConditionCheckFailure = "ALL_OLD",
    }
    if s.v == 0 and s.w == nil then
      params_.ConditionExpression = "attribute_not_exists(pk)"
    else
      params_.ConditionExpression = "v = :v"
      params_.ExpressionAttributeValues = { [":v"] = s.v }
    end
    local before = self.client:stats().requests
    local ok, err = self.client:put_item(params_)
    local mine = ok ~= nil
    if not ok then
      if err.code ~= "ConditionalCheckFailedException" then
        st.item = nil     -- the outcome is unknown: the give-back is forgotten
        return nil, err
      end
      local ns, serr = state_of_item(client_mod.item_of(err.item))
      if not ns then return nil, serr end
      if ns.w == token then
        mine = true       -- our own write, applied by an attempt whose answer was lost
      elseif self.client:stats().requests - before > 1 then
        -- the engine sent it more than once: an earlier attempt may have
        -- been applied (and written over since); never give back twice
        back = nil
      end
      s = ns
    end
    if mine then
      st.item = { v = v, w = token, ends = ends, sums = sums }
      st.left = n - 1
      st.n, st.spent = n, 1
      st.e = e
      st.take_now, st.take_mono = now, mono
      st.until_mono = mono + l
      st.last_mono = rt.mono_ms()
      st.calls = 0
      st.full_until = nil
      return true
    end
  end
  st.item = s
  return false       -- lost every race: as good as full (the give-back is dropped)
end

-- When the current lease can no longer be spent, note what to give back.
local function retire(st)
  if st.n and st.n > 0 then
    st.back = { e = st.e, n = st.n, spent = st.spent,
                last = st.take_now + (st.last_mono - st.take_mono) }
  end
  st.n, st.left = nil, 0
end

-- Methods ------------------------------------------------------------------

--- store:acquire(resource) -> true | false | nil, err
function _M:acquire(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  local st = state_of(self, resource)
  st.calls = st.calls + 1
  if cfg.limit <= 0 then return false end
  local mono = self.runtime.mono_ms()
  if st.left > 0 then
    if mono < st.until_mono then
      st.left = st.left - 1
      st.spent = st.spent + 1
      st.last_mono = mono
      return true
    end
  end
  if st.n then retire(st) end
  if st.full_until and mono < st.full_until then return false end
  return take(self, st, tbl, pk, cfg)
end

-- What the item says now: used, first end, or nil, err (1 GetItem).
local function usage(self, tbl, pk, cfg)
  local s, err = read(self, tbl, pk)
  if not s then return nil, err end
  local now = floor(self.runtime.now_ms())
  local ends, _, used = live(s, now, cfg.window_ms, self.skew)
  return used, ends[1], now
end

local function has_lease(self, st)
  return st and st.left > 0 and self.runtime.mono_ms() < st.until_mono
end
local function known_full(self, st)
  return st and st.full_until and self.runtime.mono_ms() < st.full_until
end

--- store:can_proceed(resource) -> boolean | nil, err
function _M:can_proceed(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  if cfg.limit <= 0 then return false end
  local st = self.states[resource]
  if has_lease(self, st) then return true end
  if known_full(self, st) then return false end
  local used, err = usage(self, tbl, pk, cfg)
  if not used then return nil, err end
  return used < cfg.limit
end

--- store:get_status(resource) -> { remaining, reset_time, limit } | nil, err
-- remaining: grants not leased to any process (leased ones, spent or not,
-- count as used); plus this process's unspent lease.
function _M:get_status(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  local used, _, now = usage(self, tbl, pk, cfg)
  if not used then return nil, _ end
  local st = self.states[resource]
  local mine = has_lease(self, st) and st.left or 0
  return { remaining = max(0, min(cfg.limit, cfg.limit - used + mine)),
           reset_time = now + cfg.window_ms, limit = cfg.limit }
end

--- store:get_wait_time(resource) -> ms | nil, err
function _M:get_wait_time(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  if cfg.limit <= 0 then return cfg.window_ms end
  local st = self.states[resource]
  if has_lease(self, st) then return 0 end
  if known_full(self, st) then return max(0, ceil(st.full_until - self.runtime.mono_ms())) end
  local used, first, now = usage(self, tbl, pk, cfg)
  if not used then return nil, first end
  if used < cfg.limit or not first then return 0 end
  return max(0, first + cfg.window_ms + self.skew - now + 1)
end

--- store:reset(resource) -> true | nil, err: deletes the item (1 request).
function _M:reset(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  self:on_config(resource)
  local ok, err = self.client:delete_item{ TableName = tbl, Key = { pk = pk, sk = pk } }
  if not ok then return nil, err end
  return true
end

_M.decode, _M.encode = decode, encode

return _M
