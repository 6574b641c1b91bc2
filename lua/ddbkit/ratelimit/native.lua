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
--   w   the token of the take that made this version (see "Ambiguity")
--   b   the leases that still count, as at most B (32) buckets
--       "E:s,E:s,...": s grants of leases whose recorded end is E (epoch ms,
--       a multiple of the grid g), E >= the lease's real end
--   ttl seconds: ceil(last bucket's end + window_ms + skew) + 60, so TTL
--       never removes the item while a bucket still counts
-- Size: at most 32 x ~22 bytes, under 1 KB (1 WCU per write) whatever the
-- limit (a sum has at most 10 digits) or the number of processes
-- (measured by the spec at a limit of 1,000,000: under 400 bytes).
--
-- A lease: n grants this process may spend during [t, t + L], t the wall
-- clock read just before the write that takes it (and after the item state
-- the write is conditioned on was known); spending stops at the monotonic
-- clock's reading at t, + L. E = ceil((t + 1 + L) / g) * g (t is floored
-- to ms). L = lease_ms, default max(min(window_ms / 4, 1000),
-- min(window_ms / 2, 20)): at 200 decisions/s and a window of 1 s, 50
-- decisions per lease (measured by the bench: 97.9% of decisions with no
-- request; with window_ms / 10, 95.1%). n = this process's demand on the
-- resource (calls since its previous take over the time since) x L, at
-- least 1, at most what is free; demand x L / 10 instead when it found the
-- window full in the last window_ms: capacity then comes back a bucket at
-- a time while others wait, and a lease spread over L holds its first
-- grants' capacity until its last spend + W (measured with 8 processes
-- over the limit, spec runs on a shared 2-core machine: sizing for 2 x L
-- outside the full regime gave 88-93% utilisation, for L 92-99%).
--
-- Rule at take time t (one conditional PutItem of the whole item, version
-- check; on a lost race the item comes back with
-- ReturnValuesOnConditionCheckFailure = ALL_OLD, so the retry needs no
-- read): drop every bucket with E <= t - W - S (W = window_ms,
-- S = max_clock_skew_ms); then (sum of the kept buckets) + n <= limit.
--
-- Why no window of W holds more than `limit` grants (all processes):
-- take any interval I = (a, a + W] and the leases with a grant spent in
-- I; let X be the last of them taken (writes are serialized by the
-- version). Any other such lease Y was in the item X's write was
-- conditioned on, with a recorded end E_Y >= every spend of Y (rounded
-- up; the give-back below keeps that) and a sum >= its spends. In real
-- time: E_Y >= tau_Y > a >= tau_X - W >= t_X - W, as X spends only after
-- t_X. Clocks: E_Y was read on Y's clock, t_X on X's; if they differ by at
-- most S, E_Y > t_X - W - S as stored, so X's rule counted Y (and no
-- process dropped Y's bucket before X: a bucket is dropped only when
-- E <= now - W - S, and X's now is later). So the grants in I are at most
-- X's rule's sum + n_X <= limit.
-- Assumption: the processes' wall clocks are within S of each other
-- (default S = 0: one machine, or clocks that agree, as the Node layout
-- assumes); no wall-clock step during a lease. If they differ by D > S,
-- the bound degrades to: no interval of W - (D - S) holds more than
-- `limit` grants.
--
-- Giving back: when a lease can no longer be spent (exhausted or past its
-- end), its next write rewrites its record: its n grants leave bucket E,
-- its s spent grants go to the bucket of its last spend (rounded up; none
-- when that bucket no longer counts). The record still covers every spend
-- (count and time), so the argument holds. Done only when E > now - W
-- (then no process can have dropped bucket E, under the clock assumption)
-- and bucket E holds at least n (buckets are never merged, so it is ours).
-- The next write is the next lease's, free; when the window is full there
-- is no next lease, and the give-back is written alone (+1 request per
-- lease, only while full): without it, a lease spent at once would count
-- until t + L + W, and utilisation would lose about L / W.
-- Unspent grants of a process that stops calling are lost capacity until
-- E + W.
--
-- Ambiguity: a write whose answer was lost may have been applied. Every
-- take writes a fresh token w: when the engine's retry fails its own
-- version condition, the ALL_OLD item carries our token if our write is
-- the latest: a success. When it does not and the engine sent the request
-- more than once (client:stats() requests; conservative when tasks share
-- the client), the give-back is dropped (never applied twice; the lease,
-- if applied, only costs capacity). Any other error: the outcome is
-- unknown; the lease is not used and the give-back is dropped.
--
-- Buckets: the grid g = ceil((W + 2S + L) / (B - 2)), so the ends that
-- can still count (within (now - W - S, now + 1 + L + g + S]) fall on at
-- most B grid points. A write that would need more (processes with
-- different configs on one resource) is refused (false): never a merge,
-- which would break the give-back's "bucket E is ours".
--
-- Refusals: when the item leaves less than 1 grant free, the process
-- refuses locally, with no request, until the first bucket leaves the
-- window (E_min + W + S; monotonic clock); get_wait_time answers that.
--
-- Costs (requests): acquire 0 while a lease holds grants or the window is
-- known full; else 1 PutItem (+1 per race lost to another process, with a
-- jittered backoff after each loss, at most 10 writes, then false;
-- +1 for a give-back written alone).
--
-- Contention: every write is conditioned on the version the writer saw,
-- so a process whose take is a round trip old loses to any write in
-- between; with many processes taking small leases at once (a start, or a
-- full window freeing a bucket at a time) a take can lose all its writes
-- and refuse with capacity free. The backoff spreads the writers; the
-- lasting fix is writes that commute (per-bucket counters added with ADD
-- under a condition on their total), not built. can_proceed, get_wait_time: 0
-- with a live lease or a known-full window, else 1 GetItem. get_status 1
-- GetItem. reset 1 DeleteItem. Cooldowns, set/get_resource_config, clear
-- and close are the Node layout's (ddbkit.ratelimit's code), clear also
-- deleting these items. No record() (the Node layout's log items).
--
-- Per process: the state (lease, item last seen) is per store object and
-- resource; make one store per process (or OpenResty worker). At most
-- MAX_RESOURCES are remembered; past that all are dropped (their leases
-- are lost capacity). Tasks sharing a store (coroutine runtime): spending
-- never yields; a give-back is claimed by one write only; a lease
-- installed over another leaves the first one's grants unspent (capacity,
-- not exactness).
-- Per machine: with shared_dict (a lua_shared_dict's name, or a dict
-- object), the lease state lives in that dict instead, and all workers of
-- an nginx spend one lease and take the next one at a time
-- (lua/ddbkit/ratelimit/shared.lua: how, and why the argument above still
-- holds).
--
-- Config: every process on a resource must use the same { limit,
-- window_ms } (as in the Node layout); set_resource_config drops this
-- process's lease on that resource. reset() deletes the item; leases
-- other processes hold stay spendable until they end (at most L), as
-- in-flight Node grants do.
local ddbkit_core = require "ddbkit.core"
local store = require "ddbkit.store"
local client_mod = require "ddbkit.client"
local ratelimit = require "ddbkit.ratelimit"
local shared = require "ddbkit.ratelimit.shared"

local type, pairs, ipairs, error, setmetatable, tostring, tonumber, pcall, assert =
      type, pairs, ipairs, error, setmetatable, tostring, tonumber, pcall, assert
local floor, ceil, max, min, random, format, concat = math.floor, math.ceil, math.max,
      math.min, math.random, string.format, table.concat
local uuid = ddbkit_core.uuid

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.ratelimit"
local KIND = "ratelimit_native"
local B = 32                 -- buckets per item
local MAX_WRITES = 10        -- per take
-- A lost race backs off before the next write: full jitter over
-- lat * 2^(k-1) after the k-th loss in a row, lat the lost write's own
-- round trip (at least 1 ms), capped at window_ms / 8: the processes
-- taking leases at the same moment spread out over a few round trips
-- instead of losing to each other again, whatever the store's latency.
local MAX_RESOURCES = 1024
-- DynamoDB's TTL runs on AWS's clock, not the processes': a minute more
-- than the last bucket needs, so a clock ahead of ours never drops it early.
local TTL_SLACK_S = 60
_M.BUCKETS, _M.MAX_WRITES = B, MAX_WRITES

-- The shared parts of the Node layout, not copied.
for _, m in pairs({ "set_cooldown", "get_cooldown", "clear_cooldown", "set_resource_config",
                    "get_resource_config", "clear", "close" }) do
  _M[m] = ratelimit[m]
end

local function is_layout(v) if v ~= "native" then return '"native"' end end

local DICT_METHODS = { "get", "incr", "add", "set", "delete" }
local function is_dict(v)
  if type(v) == "string" and v ~= "" then return end
  if type(v) == "table" or type(v) == "userdata" then
    local ok = pcall(function()
      for _, m in ipairs(DICT_METHODS) do assert(type(v[m]) == "function") end
    end)
    if ok then return end
  end
  return "the name of a lua_shared_dict, or a dict (an ngx.shared.DICT)"
end

-- opts.shared_dict -> the machine's lease store (ddbkit.ratelimit.shared), or nil.
local function shared_of(name, v)
  if v == nil then return nil end
  local dict = v
  if type(v) == "string" then
    local sh = type(ngx) == "table" and ngx.shared   -- luacheck: ignore (ngx: OpenResty's global)
    dict = sh and sh[v]
    if not dict then
      error(name .. ".new: opts.shared_dict: no lua_shared_dict named " .. v
            .. " (nginx.conf needs `lua_shared_dict " .. v .. " 1m;`)", 4)
    end
  end
  return shared.new(dict, function(...) return _M.internal.take(...) end)
end

-- The dict keys of a resource's lease (tag: see take).
local function shared_key(tbl, pk, tag)
  return tbl .. "\0" .. pk .. "\0" .. (tag and tag.off or 0)
end

--- native.new(opts) (through ddbkit.ratelimit.new{ layout = "native", ... }):
--- the Node layout's options plus max_clock_skew_ms (default 0), lease_ms
--- (default: see the header) and shared_dict (OpenResty: one lease for
--- all workers; see the header).
function _M.new(opts)
  opts = store.options(NAME .. ".new", opts, {
    client = store.is_client, table_name = store.is_string, policy = store.is_any,
    default_config = ratelimit.config_error, resource_configs = ratelimit.check_resource_configs,
    layout = is_layout, max_clock_skew_ms = store.is_non_negative, lease_ms = store.is_positive,
    shared_dict = is_dict,
  })
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 3) end
  local self = ratelimit.init(setmetatable({}, mt), NAME, opts, { limit = 60, window_ms = 60000 })
  self.store_name = "rate_limit"
  self.layout = "native"
  self.skew = opts.max_clock_skew_ms or 0
  self.lease_ms = opts.lease_ms
  self.clear_kinds = { "ratelimit", "ratelimit_slot", "cooldown", KIND }
  self.states, self.nstates = {}, 0
  self.kind = KIND
  self.shared = shared_of(NAME, opts.shared_dict)
  return self
end

-- Local state --------------------------------------------------------------

local function forget(self) self.states, self.nstates = {}, 0 end
function _M.on_clear(self) forget(self) end
function _M.on_config(self, resource)
  if self.states[resource] then
    self.states[resource] = nil
    self.nstates = self.nstates - 1
  end
  if self.shared then
    local tbl, pk = ratelimit.table_of(self), store.key(self.policy, self.kind, resource)
    if tbl and pk then self.shared:forget(shared_key(tbl, pk)) end
  end
end

-- What a config implies: window W, lease L, grid g.
local function params(self, cfg)
  local w = cfg.window_ms
  local l = self.lease_ms or max(min(w / 4, 1000), min(w / 2, 20))
  -- grid points per tag: B - 2 for one; ddbkit.adaptive's native layout
  -- (two tags, see there) sets self.grid_points = 14
  local g = ceil((w + 2 * self.skew + l) / (self.grid_points or (B - 2)))
  return w, l, max(self.min_grid or 1, g)   -- adaptive: 2, so that the tag (end % g) exists
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

local function encode(ends, sums)
  local parts = {}
  for i = 1, #ends do parts[i] = format("%.0f:%.0f", ends[i], sums[i]) end
  return concat(parts, ",")
end

-- "E:s,E:s" -> arrays ends (strictly increasing), sums; nil when b is not
-- exactly what encode writes (at most B buckets, integers below 2^53):
-- then the item is unreadable, an error, never read as fewer leases.
local MAX_INT = 2 ^ 53
local function decode(b)
  local ends, sums = {}, {}
  if b == nil or b == "" then return ends, sums end
  if type(b) ~= "string" or #b > B * 40 then return nil end
  local prev = -1
  for e, s in b:gmatch("(%d+):(%d+)") do
    e, s = tonumber(e), tonumber(s)
    if e <= prev or e >= MAX_INT or s >= MAX_INT or #ends >= B then return nil end
    ends[#ends + 1], sums[#sums + 1], prev = e, s, e
  end
  if encode(ends, sums) ~= b then return nil end   -- nothing else in it, no leading zeros
  return ends, sums
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
  local pk, kerr = store.key(self.policy, self.kind, resource)
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
local function learn_full(self, st, first, now, w)
  local due = (first or now) + w + self.skew - now + 1
  local mono = self.runtime.mono_ms()
  st.full_until, st.full_seen = mono + max(1, due), mono
end

-- Taking a lease -----------------------------------------------------------

-- One conditional write per attempt; true (a lease installed, one grant
-- spent), false, or nil, err. tag (ddbkit.adaptive's native layout only):
-- { off = 0 | 1, share = n }: this lease's buckets end at grid + off, and
-- the live buckets with that offset may hold at most share (besides the
-- total's limit); nil: offset 0, no share.
local function take(self, st, tbl, pk, cfg, tag)
  local rt = self.runtime
  local w, l, g = params(self, cfg)
  local limit, skew = cfg.limit, self.skew
  local off = tag and tag.off or 0
  -- demand: calls since the previous take over the time since
  local mono0 = rt.mono_ms()
  local rate = st.take_mono and st.calls / max(1, mono0 - st.take_mono) or 0
  -- A window found full in the last W: capacity comes back a bucket at a
  -- time and others wait for it, so leases are sized for L / 10: a grant
  -- counts until its lease's last spend + W, and a lease spread over L
  -- holds its first grants' capacity longer (see the header: measured).
  local full_lately = st.full_seen and mono0 - st.full_seen < w
  local want = max(1, ceil(rate * l * (full_lately and 0.1 or 1)))
  -- the previous lease's give-back, claimed by this take only
  local back = st.back
  st.back = nil
  local s = st.item or state_of_item(nil)
  for attempt = 1, MAX_WRITES do
    local token = uuid()   -- this attempt's: found in ALL_OLD, the write was ours
    -- mono first: the lease's spending ends at mono + l, whose wall time
    -- is then at most the real now + l (< now + 1 + l, now being floored)
    local mono = rt.mono_ms()
    local now = floor(rt.now_ms())
    local ends, sums, used = live(s, now, w, skew)
    local gave = false
    if back and back.e > now - w and remove(ends, sums, back.e, back.n) then
      used = used - back.n
      gave = true
      local e2 = min(back.e, ceil((back.last + 1) / g) * g + off)   -- +1: now is floored
      if back.spent > 0 and e2 > now - w - skew then
        if add(ends, sums, e2, back.spent) then
          used = used + back.spent
        else
          -- no room for the shortened record: the lease stays as it was
          -- (room: bucket e was just emptied or still exists)
          add(ends, sums, back.e, back.n)
          used = used + back.n
          gave = false
        end
      end
    end
    local free, first = limit - used, ends[1]
    if tag then
      -- the tag's own sum against its share; its first bucket is when a
      -- refusal for the share can end
      local tused, tfirst = 0, nil
      for i = 1, #ends do
        if ends[i] % g == off then tused = tused + sums[i]; tfirst = tfirst or ends[i] end
      end
      if free >= 1 and tag.share - tused < 1 then first = tfirst end
      free = min(free, tag.share - tused)
    end
    local n, e = 0, nil
    if free < 1 then
      if not gave then
        st.item = s
        st.back = back      -- not written: the next take may still give it back
        learn_full(self, st, first, now, w)
        return false
      end
      -- full, but our previous lease's record shrinks: write that alone
      -- (+1 request), so the capacity it held comes back at its real end
    else
      n = min(want, free)
      e = ceil((now + 1 + l) / g) * g + off   -- +1: now is floored, the real end is below now + 1 + l
      if not add(ends, sums, e, n) then
        st.item, st.back = s, back
        return false
      end
    end
    local v = s.v + 1
    local params_ = {
      TableName = tbl,
      Item = { pk = pk, sk = pk, v = v, w = token, b = encode(ends, sums),
               ttl = ceil(((ends[#ends] or now) + w + skew) / 1000) + TTL_SLACK_S },
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
      if not mine and attempt < MAX_WRITES then
        local lat = max(1, rt.mono_ms() - mono)
        rt.sleep(random() * min(w / 8, lat * 2 ^ (attempt - 1)))
      end
    end
    if mine and n == 0 then
      st.item = { v = v, w = token, ends = ends, sums = sums }
      learn_full(self, st, first, now, w)
      return false
    end
    if mine then
      st.item = { v = v, w = token, ends = ends, sums = sums }
      st.e = e
      st.take_now, st.take_mono = now, mono
      st.until_mono = mono + l
      st.calls = 0
      st.full_until = nil
      local at = rt.mono_ms()
      if at >= st.until_mono then
        -- the write took the whole lease: nothing may be spent; all given back
        st.n, st.spent, st.left, st.last_mono = n, 0, 0, mono
        return false
      end
      st.n, st.spent, st.left, st.last_mono = n, 1, n - 1, at
      return true
    end
  end
  -- Lost every race with capacity free: refused (safe, never over the
  -- limit); nothing is learnt (the next call takes again) and the
  -- give-back is dropped. Measured
  -- with 8 processes starting at once on one item (ratelimit_native_spec,
  -- a loaded 2-core machine): about 40 such refusals in 5 s, against about
  -- 70 with 6 writes and no backoff. See the note on contention above.
  st.item = s
  return false
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

local CODEC = { encode = encode, decode = decode }

-- A decision on state st: from its lease, or a take (tag: see take).
-- With a shared dict, from the machine's lease instead.
local function spend(self, st, tbl, pk, cfg, tag)
  st.calls = st.calls + 1
  if cfg.limit <= 0 then return false end
  if self.shared then
    return self.shared:spend(self, shared_key(tbl, pk, tag), tbl, pk, cfg, tag, CODEC)
  end
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
  return take(self, st, tbl, pk, cfg, tag)
end

--- store:acquire(resource) -> true | false | nil, err
function _M:acquire(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  return spend(self, state_of(self, resource), tbl, pk, cfg)
end

-- What the item says now: used, first end, or nil, err (1 GetItem).
local function usage(self, tbl, pk, cfg)
  local s, err = read(self, tbl, pk)
  if not s then return nil, err end
  local now = floor(self.runtime.now_ms())
  local ends, _, used = live(s, now, cfg.window_ms, self.skew)
  return used, ends[1], now
end

-- Grants left in the live lease (this process's, or the machine's with a
-- shared dict; P: shared_key), 0 when none.
local function left(self, st, P)
  local mono = self.runtime.mono_ms()
  if self.shared then return self.shared:left(P, mono) end
  if st and st.left > 0 and mono < st.until_mono then return st.left end
  return 0
end
-- The monotonic time the window is known full until, or nil.
local function full_until(self, st, P)
  local f
  if self.shared then f = self.shared:full_until(P) else f = st and st.full_until end
  if f and self.runtime.mono_ms() < f then return f end
end

--- store:can_proceed(resource) -> boolean | nil, err
function _M:can_proceed(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  if cfg.limit <= 0 then return false end
  local st, P = self.states[resource], shared_key(tbl, pk)
  if left(self, st, P) > 0 then return true end
  if full_until(self, st, P) then return false end
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
  local mine = left(self, self.states[resource], shared_key(tbl, pk))
  return { remaining = max(0, min(cfg.limit, cfg.limit - used + mine)),
           reset_time = now + cfg.window_ms, limit = cfg.limit }
end

--- store:get_wait_time(resource) -> ms | nil, err
function _M:get_wait_time(resource)
  local tbl, pk = prepare(self, resource)
  if not tbl then return nil, pk end
  local cfg = ratelimit.config_for(self, resource)
  if cfg.limit <= 0 then return cfg.window_ms end
  local st, P = self.states[resource], shared_key(tbl, pk)
  if left(self, st, P) > 0 then return 0 end
  local full = full_until(self, st, P)
  if full then return max(0, ceil(full - self.runtime.mono_ms())) end
  local used, first, now = usage(self, tbl, pk, cfg)
  if not used then return nil, first end
  if used < cfg.limit or not first then return 0 end
  return max(0, first + cfg.window_ms + self.skew - now + 1)
end

--- store:record(): not supported (the native layout has no log items;
--- acquire is the grant). Raises, naming the layout, rather than failing
--- as a call of nil.
function _M:record()
  error(NAME .. ":record is not supported by the native layout (it has no log items; "
        .. "acquire records the grant)", 2)
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
-- For ddbkit.adaptive's native layout (lua/ddbkit/adaptive/native.lua),
-- which runs the same leases with a tag per priority.
_M.internal = { prepare = prepare, read = read, state_of = state_of, spend = spend,
                take = take, params = params, live = live, left = left,
                full_until = full_until, shared_key = shared_key, shared_of = shared_of,
                is_layout = is_layout, is_dict = is_dict, TTL_SLACK_S = TTL_SLACK_S }

return _M
