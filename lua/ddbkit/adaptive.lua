-- ddbkit.adaptive: the priority-aware rate limit (compat.md A.4). A
-- resource's limit is split between "user" and "background" requests by a
-- replaceable strategy (scripts/strategies/adaptive.lua by default) fed
-- with recent user activity; each priority acquires against its own share
-- with the slot mechanism of ddbkit.ratelimit.
--
--   local arl = ddbkit.adaptive.new{ client = client,
--     default_config = { limit = 200, window_ms = 3600000 },
--     adaptive_config = { high_activity_threshold = 10 } }
--   local ok, err = arl:acquire("api", "user")        -- or "background"
--   local st = arl:get_status("api")                  -- st.remaining (Node's number),
--                                                     -- st.available, st.adaptive.user_reserved ...
--
-- Items: the log item of ddbkit.ratelimit plus priority, gsi1pk =
-- "RATELIMIT#<resource>#<priority>", gsi1sk = sk; slots per priority,
-- pk = "RATELIMIT_SLOT#<resource>#<priority>", n in [0, share); and
-- (ddbkit only, see "The total") slots of "RATELIMIT_SLOT#<resource>".
--
-- Capacity: computed by strategy.compute(resource, limit, metrics, config)
-- at most once per recalculation_interval_ms (monotonic clock) per resource,
-- from the user activity this process knows: loaded once per process and
-- resource from the GSI (2 Queries: the newest max(100,
-- high_activity_threshold * 20) user timestamps, and whether any background
-- request exists), then tracked in memory as this process acquires and
-- records (as the Node package does: other processes' later activity is not
-- seen until a restart). A strategy that raises or returns a bad shape
-- gives nil, err with err.code "PolicyError" naming the script; nothing is
-- written then.
--
-- A priority proceeds while its count in the window is below its share
-- and, for background, when not paused. The share of a priority can shrink
-- between recalculations; acquire then counts every busy slot of the
-- priority (also those at n >= the new share) when it reads the partition
-- (shares up to ddbkit.ratelimit.READ_MAX), so the priority stays under
-- its new share apart from grants racing the very change.
--
-- The total across processes: each process splits by its own view of user
-- activity (one may split 9/1 while another splits 5/5), so the priority
-- partitions alone would let the total reach the largest user share
-- anywhere plus the largest background share anywhere (issue 12: 14 grants
-- in a window of limit 10). So every grant also takes a slot of the
-- resource's total partition, pk = "RATELIMIT_SLOT#<resource>" (the plain
-- rate limit's partition, n in [0, limit)), in the same transaction as
-- the priority slot and the log item. The total of ddbkit's grants in any
-- window is therefore at most `limit`, whatever each process's split; a
-- priority's share is approximate (each process enforces its own).
-- The total partition is probed, never read (ddbkit.ratelimit's large
-- limit path: a view of the slots known busy), so a grant still costs 2
-- requests. Same partition as ddbkit.ratelimit's on the same resource: a
-- plain and an adaptive store on one resource share one total, as they
-- share one log.
-- Mixed fleet (Node processes on the same resource; compat.md A.4).
-- Node's shares are not rounded (moderate: user = min(0.7L, floor(0.4L) *
-- m), e.g. 6.24 of 10, background 3.76) and its acquire names slots
-- `(start + offset) % share`, start in [0, ceil(s)), offset in [0, ceil(s)),
-- so for a share s it names the slot keys
--   S(s) = SLOT#0 .. SLOT#(ceil(s)-1), and for a fractional s also
--          SLOT#(k - s) for k = ceil(s) .. 2*ceil(s)-2 ("SLOT#0.7599999999999998"),
--   |S(s)| = s for an integer s, 2*ceil(s) - 1 for a fractional one
-- (13 for 6.24, 7 for 3.76). A Node-only fleet can fill all of them in a
-- window (adaptive_node_spec shows 13 user grants with a share of 6.24):
-- |S(s_user)| + |S(s_background)| is what Node alone allows per window
-- (only the user term while background is paused).
-- What ddbkit does with them:
-- * its own shares are integers: the store floors what a strategy returns,
--   and the default strategy floors Node's user share and gives
--   background the rest, so where Node splits 6.24 / 3.76 ddbkit splits
--   6 / 4 = floor / ceil, and it only ever names SLOT#0 .. SLOT#(u-1) with
--   u <= ceil(s): keys of Node's S(s) for the same split, never a fraction;
-- * it counts every slot item of the priority's partition it reads, Node's
--   fractional ones included, as busy until its timestamp leaves the
--   window (ddbkit.ratelimit's read_view), and refuses once its share's
--   worth are busy: ddbkit does not add to an over-admission Node has
--   already made (as far as its read saw: a share of at most READ_MAX
--   (100) is read, one page of 100 items; above that, or when expired
--   fractional items push a partition past one page, only the bound below
--   holds).
-- The bound (proved by adaptive_node_spec with Node's items written as
-- Node writes them, keys computed by node itself): every grant, Node's or
-- ddbkit's, holds one slot item of its priority's partition, and the
-- conditional Put lets a key hold at most one grant per window (up to
-- ddbkit.ratelimit's STAMP_SLACK_MS). With every process on the same
-- split, ddbkit's keys are among Node's, so the grants of a mixed fleet in
-- any window number at most |S(s_user)| + |S(s_background)|: never more
-- than Node alone allows. When processes split differently (each sees
-- its own activity), the keys in use are the union of each process's
-- set, so the bound is that union's size per priority; ddbkit's keys add
-- to Node's only where its integer share exceeds ceil(s) of every Node
-- share in the window, and ddbkit's own grants never exceed `limit`
-- (the total partition, which Node's adaptive store does not use).
-- Same answers as Node's store, field by field: get_status's remaining
-- (Node's rule, see get_status), limit, adaptive.background_paused;
-- get_wait_time for limit 0 (window_ms), with
-- capacity (0), for a paused background (recalculation_interval_ms), and
-- else until the priority's oldest grant leaves the window. Different on
-- purpose:
-- * adaptive.user_reserved / background_max are the integer shares ddbkit
--   enforces (6 / 4 where Node reports 6.24 / 3.76); their sum, and so
--   remaining, is the same; can_proceed, acquire and get_wait_time admit
--   a priority while its count is below the integer share (Node: below
--   6.24, i.e. up to 7);
-- * get_wait_time for a share of 0 (user after sustained inactivity) is
--   recalculation_interval_ms (only a recalculation can change it); Node
--   answers 0 when no user grant is in the window, and a caller that waits
--   0 is refused again at once;
-- * reset_time is epoch ms (Node: a Date of the same instant);
-- * get_status also returns available (ddbkit's own view, see get_status).
--
-- Default priority: "background", as in the Node store.
--
-- layout = "native" (ddbkit only): the same store on the native rate
-- limit's leases, decisions in memory; lua/ddbkit/adaptive/native.lua.
--
-- Costs (requests, after the once-per-process load): acquire 2 (1 when the
-- share is full or the total known full, 0 when background is paused or
-- the share is 0; a share above 100 is probed, not read: 1 per grant, 0
-- when known full; +1 per slot lost to others, at most 6; +1 when the
-- grant was slow and its slots are stamped again), can_proceed 1, record
-- 1, get_status 2 (COUNTs of every log item in the window: +1 per further
-- MB of them), get_wait_time 0 (limit 0, paused, share 0) or 1, reset
-- 4 Queries + the deletes. Cooldowns, configs, clear and close are ddbkit.ratelimit's.
local ddbkit_core = require "ddbkit.core"
local store = require "ddbkit.store"
local rl = require "ddbkit.ratelimit"

local type, pairs, ipairs, error, setmetatable, tostring, pcall =
      type, pairs, ipairs, error, setmetatable, tostring, pcall
local floor, max, huge = math.floor, math.max, math.huge
local uuid = ddbkit_core.uuid

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.adaptive"
local STORE_NAME = "adaptive_rate_limit"
-- As in the Node store: a call that names no priority is background work,
-- so code ported from Node keeps its meaning.
local DEFAULT_PRIORITY = "background"
local PRIORITIES = { user = true, background = true }

local ADAPTIVE_DEFAULTS = {
  monitoring_window_ms = 900000,
  high_activity_threshold = 10,
  moderate_activity_threshold = 3,
  recalculation_interval_ms = 30000,
  sustained_inactivity_threshold_ms = 1800000,
  background_pause_on_increasing_trend = true,
  max_user_scaling = 2.0,
  min_user_reserved = 5,
}

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end
local ADAPTIVE_CHECKS = {
  monitoring_window_ms = function(v) if not finite(v) or v <= 0 then return "a positive number" end end,
  high_activity_threshold = function(v) if not finite(v) or v <= 0 then return "a positive number" end end,
  moderate_activity_threshold = function(v) if not finite(v) or v < 0 then return "a non-negative number" end end,
  recalculation_interval_ms = function(v) if not finite(v) or v < 0 then return "a non-negative number" end end,
  sustained_inactivity_threshold_ms = function(v) if not finite(v) or v < 0 then return "a non-negative number" end end,
  background_pause_on_increasing_trend = function(v) if type(v) ~= "boolean" then return "a boolean" end end,
  max_user_scaling = function(v) if not finite(v) or v <= 0 then return "a positive number" end end,
  min_user_reserved = function(v)
    if not finite(v) or v < 0 or v ~= floor(v) then return "an integer >= 0" end
  end,
}

local function adaptive_config(given)
  local c = {}
  for k, v in pairs(ADAPTIVE_DEFAULTS) do c[k] = v end
  if given == nil then return c end
  if type(given) ~= "table" then error(NAME .. ".new: opts.adaptive_config must be a table", 3) end
  for k, v in pairs(given) do
    local check = ADAPTIVE_CHECKS[k]
    if not check then error(NAME .. ".new: unknown option opts.adaptive_config." .. tostring(k), 3) end
    local want = check(v)
    if want then error(NAME .. ".new: opts.adaptive_config." .. k .. " must be " .. want, 3) end
    c[k] = v
  end
  if c.moderate_activity_threshold >= c.high_activity_threshold then
    error(NAME .. ".new: opts.adaptive_config.moderate_activity_threshold must be below "
          .. "high_activity_threshold", 3)
  end
  return c
end

--- ddbkit.adaptive.new{ client, table_name?, policy?, default_config?
--- ({ limit = 200, window_ms = 3600000 }), resource_configs?,
--- adaptive_config?, strategy? (module name, file path or table) } -> store.
--- Raises on a bad option or a strategy that cannot be loaded.
function _M.new(opts)
  -- layout = "native": ddbkit.adaptive.native (leases; lua/ddbkit/adaptive/native.lua)
  if type(opts) == "table" and opts.layout ~= nil and opts.layout ~= "node" then
    if opts.layout ~= "native" then
      error(NAME .. '.new: opts.layout must be "node" or "native", got ' .. tostring(opts.layout), 2)
    end
    return require("ddbkit.adaptive.native").new(opts)
  end
  opts = store.options(NAME .. ".new", opts, {
    client = store.is_client, table_name = store.is_string, policy = store.is_any,
    default_config = rl.config_error, resource_configs = rl.check_resource_configs,
    adaptive_config = store.is_table, strategy = store.is_any,
    layout = function() end,   -- "node" (checked above)
  })
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 2) end
  local self = rl.init(setmetatable({}, mt), NAME, opts, { limit = 200, window_ms = 3600000 })
  self.store_name = STORE_NAME
  self.adaptive = adaptive_config(opts.adaptive_config)
  self.max_samples = max(100, floor(self.adaptive.high_activity_threshold * 20))
  local strategy, sname = store.load_script(opts.strategy, "strategies.adaptive", "adaptive strategy")
  if type(strategy.compute) ~= "function" then
    error(NAME .. ".new: adaptive strategy " .. sname .. " has no compute function", 2)
  end
  self.strategy, self.strategy_name = strategy, sname
  self.activity = {}   -- resource -> { user = { ts ascending }, last_user, any_user, any_background }
  self.capacity = {}   -- resource -> { result, at (mono ms) }
  return self
end

-- Shared with ddbkit.ratelimit: cooldowns, configs, clear, close.
for _, k in ipairs({ "set_cooldown", "get_cooldown", "clear_cooldown", "set_resource_config",
                     "get_resource_config", "clear", "close" }) do
  _M[k] = rl[k]
end

-- A new config for a resource takes effect at once.
function _M.on_config(self, resource) self.capacity[resource] = nil end
function _M.on_clear(self) self.activity, self.capacity = {}, {} end

local function check_priority(priority, fname)
  if priority == nil then return DEFAULT_PRIORITY end
  if not PRIORITIES[priority] then
    error("bad argument #2 to '" .. fname .. "' (\"user\" or \"background\" expected, got "
          .. tostring(priority) .. ")", 3)
  end
  return priority
end

-- Activity ------------------------------------------------------------------

local function newest(self, tbl, gsi1pk, limit)
  local res, err = self.client:query{
    TableName = tbl, IndexName = "gsi1",
    KeyConditionExpression = "gsi1pk = :pk",
    ExpressionAttributeValues = { [":pk"] = gsi1pk },
    ProjectionExpression = "#ts", ExpressionAttributeNames = { ["#ts"] = "timestamp" },
    ScanIndexForward = false, Limit = limit }
  if not res then return nil, err end
  return res.Items or {}
end

-- Loads a resource's activity once per process (2 Queries of the GSI).
local function activity_of(self, tbl, log_pk, resource)
  local a = self.activity[resource]
  if a then return a end
  local users, err = newest(self, tbl, log_pk .. "#user", self.max_samples)
  if not users then return nil, err end
  local bgs, berr = newest(self, tbl, log_pk .. "#background", 1)
  if not bgs then return nil, berr end
  a = { user = {}, any_user = #users > 0, any_background = #bgs > 0 }
  for i = #users, 1, -1 do   -- newest first -> ascending
    local ts = users[i].timestamp
    if type(ts) == "number" then
      a.user[#a.user + 1] = ts
      if not a.last_user or ts > a.last_user then a.last_user = ts end
    end
  end
  self.activity[resource] = a
  return a
end

local function prune(self, list, now)
  local cutoff, drop = now - self.adaptive.monitoring_window_ms, 0
  while list[drop + 1] and list[drop + 1] < cutoff do drop = drop + 1 end
  drop = max(drop, #list - self.max_samples)
  if drop > 0 then
    local n = #list
    for i = 1, n - drop do list[i] = list[i + drop] end
    for i = n - drop + 1, n do list[i] = nil end
  end
end

-- Notes a request this process made (only once the activity is loaded: an
-- earlier one is part of what the load reads).
local function track(self, resource, priority, ts)
  local a = self.activity[resource]
  if not a then return end
  if priority == "background" then
    a.any_background = true
    return
  end
  a.any_user = true
  if not a.last_user or ts > a.last_user then a.last_user = ts end
  local list, i = a.user, #a.user
  list[i + 1] = ts
  while i >= 1 and list[i] > list[i + 1] do   -- keep ascending (clock steps)
    list[i], list[i + 1] = list[i + 1], list[i]
    i = i - 1
  end
  prune(self, list, ts)
end

local function metrics_of(self, a, now)
  prune(self, a.user, now)
  local mw = self.adaptive.monitoring_window_ms
  local third = mw / 3
  local recent, recent3, prev3 = 0, 0, 0
  for _, ts in ipairs(a.user) do
    if ts > now - mw then recent = recent + 1 end
    if ts > now - third then recent3 = recent3 + 1
    elseif ts > now - 2 * third then prev3 = prev3 + 1 end
  end
  return { recent_user = recent, recent3 = recent3, prev3 = prev3, last_user_ms = a.last_user,
           any_user_ever = a.any_user, any_background_ever = a.any_background, now_ms = now }
end

-- Capacity --------------------------------------------------------------------

local function policy_error(self, what)
  return store.err("PolicyError", "adaptive strategy " .. self.strategy_name .. " " .. what)
end

local function checked(self, r, limit)
  if type(r) ~= "table" then return nil, "returned " .. type(r) .. " (a table expected)" end
  local u, b = r.user_reserved, r.background_max
  if not finite(u) or u < 0 then
    return nil, "returned user_reserved = " .. tostring(u) .. " (a number >= 0 expected)"
  end
  if not finite(b) or b < 0 then
    return nil, "returned background_max = " .. tostring(b) .. " (a number >= 0 expected)"
  end
  if floor(u) + floor(b) > limit then
    return nil, "returned user_reserved " .. tostring(u) .. " + background_max " .. tostring(b)
                .. " above the limit " .. limit
  end
  if type(r.background_paused) ~= "boolean" then
    return nil, "returned background_paused = " .. tostring(r.background_paused) .. " (a boolean expected)"
  end
  if r.reason ~= nil and type(r.reason) ~= "string" then
    return nil, "returned reason = " .. tostring(r.reason) .. " (a string expected)"
  end
  return { user_reserved = floor(u), background_max = floor(b),
           background_paused = r.background_paused, reason = r.reason or "" }
end

-- The capacity of a resource now: cached for recalculation_interval_ms.
local function capacity_of(self, resource, a, cfg)
  local mono = self.runtime.mono_ms()
  local c = self.capacity[resource]
  if c and mono - c.at < self.adaptive.recalculation_interval_ms then return c.result, c.metrics end
  local now = floor(self.runtime.now_ms())
  local m = metrics_of(self, a, now)
  local cfg_copy = {}
  for k, v in pairs(self.adaptive) do cfg_copy[k] = v end
  local mcopy = {}
  for k, v in pairs(m) do mcopy[k] = v end
  local ok, r = pcall(self.strategy.compute, resource, cfg.limit, mcopy, cfg_copy)
  if not ok then return nil, policy_error(self, "failed: " .. tostring(r)) end
  local result, why = checked(self, r, cfg.limit)
  if not result then return nil, policy_error(self, why) end
  self.capacity[resource] = { result = result, at = mono, metrics = m }
  return result, m
end

-- What every priority operation needs: table, keys, config, capacity.
local function prepare(self, resource)
  local tbl, log_pk, slot_pk = rl.prepare(self, resource)
  if not tbl then return nil, log_pk end
  local a, err = activity_of(self, tbl, log_pk, resource)
  if not a then return nil, err end
  local cfg = rl.config_for(self, resource)
  local cap, cerr = capacity_of(self, resource, a, cfg)
  if not cap then return nil, cerr end
  return { table = tbl, log_pk = log_pk, slot_pk = slot_pk, cfg = cfg, cap = cap, activity = a }
end

local function share_of(cap, priority)
  if priority == "user" then return cap.user_reserved end
  if cap.background_paused then return 0 end
  return cap.background_max
end

local function count(self, p, priority, want_oldest)
  local now = floor(self.runtime.now_ms())
  local c, oldest, err = rl.count_in_window(self, { table = p.table, index = "gsi1",
    key = "gsi1pk", range = "gsi1sk", pk = p.log_pk .. "#" .. priority,
    from = "TS#" .. rl.ms_text(now - p.cfg.window_ms) }, share_of(p.cap, priority), want_oldest)
  return c, oldest, err, now
end

local function log_item(log_pk, priority, window_ms)
  return function(now, id)
    local sk = "TS#" .. rl.ms_text(now) .. "#" .. id
    return { pk = log_pk, sk = sk, gsi1pk = log_pk .. "#" .. priority, gsi1sk = sk,
             timestamp = now, ttl = rl.ttl_of(now + window_ms), priority = priority }
  end
end

-- Methods ---------------------------------------------------------------------

--- store:acquire(resource, priority?) -> true | false | nil, err
function _M:acquire(resource, priority)
  priority = check_priority(priority, "acquire")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local share = share_of(p.cap, priority)
  if share <= 0 then return false end
  local a = {
    table = p.table, window_ms = p.cfg.window_ms,
    parts = {
      -- the priority's partition (Node's layout: what Node processes honour)
      { pk = p.slot_pk .. "#" .. priority, share = share, read = share <= rl.READ_MAX },
      -- the resource's total, the same for every process whatever its
      -- split; probed, never read (see the header)
      { pk = p.slot_pk, share = p.cfg.limit, read = false },
    },
    log_item = log_item(p.log_pk, priority, p.cfg.window_ms),
  }
  local ok, aerr = rl.acquire_slot(self, a)
  if ok then track(self, resource, priority, a.granted_ms) end
  return ok, aerr
end

--- store:can_proceed(resource, priority?) -> boolean | nil, err
function _M:can_proceed(resource, priority)
  priority = check_priority(priority, "can_proceed")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local share = share_of(p.cap, priority)
  if share <= 0 then return false end
  local c, _, cerr = count(self, p, priority)
  if not c then return nil, cerr end
  return c < share
end

--- store:record(resource, priority?) -> true | nil, err: a log item, no slot.
function _M:record(resource, priority)
  priority = check_priority(priority, "record")
  local tbl, log_pk = rl.prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = rl.config_for(self, resource)
  local now = floor(self.runtime.now_ms())
  local ok, err = self.client:put_item{ TableName = tbl,
    Item = log_item(log_pk, priority, cfg.window_ms)(now, uuid()) }
  if not ok then return nil, err end
  track(self, resource, priority, now)
  return true
end

-- Every log item of a priority in the window, all pages (Node's
-- getCurrentUsage: get_status must count what Node counts, over-admitted
-- grants included, so no Limit). 1 request per MB of items.
local function used(self, p, priority, now)
  local n = 0
  for page, err in self.client:query_pages{ TableName = p.table, IndexName = "gsi1", Select = "COUNT",
      KeyConditionExpression = "gsi1pk = :pk AND gsi1sk >= :from",
      ExpressionAttributeValues = { [":pk"] = p.log_pk .. "#" .. priority,
                                    [":from"] = "TS#" .. rl.ms_text(now - p.cfg.window_ms) } } do
    if page == false then return nil, err end
    n = n + (page.Count or 0)
  end
  return n
end

--- store:get_status(resource) -> { remaining, available, reset_time,
--- limit, adaptive = { user_reserved, background_max, background_paused,
--- recent_user_activity, reason } } | nil, err.
-- remaining: what the Node package's getStatus reports, so a dashboard
--   reading either agrees: user_reserved - user_used + (background_max -
--   background_used), with the used counts of log items in the window per
--   priority; no floor (a priority over its share, e.g. after a share
--   shrank, subtracts from the other) and a paused background's share
--   counted (compat.md A.4, checked against the package).
-- available: ddbkit's own view of what acquire may still grant: each
--   priority's unused share, floored at 0, a paused background's as 0.
-- The shares are ddbkit's (integers, see scripts/strategies/adaptive.lua);
-- where Node's are fractional (6.24 / 3.76) their sum is the same (the
-- limit), so remaining is Node's number, exactly where Node's fractions
-- sum exactly, else within the double rounding of its arithmetic (with
-- node: limit 4, Node's shares 1.12 / 2.88, 2 user grants: Node says
-- 1.9999999999999998, ddbkit 2).
-- Cost: 2 Queries (COUNT; +1 per further MB of log items in the window).
function _M:get_status(resource)
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  local now = floor(self.runtime.now_ms())
  local remaining, available = 0, 0
  for _, priority in ipairs({ "user", "background" }) do
    local n, cerr = used(self, p, priority, now)
    if not n then return nil, cerr end
    local share = priority == "user" and p.cap.user_reserved or p.cap.background_max
    remaining = remaining + (share - n)
    available = available + max(0, share_of(p.cap, priority) - n)
  end
  local m = metrics_of(self, p.activity, now)
  return {
    remaining = remaining, available = available, reset_time = now + p.cfg.window_ms,
    limit = p.cfg.limit,
    adaptive = {
      user_reserved = p.cap.user_reserved, background_max = p.cap.background_max,
      background_paused = p.cap.background_paused, recent_user_activity = m.recent_user,
      reason = p.cap.reason,
    },
  }
end

--- store:get_wait_time(resource, priority?) -> ms | nil, err: 0 with
-- capacity; window_ms when the limit is 0; recalculation_interval_ms for a
-- paused background or a share of 0 (only a recalculation can change it);
-- else until the priority's oldest grant in the window leaves it.
function _M:get_wait_time(resource, priority)
  priority = check_priority(priority, "get_wait_time")
  local p, err = prepare(self, resource)
  if not p then return nil, err end
  if p.cfg.limit <= 0 then return p.cfg.window_ms end
  local share = share_of(p.cap, priority)
  if share <= 0 then return self.adaptive.recalculation_interval_ms end
  local c, oldest, cerr, now = count(self, p, priority, true)
  if not c then return nil, cerr end
  if c < share or type(oldest) ~= "number" then return 0 end
  return max(0, oldest + p.cfg.window_ms - now)
end

--- store:reset(resource) -> true | nil, err: the log and both slot
-- partitions, and what this process remembers of the resource.
function _M:reset(resource)
  local tbl, log_pk, slot_pk = rl.prepare(self, resource)
  if not tbl then return nil, log_pk end
  self.activity[resource], self.capacity[resource] = nil, nil
  rl.forget_slots(self)
  return rl.delete_partitions(self, tbl, { log_pk, slot_pk .. "#user", slot_pk .. "#background",
                                          slot_pk })
end

--- store:strategy_info() -> the strategy's name (for the REPL and logs)
function _M:strategy_info() return self.strategy_name end

-- For the native layout (lua/ddbkit/adaptive/native.lua): the same
-- config, strategy, activity metrics and capacity, not copied.
_M.internal = { adaptive_config = adaptive_config, check_priority = check_priority,
                track = track, metrics_of = metrics_of, capacity_of = capacity_of,
                share_of = share_of, NAME = NAME, STORE_NAME = STORE_NAME }

return _M
