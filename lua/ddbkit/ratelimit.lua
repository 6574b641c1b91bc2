-- ddbkit.ratelimit: a sliding-window rate limit on the shared store table,
-- in the Node store package's layout (compat.md A.3), so Node services and
-- ddbkit processes acquiring on one resource count against the same limit.
--
--   local rl = ddbkit.ratelimit.new{ client = client,
--     default_config = { limit = 60, window_ms = 60000 },
--     resource_configs = { ["slow-api"] = { limit = 10, window_ms = 60000 } } }
--   local ok, err = rl:acquire("slow-api")      -- true: go; false: limited
--   if ok == false then wait(rl:get_wait_time("slow-api")) end
--
-- Items (prefixes from the key-prefix policy; these are the defaults):
--   log   pk = "RATELIMIT#<resource>", sk = "TS#<nowMs>#<uuid>", timestamp (ms),
--         ttl (s) -- one per granted request
--   slot  pk = "RATELIMIT_SLOT#<resource>", sk = "SLOT#<n>", timestamp, ttl,
--         n in [0, limit) -- what makes acquire atomic
--   cooldown pk = sk = "COOLDOWN#<origin>", cooldownUntil (ms), ttl (s)
-- ttl is rounded up (ceil((now + window_ms) / 1000); Node floors): an item
-- must never be removed by DynamoDB's TTL while it still counts, or a slot
-- would come free early. Nothing of the Node package reads these ttls.
--
-- acquire (the Node package tries up to `limit` slot transactions, one by
-- one, before answering false). Every grant is the Node package's exact
-- transaction: Put slot with condition `attribute_not_exists(pk) OR
-- #timestamp < :windowStart`, Put log item. How the slot is chosen depends
-- on the limit:
-- * limit <= READ_MAX (100): one strongly consistent Query (one page, at
--   most 100 items) returns the slots with their timestamps; a slot is
--   free when missing or its timestamp is before now - window_ms. None
--   free: false after 1 request. Otherwise the transaction on a free slot
--   chosen at random: true after 2 requests. When another acquirer (ddbkit
--   or Node) took that slot first, the cancellation returns the slot's
--   timestamp (ALL_OLD), the slot is marked busy and another free slot of
--   the same Query is tried (+1 request each); when none is left the
--   partition is queried again.
-- * limit > READ_MAX: the partition is never read (reading it costs ~64
--   bytes per slot; past ~6 pages of 1 MB a call spent its whole budget on
--   Queries). The store keeps a view of the slots it knows busy, each until
--   its grant leaves the window: its own grants, and the slots it lost
--   (their owner's timestamp comes back with the cancellation). A call
--   tries a slot drawn at random among those the view does not know busy;
--   the condition tells whether it was free. A grant costs 1 request while
--   few slots are busy (at fill f, 1/(1-f) on average); when the view knows
--   `limit` busy slots the window is full: false with no request until the
--   oldest is due. The view is per store object (make the store once per
--   process or worker); reset() and clear() empty it.
--   Not seen by a view: slots numbered >= limit left by a larger limit in
--   the last window (the read path counts them), so for one window after a
--   decrease of a large limit the grants may reach the previous limit.
-- A call stops after MAX_REQUESTS (6) requests and answers false: under
-- that much contention the window is as good as full, and false is always
-- safe (the caller waits; nothing is over-granted).
--
-- Why this never grants more than `limit` in any window: a grant on slot n
-- at time t needs n's previous grant before t - window_ms (the condition is
-- checked atomically by DynamoDB), so any window_ms-long interval holds at
-- most one grant per slot. That holds across processes and machines; it
-- assumes their clocks agree (a clock running ahead takes slots early).
-- t is the slot's timestamp, read before the transaction was sent; a
-- transaction slower than STAMP_SLACK_MS (50 ms) stamps its slot again with
-- the time its answer came (+1 request), so in the time grants take effect
-- a slot comes free at most 50 ms early (see restamp for what remains).
--
-- Costs (requests): acquire 2 (limit <= 100: capacity), 1 (limit > 100:
-- capacity, few busy), 1 or 0 (full), +1 per slot lost to a concurrent
-- acquirer, at most 6 (+1 when the winning transaction took more than
-- STAMP_SLACK_MS: the slot is stamped again); the bytes read per acquire are bounded (at most one
-- 100-item page), whatever the limit. can_proceed 1, record 1, get_status
-- 1, get_wait_time 1 (the count and the oldest grant in one Query),
-- set/clear_cooldown 1, get_cooldown 1 (+1 deleting a passed cooldown),
-- reset 2 Queries + 1 BatchWriteItem per 25 items, clear 1 Scan page + 1
-- BatchWriteItem per 25 items. The counting calls (can_proceed,
-- get_status, get_wait_time) read up to `limit` log items: at large limits
-- they cost more pages.
--
-- Ranges (checked in new(), resource_configs, set_resource_config; a bad
-- one raises naming the field): limit an integer in [0, 2^31 - 1], window_ms
-- in (0, 10 years]; see config_error for why.
--
-- record() writes a log item without a slot, as Node does: it counts for
-- can_proceed / get_status / get_wait_time but not for acquire.
--
-- Time: timestamps from client.runtime.now_ms (wall clock, shared with the
-- Node services); no sleeping anywhere.
local ddbkit_core = require "ddbkit.core"
local store = require "ddbkit.store"
local client_mod = require "ddbkit.client"

local type, pairs, ipairs, error, setmetatable, tostring, tonumber =
      type, pairs, ipairs, error, setmetatable, tostring, tonumber
local floor, ceil, max, format, sort = math.floor, math.ceil, math.max, string.format, table.sort
local uuid = ddbkit_core.uuid

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.ratelimit"
local DEFAULT_TABLE = "http-client-toolkit"
local STORE_NAME = "rate_limit"          -- for policy.table_name
local MAX_REQUESTS = 6
-- Partitions of at most this many slots are read at every acquire (1 Query,
-- a few KB); larger ones are probed (see acquire_slot).
local READ_MAX = 100
-- A winning transaction slower than this stamps its slots again (restamp).
local STAMP_SLACK_MS = 50
local BATCH = 25
local MISSING_TABLE = 'DynamoDB table "%s" was not found. Create the table using your '
                      .. "infrastructure before using DynamoDB stores."

_M.MAX_REQUESTS, _M.READ_MAX, _M.STAMP_SLACK_MS = MAX_REQUESTS, READ_MAX, STAMP_SLACK_MS

-- Randomness for the choice of slot: contenders must choose differently, so
-- each process seeds its own generator from the kernel (ddbkit.core.uuid:
-- getrandom) mixed with its process id, on first use, never when the module
-- loads: a module preloaded in init_by_lua is loaded once in the nginx
-- master, and every worker forked from it would draw the same sequence
-- (more lost races, more false refusals). The process id is checked at
-- every draw where it is cheap (ngx.worker.pid()), so a generator used
-- before a fork is seeded again in each child; elsewhere it is read once
-- from /proc/self/stat at first use (a plain Lua process cannot fork
-- without a C library; one that does so after drawing shares the sequence).
-- Kept apart from math.random (LuaJIT starts every process on the same
-- sequence, and callers may seed it themselves). Park-Miller: exact in
-- doubles on Lua 5.4 and LuaJIT alike.
local seed, seed_pid = nil, nil
local proc_pid = nil                      -- /proc/self/stat's, once read

local function process_id()
  local ngx = rawget(_G, "ngx")
  local worker = type(ngx) == "table" and ngx.worker
  if type(worker) == "table" and type(worker.pid) == "function" then return worker.pid() end
  if proc_pid == nil then
    local f = io.open("/proc/self/stat", "r")
    local line = f and f:read("*l")
    if f then f:close() end
    proc_pid = type(line) == "string" and tonumber(line:match("^(%d+)")) or false
  end
  return proc_pid or 0
end

local function random_index(n)
  local pid = process_id()
  if seed == nil or pid ~= seed_pid then
    local entropy = tonumber(uuid():gsub("-", ""):sub(1, 8), 16)
    seed = (entropy + pid * 2654435761) % 2147483646 + 1   -- Knuth's multiplicative mix
    seed_pid = pid
  end
  seed = (seed * 16807) % 2147483647
  return floor(seed / 2147483647 * n) + 1
end

-- Options and configs ----------------------------------------------------

-- The ranges the Node layout allows:
-- limit: canProceed / getStatus (Node's and ours) count the window with a
--   Query whose Limit is the limit, and DynamoDB's Limit is a 32-bit
--   integer (2^31 at DynamoDB Local: InternalFailure).
-- window_ms: log items are compared as text, sk >= "TS#<now - window_ms>",
--   which is only right while now - window_ms has the 13 digits of every
--   timestamp since 2001; 10 years keeps that true for centuries to come.
local MAX_LIMIT = 2147483647
local MAX_WINDOW_MS = 10 * 365 * 86400000
_M.MAX_LIMIT, _M.MAX_WINDOW_MS = MAX_LIMIT, MAX_WINDOW_MS

local function config_error(cfg)
  if type(cfg) ~= "table" then return "a table { limit, window_ms }" end
  for k in pairs(cfg) do
    if k ~= "limit" and k ~= "window_ms" then
      return "a table { limit, window_ms } (unknown field " .. tostring(k) .. ")"
    end
  end
  local l, w = cfg.limit, cfg.window_ms
  if type(l) ~= "number" or not (l >= 0 and l <= MAX_LIMIT) or l ~= floor(l) then
    return "a table whose limit is an integer in [0, " .. MAX_LIMIT .. "], got " .. tostring(l)
  end
  if type(w) ~= "number" or not (w > 0 and w <= MAX_WINDOW_MS) then
    return "a table whose window_ms is a number in (0, " .. format("%.0f", MAX_WINDOW_MS)
           .. "] (10 years), got " .. tostring(w)
  end
end

local function copy_config(cfg) return { limit = cfg.limit, window_ms = cfg.window_ms } end

local function check_resource_configs(v)
  if type(v) ~= "table" then return "a table mapping resources to { limit, window_ms }" end
  for res, cfg in pairs(v) do
    if type(res) ~= "string" or store.check_part("resource", res) then
      return "a table mapping resources (valid key parts) to { limit, window_ms }"
    end
    local want = config_error(cfg)
    if want then return "a table whose [" .. res .. "] is " .. want end
  end
end

_M.config_error = config_error
_M.check_resource_configs = check_resource_configs

--- The fields every rate limit store shares (ddbkit.adaptive uses it too).
function _M.init(self, name, opts, default_config)
  self.name = name
  self.client = opts.client
  self.runtime = opts.client.runtime
  self.table_name = opts.table_name or DEFAULT_TABLE
  self.policy = store.policy(opts.policy)
  self.default_config = copy_config(opts.default_config or default_config)
  self.configs = {}
  for res, cfg in pairs(opts.resource_configs or {}) do self.configs[res] = copy_config(cfg) end
  return self
end

--- ddbkit.ratelimit.new{ client, table_name?, policy?, default_config?
--- ({ limit = 60, window_ms = 60000 }), resource_configs?, layout? ("node",
--- the default; "native": see ddbkit/ratelimit/native.lua) } -> store.
--- Raises on a bad option.
function _M.new(opts)
  -- layout = "native": ddbkit.ratelimit.native (leases; its own options)
  if type(opts) == "table" and opts.layout ~= nil and opts.layout ~= "node" then
    if opts.layout ~= "native" then
      error(NAME .. '.new: opts.layout must be "node" or "native", got ' .. tostring(opts.layout), 2)
    end
    return require("ddbkit.ratelimit.native").new(opts)
  end
  opts = store.options(NAME .. ".new", opts, {
    layout = function() end,   -- "node" (checked above)
    client = store.is_client, table_name = store.is_string, policy = store.is_any,
    default_config = config_error, resource_configs = check_resource_configs,
  })
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 2) end
  local self = _M.init(setmetatable({}, mt), NAME, opts, { limit = 60, window_ms = 60000 })
  self.store_name = STORE_NAME
  return self
end

-- Helpers shared with ddbkit.adaptive --------------------------------------

local function check_open(self)
  if self.closed then error(self.name .. ": the store is closed", 3) end
end
_M.check_open = check_open

function _M.config_for(self, resource)
  return self.configs[resource] or self.default_config
end

-- The table of this operation (asked of the policy every time).
function _M.table_of(self)
  return self.policy.table(self.store_name, self.table_name)
end

-- A transaction names its tables inside TransactItems, so the client
-- cannot put the compat message on a missing table; this does.
local function missing_table(err, tbl)
  if err and err.code == "ResourceNotFoundException" then
    err.message = format(MISSING_TABLE, tbl)
  end
  return err
end

local function ms_text(ms) return format("%.0f", ms) end
_M.ms_text = ms_text

-- ttl for an item that counts until `until_ms`: never before it.
local function ttl_of(until_ms) return ceil(until_ms / 1000) end
_M.ttl_of = ttl_of

-- What a store knows of a slot partition ------------------------------------
--
-- A view: the slots known busy, each with the timestamp it was granted at
-- (ts[n]), their number (count), and a min-heap of (timestamp, n) so that
-- slots leaving the window are dropped in O(log k) each, never by walking
-- the view. A view only ever says "busy": a slot it does not name is
-- unknown, and the conditional write that takes it tells whether it was
-- free. A busy fact stays true until its grant leaves the window (a slot's
-- timestamp only grows; only reset() deletes one, and reset() here clears
-- the views), so a view that knows `share` busy slots answers a full window
-- with no request until its oldest slot is due.

local function new_view() return { ts = {}, count = 0, heap_ts = {}, heap_n = {}, size = 0 } end

local function heap_push(v, ts, n)
  local hts, hn = v.heap_ts, v.heap_n
  local i = v.size + 1
  v.size = i
  while i > 1 do
    local parent = floor(i / 2)
    if hts[parent] <= ts then break end
    hts[i], hn[i] = hts[parent], hn[parent]
    i = parent
  end
  hts[i], hn[i] = ts, n
end

local function heap_pop(v)
  local hts, hn, size = v.heap_ts, v.heap_n, v.size
  local ts, n = hts[size], hn[size]
  hts[size], hn[size] = nil, nil
  size = size - 1
  v.size = size
  if size == 0 then return end
  local i = 1
  while true do
    local c = 2 * i
    if c > size then break end
    if c < size and hts[c + 1] < hts[c] then c = c + 1 end
    if hts[c] >= ts then break end
    hts[i], hn[i] = hts[c], hn[c]
    i = c
  end
  hts[i], hn[i] = ts, n
end

-- Notes slot n busy since ts (a newer grant than the one known replaces it).
local function learn(v, n, ts)
  local known = v.ts[n]
  if known == nil then v.count = v.count + 1
  elseif known >= ts then return end
  v.ts[n] = ts
  heap_push(v, ts, n)
end

-- Drops the slots whose grant is before window_start (free again).
local function expire(v, window_start)
  local hts, hn, ts = v.heap_ts, v.heap_n, v.ts
  while v.size > 0 and hts[1] < window_start do
    local n, t = hn[1], hts[1]
    heap_pop(v)
    if ts[n] == t then
      ts[n] = nil
      v.count = v.count - 1
    end
  end
end

-- The view of a partition, per store and table (a store made per process,
-- as in OpenResty's per-worker stores, keeps one per process). At most
-- MAX_VIEWS partitions are remembered (a limit per user makes one per
-- user): past that, every view is dropped, which only costs knowledge
-- (slots are tried again; nothing is granted that a condition refuses).
local MAX_VIEWS = 1024
local function view_of(self, tbl, pk)
  local views = self.slot_views
  if not views or self.slot_view_count >= MAX_VIEWS then
    views = {}
    self.slot_views, self.slot_view_count = views, 0
  end
  local key = tbl .. "\0" .. pk
  local v = views[key]
  if not v then
    v = new_view()
    views[key] = v
    self.slot_view_count = self.slot_view_count + 1
  end
  return v
end

--- Forgets what this store knows of its slot partitions (reset, clear).
function _M.forget_slots(self) self.slot_views = nil end

-- Reads one page (at most READ_MAX items, strongly consistent) of the slot
-- partition into a fresh view: the page's busy slots, and whether the page
-- was the whole partition. A slot without a number timestamp reads as busy
-- forever (Node's condition cannot free it either). Slot numbers are read
-- as numbers, fractions included: the Node adaptive store names slots
-- `(start + offset) % share` with a fractional share ("SLOT#0.76"), and
-- such a slot holds a grant like any other, so it counts towards the
-- partition's `share` busy slots (pick never chooses one: it draws
-- integers). Returns view, complete | nil, err.
local function read_view(client, tbl, slot_pk)
  local page, err = client:query{
    TableName = tbl, ConsistentRead = true, Limit = READ_MAX,
    KeyConditionExpression = "pk = :pk",
    ProjectionExpression = "sk, #ts",
    ExpressionAttributeNames = { ["#ts"] = "timestamp" },
    ExpressionAttributeValues = { [":pk"] = slot_pk } }
  if not page then return nil, err end
  local v = new_view()
  for _, item in ipairs(page.Items or {}) do
    local n = tonumber(type(item.sk) == "string" and item.sk:match("^SLOT#([%d.eE+-]+)$"))
    if n then
      local ts = item.timestamp
      learn(v, n, type(ts) == "number" and ts or math.huge)
    end
  end
  return v, page.LastEvaluatedKey == nil
end

-- A slot number in [0, share) that the view does not know busy, chosen
-- uniformly among those, or nil when the view knows `share` or more busy
-- slots (also those at n >= share, left by a larger share: they count
-- until they leave the window). Cost: a few random draws; only when most
-- of [0, share) is known busy, a walk of the sorted busy numbers below it
-- (time and memory in the slots known, never in the share).
local DRAWS = 32
local function pick(v, share, window_start)
  expire(v, window_start)
  if v.count >= share then return nil end
  local top = floor(share - 1)            -- a fractional share s has slots 0..ceil(s)-1
  local ts = v.ts
  for _ = 1, DRAWS do
    local n = random_index(top + 1) - 1
    if ts[n] == nil then return n end
  end
  local below = {}
  for n in pairs(ts) do   -- Node's fractional slots are not ours to draw
    if n >= 0 and n <= top and n == floor(n) then below[#below + 1] = n end
  end
  local nfree = top + 1 - #below
  if nfree <= 0 then return nil end
  sort(below)
  local n = random_index(nfree) - 1       -- the (n+1)-th free number
  for _, b in ipairs(below) do
    if b > n then break end
    n = n + 1
  end
  return n
end

-- When a grant took effect. The slot's timestamp is the time read before
-- its transaction was sent; the transaction takes effect later, by up to
-- its duration (a slow answer, or retries). The slot would then come free
-- early by as much. So when the winning transaction took more than
-- STAMP_SLACK_MS (monotonic clock), its slots are stamped again with the
-- time the answer came (no earlier than when the grant took effect), in one
-- transaction conditioned on the slots still holding our stamp: 1 request
-- more, for slow grants only. What remains: a grant's slot may come free
-- up to STAMP_SLACK_MS early (two grants on one slot take effect more than
-- window_ms - STAMP_SLACK_MS apart); and when the second stamp fails (an
-- error, or a window shorter than the transaction, when the slot was taken
-- again meanwhile), up to the transaction's duration early, which the
-- client's timeout and retry settings bound. The log item keeps the first
-- stamp (its key holds it); only the counting calls read it.
-- Returns the stamp the slots hold.
local function restamp(self, tbl, parts, chosen, stamp, window)
  local now = floor(self.runtime.now_ms())
  if now <= stamp then return stamp end
  local items = {}
  for i = 1, #parts do
    items[i] = { Update = {
      TableName = tbl, Key = { pk = parts[i].pk, sk = "SLOT#" .. ms_text(chosen[i]) },
      UpdateExpression = "SET #timestamp = :now, #ttl = :ttl",
      ConditionExpression = "#timestamp = :stamp",
      ExpressionAttributeNames = { ["#timestamp"] = "timestamp", ["#ttl"] = "ttl" },
      ExpressionAttributeValues = { [":now"] = now, [":ttl"] = ttl_of(now + window),
                                    [":stamp"] = stamp } } }
  end
  local ok = self.client:transact_write_items{ ClientRequestToken = uuid(), TransactItems = items }
  if not ok then return stamp end
  return now
end

--- acquire_slot(self, a) -> true | false | nil, err: the slot acquire of
-- both stores. a = { table, window_ms, parts = { { pk, share, read }, ... },
-- log_item(now, id) -> the log item to write with the slots }. One grant
-- takes a free slot in [0, share) of every part's partition and writes the
-- log item, in one transaction; a part's partition is full when `share`
-- of its slots are busy (slots at n >= share, left by a larger share, count
-- too).
--
-- A part with `read` (a share of at most READ_MAX) is read at the start of
-- every call (1 Query of at most READ_MAX items) and read again when every
-- slot the read left free was lost to others. A part without it is never
-- read: its slots are tried at random among those the store's view does not
-- know busy, and the answers teach the view (a grant: ours; a lost slot:
-- its owner's timestamp, returned by the cancellation), so a full window is
-- answered with no request until a slot is due.
-- On a grant, a.granted_ms is set to the timestamp stored.
function _M.acquire_slot(self, a)
  local client, tbl, window, parts = self.client, a.table, a.window_ms, a.parts
  local np = #parts
  local views, fresh, stale = {}, {}, {}
  for i = 1, np do
    if parts[i].share <= 0 then return false end
    if not parts[i].read then views[i] = view_of(self, tbl, parts[i].pk) end
  end
  local requests, chosen = 0, {}
  while true do
    for i = 1, np do
      if parts[i].read and not fresh[i] then
        -- a Query that leaves no request for the transaction is not worth it
        if requests > MAX_REQUESTS - 2 then return false end
        local v, err = read_view(client, tbl, parts[i].pk)
        requests = requests + 1
        if not v then return nil, missing_table(err, tbl) end
        views[i], fresh[i], stale[i] = v, true, false
      end
    end
    local now = floor(self.runtime.now_ms())
    local window_start = now - window
    local again = false
    for i = 1, np do
      local n = pick(views[i], parts[i].share, window_start)
      if not n then
        -- Full as far as this part is known. A read view we changed after
        -- lost races is read again (slots may have come free since).
        if not (parts[i].read and stale[i]) then return false end
        fresh[i], again = false, true
      end
      chosen[i] = n
    end
    if not again then
      if requests >= MAX_REQUESTS then return false end
      local id = uuid()
      local items = {}
      for i = 1, np do
        items[i] = { Put = {
          TableName = tbl,
          Item = { pk = parts[i].pk, sk = "SLOT#" .. ms_text(chosen[i]), timestamp = now,
                   ttl = ttl_of(now + window) },
          ConditionExpression = "attribute_not_exists(pk) OR #timestamp < :windowStart",
          ExpressionAttributeNames = { ["#timestamp"] = "timestamp" },
          ExpressionAttributeValues = { [":windowStart"] = window_start },
          ReturnValuesOnConditionCheckFailure = "ALL_OLD" } }
      end
      items[np + 1] = { Put = { TableName = tbl, Item = a.log_item(now, id) } }
      local started = self.runtime.mono_ms()
      local res, err = client:transact_write_items{
        ClientRequestToken = id,   -- a resent attempt after a lost response is not a 2nd grant
        TransactItems = items,
      }
      requests = requests + 1
      if res then
        local stamp = now
        if self.runtime.mono_ms() - started > STAMP_SLACK_MS then
          stamp = restamp(self, tbl, parts, chosen, now, window)
        end
        for i = 1, np do learn(views[i], chosen[i], stamp) end
        a.granted_ms = stamp
        return true
      end
      if err.code ~= "TransactionCanceledException" then return nil, missing_table(err, tbl) end
      local lost = false
      for i = 1, np do
        local reason = client_mod.reason_of(err, i)
        local code = reason and reason.Code
        if code == "ConditionalCheckFailed" or code == "TransactionConflict" then
          -- Another acquirer holds slot n now: its timestamp when DynamoDB
          -- sent the item, else (a conflicting transaction in flight) as of now.
          local old = client_mod.item_of(reason.Item)
          local ts = old and old.timestamp
          learn(views[i], chosen[i], type(ts) == "number" and ts or now)
          stale[i], lost = true, true
        end
      end
      if not lost then return nil, err end
    end
  end
end

-- Counts a partition's (or index partition's) items with sort key >= from,
-- stopping at `limit`; with want_oldest, also returns the first item's
-- timestamp. One request unless more than 1 MB of items qualify.
function _M.count_in_window(self, q, limit, want_oldest)
  local count, oldest, start = 0, nil, nil
  local cursor = self.client:cursor("Query", nil)
  repeat
    local params = {
      TableName = q.table, IndexName = q.index, ConsistentRead = not q.index or nil,
      KeyConditionExpression = q.key .. " = :pk AND " .. q.range .. " >= :from",
      ExpressionAttributeValues = { [":pk"] = q.pk, [":from"] = q.from },
      Limit = limit - count, ExclusiveStartKey = start,
    }
    if want_oldest then
      params.ProjectionExpression = "#ts"
      params.ExpressionAttributeNames = { ["#ts"] = "timestamp" }
      params.ScanIndexForward = true
    else
      params.Select = "COUNT"
    end
    local page, err = self.client:query(params)
    if not page then return nil, nil, err end
    if want_oldest and not oldest and page.Items and page.Items[1] then
      oldest = page.Items[1].timestamp
    end
    count = count + (page.Count or 0)
    local nerr
    start, nerr = cursor:next(page)
    if start == false then return nil, nil, nerr end
  until not start or count >= limit
  return count, oldest
end

-- Deletes the given keys, 25 per BatchWriteItem.
local function delete_keys(client, tbl, keys)
  for i = 1, #keys, BATCH do
    local reqs = {}
    for j = i, math.min(i + BATCH - 1, #keys) do
      reqs[#reqs + 1] = { DeleteRequest = { Key = { pk = keys[j].pk, sk = keys[j].sk } } }
    end
    local ok, err = client:batch_write_item{ RequestItems = { [tbl] = reqs } }
    if not ok then return nil, err end
  end
  return true
end

--- delete_partitions(self, tbl, pks) -> true | nil, err
function _M.delete_partitions(self, tbl, pks)
  for _, pk in ipairs(pks) do
    local keys, err = self.client:query_all{
      TableName = tbl, KeyConditionExpression = "pk = :pk",
      ProjectionExpression = "pk, sk", ExpressionAttributeValues = { [":pk"] = pk } }
    if not keys then return nil, err end
    local ok, derr = delete_keys(self.client, tbl, keys)
    if not ok then return nil, derr end
  end
  return true
end

-- Resolves key prefixes, or nil, err (a PolicyError).
function _M.keys(self, resource)
  local log_pk, err = store.key(self.policy, "ratelimit", resource)
  if not log_pk then return nil, err end
  local slot_pk, serr = store.key(self.policy, "ratelimit_slot", resource)
  if not slot_pk then return nil, serr end
  return log_pk, slot_pk
end

local function prepare(self, resource)
  check_open(self)
  local bad = store.check_part("resource", resource)
  if bad then return nil, bad end
  local tbl, terr = _M.table_of(self)
  if not tbl then return nil, terr end
  local log_pk, slot_pk = _M.keys(self, resource)
  if not log_pk then return nil, slot_pk end
  return tbl, log_pk, slot_pk
end
_M.prepare = prepare

-- Methods ----------------------------------------------------------------

--- store:acquire(resource) -> true | false | nil, err
function _M:acquire(resource)
  local tbl, log_pk, slot_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = _M.config_for(self, resource)
  return _M.acquire_slot(self, {
    table = tbl, window_ms = cfg.window_ms,
    parts = { { pk = slot_pk, share = cfg.limit, read = cfg.limit <= READ_MAX } },
    log_item = function(now, id)
      return { pk = log_pk, sk = "TS#" .. ms_text(now) .. "#" .. id, timestamp = now,
               ttl = ttl_of(now + cfg.window_ms) }
    end,
  })
end

--- store:can_proceed(resource) -> boolean | nil, err: fewer than `limit`
-- log items in the window (1 Query COUNT, bounded by limit).
function _M:can_proceed(resource)
  local tbl, log_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = _M.config_for(self, resource)
  if cfg.limit <= 0 then return false end
  local now = floor(self.runtime.now_ms())
  local count, _, err = _M.count_in_window(self, { table = tbl, key = "pk", range = "sk",
    pk = log_pk, from = "TS#" .. ms_text(now - cfg.window_ms) }, cfg.limit)
  if not count then return nil, err end
  return count < cfg.limit
end

--- store:record(resource) -> true | nil, err: one log item, no slot.
function _M:record(resource)
  local tbl, log_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = _M.config_for(self, resource)
  local now = floor(self.runtime.now_ms())
  local ok, err = self.client:put_item{ TableName = tbl, Item = {
    pk = log_pk, sk = "TS#" .. ms_text(now) .. "#" .. uuid(), timestamp = now,
    ttl = ttl_of(now + cfg.window_ms) } }
  if not ok then return nil, err end
  return true
end

--- store:get_status(resource) -> { remaining, reset_time, limit } | nil, err
-- reset_time: epoch ms, now + window_ms (as the Node package says).
function _M:get_status(resource)
  local tbl, log_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = _M.config_for(self, resource)
  local now = floor(self.runtime.now_ms())
  local count = 0
  if cfg.limit > 0 then
    local c, _, err = _M.count_in_window(self, { table = tbl, key = "pk", range = "sk",
      pk = log_pk, from = "TS#" .. ms_text(now - cfg.window_ms) }, cfg.limit)
    if not c then return nil, err end
    count = c
  end
  return { remaining = max(0, cfg.limit - count), reset_time = now + cfg.window_ms,
           limit = cfg.limit }
end

--- store:get_wait_time(resource) -> ms | nil, err: 0 with capacity,
-- window_ms when the limit is 0, else until the oldest grant in the window
-- leaves it. One Query: the first `limit` log items of the window, oldest
-- first (their count and the oldest timestamp).
function _M:get_wait_time(resource)
  local tbl, log_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  local cfg = _M.config_for(self, resource)
  if cfg.limit <= 0 then return cfg.window_ms end
  local now = floor(self.runtime.now_ms())
  local count, oldest, err = _M.count_in_window(self, { table = tbl, key = "pk", range = "sk",
    pk = log_pk, from = "TS#" .. ms_text(now - cfg.window_ms) }, cfg.limit, true)
  if not count then return nil, err end
  if count < cfg.limit or type(oldest) ~= "number" then return 0 end
  return max(0, oldest + cfg.window_ms - now)
end

--- store:reset(resource) -> true | nil, err: deletes the log and slot partitions.
function _M:reset(resource)
  local tbl, log_pk, slot_pk = prepare(self, resource)
  if not tbl then return nil, log_pk end
  _M.forget_slots(self)
  return _M.delete_partitions(self, tbl, { log_pk, slot_pk })
end

--- store:set_resource_config(resource, { limit, window_ms }) -> true | nil, err
function _M:set_resource_config(resource, cfg)
  check_open(self)
  local bad = store.check_part("resource", resource)
  if bad then return nil, bad end
  local want = config_error(cfg)
  if want then error(self.name .. ": set_resource_config's config must be " .. want, 2) end
  self.configs[resource] = copy_config(cfg)
  if self.on_config then self:on_config(resource) end
  return true
end

--- store:get_resource_config(resource) -> { limit, window_ms } | nil, err
function _M:get_resource_config(resource)
  local bad = store.check_part("resource", resource)
  if bad then return nil, bad end
  return copy_config(_M.config_for(self, resource))
end

-- Cooldowns ----------------------------------------------------------------

local function cooldown_key(self, origin)
  check_open(self)
  local bad = store.check_part("origin", origin)
  if bad then return nil, bad end
  local tbl, terr = _M.table_of(self)
  if not tbl then return nil, terr end
  local pk, err = store.key(self.policy, "cooldown", origin)
  if not pk then return nil, err end
  return tbl, pk
end

--- store:set_cooldown(origin, until_ms) -> true | nil, err
function _M:set_cooldown(origin, until_ms)
  if type(until_ms) ~= "number" or until_ms ~= until_ms then
    error("bad argument #2 to 'set_cooldown' (epoch ms expected, got " .. type(until_ms) .. ")", 2)
  end
  local tbl, pk = cooldown_key(self, origin)
  if not tbl then return nil, pk end
  local ok, err = self.client:put_item{ TableName = tbl, Item = {
    pk = pk, sk = pk, cooldownUntil = until_ms, ttl = ttl_of(until_ms) } }
  if not ok then return nil, err end
  return true
end

--- store:get_cooldown(origin) -> until_ms | nil (none, or passed: then it
-- is deleted, unless someone set a new one meanwhile) | nil, err
function _M:get_cooldown(origin)
  local tbl, pk = cooldown_key(self, origin)
  if not tbl then return nil, pk end
  local res, err = self.client:get_item{ TableName = tbl, Key = { pk = pk, sk = pk },
                                         ConsistentRead = true }
  if not res then return nil, err end
  local item = res.Item
  if not item then return nil end
  local until_ms = item.cooldownUntil
  if type(until_ms) == "number" and self.runtime.now_ms() < until_ms then return until_ms end
  local params = { TableName = tbl, Key = { pk = pk, sk = pk } }
  if until_ms ~= nil then
    params.ConditionExpression = "cooldownUntil = :u"
    params.ExpressionAttributeValues = { [":u"] = until_ms }
  end
  local ok, derr = self.client:delete_item(params)
  if not ok and derr.code ~= "ConditionalCheckFailedException" then return nil, derr end
  return nil
end

--- store:clear_cooldown(origin) -> true | nil, err
function _M:clear_cooldown(origin)
  local tbl, pk = cooldown_key(self, origin)
  if not tbl then return nil, pk end
  local ok, err = self.client:delete_item{ TableName = tbl, Key = { pk = pk, sk = pk } }
  if not ok then return nil, err end
  return true
end

--- store:clear() -> true | nil, err: every rate limit log, slot and
-- cooldown item of the table (Scan; the Node package's clear), adaptive
-- stores' items included (they share the prefixes).
function _M:clear()
  check_open(self)
  local tbl, terr = _M.table_of(self)
  if not tbl then return nil, terr end
  local values, ors = {}, {}
  for i, kind in ipairs(self.clear_kinds or { "ratelimit", "ratelimit_slot", "cooldown" }) do
    local p, err = self.policy.prefix(kind)
    if not p then return nil, err end
    values[":p" .. i] = p
    ors[i] = "begins_with(pk, :p" .. i .. ")"
  end
  for page, err in self.client:scan_pages{ TableName = tbl, ProjectionExpression = "pk, sk",
      FilterExpression = table.concat(ors, " OR "), ExpressionAttributeValues = values } do
    if page == false then return nil, err end
    local ok, derr = delete_keys(self.client, tbl, page.Items or {})
    if not ok then return nil, derr end
  end
  _M.forget_slots(self)
  if self.on_clear then self:on_clear() end
  return true
end

--- store:close(): the store holds nothing but its client (not closed
-- here: it may be shared); later calls raise.
function _M:close()
  self.closed = true
end

return _M
