-- ddbkit.lock: leases on one DynamoDB item that only their owner can renew
-- or release, with a fencing token that grows on every acquire. The
-- protocol lives in the engine (engine/lock.c) as a machine without I/O;
-- this module checks options, names the key, gives handles their methods,
-- and drives the machine through the client's runtime, so a lock waits and
-- sends the way every other call of that runtime does (blocking, or yielding
-- in a coroutine runtime or OpenResty).
--
--   local locks = ddbkit.lock.new{ client = client, table_name = "t",
--                                  key = { pk = "LOCK#world-7", sk = "LOCK#world-7" } }
--   local h, err = locks:acquire{ lease_ms = 10000, wait_ms = 2000 }
--   if h then ... h:renew() ... h:release() end
--
-- A handle is for one task at a time: two operations on it at once (from two
-- coroutines) would race for its record version.
local core = require "ddbkit.core"

local type, pairs, error, setmetatable, tostring, floor =
      type, pairs, error, setmetatable, tostring, math.floor
local lock_op, call_raw_blocking = core.lock_op, core.call_raw

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local handle = {}
local handle_mt = { __index = handle }

local DEFAULT_SKEW_MS = 1000

-- Runs one operation of the engine's lock machine to its end through the
-- client's runtime: each "send" is runtime.call_raw (a runtime without one,
-- an older custom table, gets the engine's blocking call), each "sleep" is
-- runtime.sleep. Returns what the operation returns.
local function drive(client, op)
  local runtime = client.runtime
  local call_raw, cc = runtime.call_raw or call_raw_blocking, client.core
  local what, a, b = op:next()
  while what ~= "done" do
    if what == "send" then
      what, a, b = op:next(call_raw(cc, a, b))
    else
      runtime.sleep(a)
      what, a, b = op:next()
    end
  end
  return op:result()
end

local function opt_error(field, want, got)
  error("ddbkit.lock: opts." .. field .. " must be " .. want .. ", got " .. tostring(got), 3)
end

local function check_ms(opts, field, min, default)
  local v = opts[field]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < min or v ~= floor(v) then
    opt_error(field, "an integer >= " .. min, v)
  end
  return v
end

--- ddbkit.lock.node_key(key) -> the key of the Node idempotency adapter's
-- lock item for `key`: { cacheKey = "lock:" .. key }.
function _M.node_key(key)
  if type(key) ~= "string" or key == "" then
    error("ddbkit.lock.node_key: key must be a non-empty string", 2)
  end
  return { cacheKey = "lock:" .. key }
end

--- ddbkit.lock.new{ client, table_name, key, max_clock_skew_ms? } -> locks
function _M.new(opts)
  if type(opts) ~= "table" then error("ddbkit.lock.new: opts must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "client" and k ~= "table_name" and k ~= "key" and k ~= "max_clock_skew_ms" then
      error("ddbkit.lock.new: unknown option opts." .. tostring(k), 2)
    end
  end
  if type(opts.client) ~= "table" or not opts.client.core then
    error("ddbkit.lock.new: opts.client must be a ddbkit.client", 2)
  end
  if type(opts.table_name) ~= "string" or opts.table_name == "" then
    error("ddbkit.lock.new: opts.table_name must be a non-empty string", 2)
  end
  local key = opts.key
  if type(key) ~= "table" then error("ddbkit.lock.new: opts.key must be a table", 2) end
  local names = {}
  for name, value in pairs(key) do
    if type(name) ~= "string" or type(value) ~= "string" or value == "" then
      error("ddbkit.lock.new: opts.key must map attribute names to non-empty strings", 2)
    end
    names[#names + 1] = name
  end
  if #names < 1 or #names > 2 then
    error("ddbkit.lock.new: opts.key must have one or two attributes", 2)
  end
  -- Which attribute is the partition key only matters for the condition
  -- attribute_not_exists(...); either key attribute exists exactly when the
  -- item does, so the choice is free: take the first name in sorted order.
  table.sort(names)
  local skew = check_ms(opts, "max_clock_skew_ms", 0, DEFAULT_SKEW_MS)
  return setmetatable({
    client = opts.client,
    skew = skew,
    target = {
      table = opts.table_name,
      pk_name = names[1], pk_value = key[names[1]],
      sk_name = names[2], sk_value = names[2] and key[names[2]],
    },
  }, mt)
end

--- locks:acquire{ lease_ms, wait_ms?, max_clock_skew_ms?, foreign_grace_ms?, with_item? }
-- -> handle | nil, err
-- with_item: when busy, err.item is the whole item as last seen (for items
-- that hold more than the lock, such as an idempotency record).
-- foreign_grace_ms (default 0): an item no ddbkit lock ever held (no
-- lockOwner, no releasedRvn: the Node idempotency adapter's lock, which
-- nobody renews or fences) is taken only once it expired this long (plus
-- the skew margin) ago; 0 takes it at expiry, as the Node adapter does.
function _M:acquire(opts)
  if type(opts) ~= "table" then error("ddbkit.lock: acquire takes an options table", 2) end
  for k in pairs(opts) do
    if k ~= "lease_ms" and k ~= "wait_ms" and k ~= "max_clock_skew_ms" and k ~= "with_item"
       and k ~= "foreign_grace_ms" then
      error("ddbkit.lock: unknown option opts." .. tostring(k), 2)
    end
  end
  if opts.lease_ms == nil then opt_error("lease_ms", "given", nil) end
  local o = {
    lease_ms = check_ms(opts, "lease_ms", 1),
    wait_ms = check_ms(opts, "wait_ms", 0, 0),
    max_clock_skew_ms = check_ms(opts, "max_clock_skew_ms", 0, self.skew),
    foreign_grace_ms = check_ms(opts, "foreign_grace_ms", 0, 0),
    with_item = opts.with_item and true or nil,
  }
  local op, err = lock_op("acquire", self.target, o)
  if not op then return nil, err end
  local lk
  lk, err = drive(self.client, op)
  if not lk then return nil, err end
  local info = lk:info()
  return setmetatable({
    lock = lk, client = self.client, skew = o.max_clock_skew_ms,
    owner = info.owner, rvn = info.rvn, fence = info.fence,
    lease_ms = info.lease_ms, expires_at = info.expires_at,
  }, handle_mt)
end

local function refresh(h)
  local info = h.lock:info()
  h.rvn, h.lease_ms, h.expires_at = info.rvn, info.lease_ms, info.expires_at
end

-- One renewal through the machine (lease_ms nil: the current length).
local function renew(h, lease_ms)
  local op, err = lock_op("renew", h.lock, lease_ms)
  local ok
  if op then ok, err = drive(h.client, op) end
  refresh(h)
  return ok, err
end

-- The lease is the item's, not ours, once someone else holds it or it is
-- gone: renewing again cannot bring it back.
local function final(err)
  return err.code == "lost" or err.code == "not_owner"
end

local function check_held(h, what)
  if h.released then
    error("ddbkit.lock: " .. what .. " of a lock handle that was released", 3)
  end
  if h.keeper then
    error("ddbkit.lock: " .. what .. " while a keeper renews the lock (stop it first)", 3)
  end
end

--- handle:renew(lease_ms?) -> true | nil, err ("lost" / "not_owner")
function handle:renew(lease_ms)
  check_held(self, "renew")
  if lease_ms ~= nil and (type(lease_ms) ~= "number" or lease_ms < 1 or lease_ms ~= floor(lease_ms)) then
    error("ddbkit.lock: renew's lease_ms must be an integer >= 1", 2)
  end
  return renew(self, lease_ms)
end

--- handle:release() -> true | nil, err ("not_owner")
function handle:release()
  check_held(self, "release")
  local op, err = lock_op("release", self.lock)
  local ok
  if op then ok, err = drive(self.client, op) end
  if ok or (err and err.code == "not_owner") then self.released = true end
  return ok, err
end

--- handle:valid_ms() -> how long the lease is safely ours (0 when not held)
function handle:valid_ms()
  if self.keeper then error("ddbkit.lock: valid_ms while a keeper renews the lock (stop it first)", 2) end
  return self.lock:valid_ms()
end

--- handle:held() -> whether this handle still holds its lease, as far as it knows
function handle:held()
  if self.keeper then return true end  -- as far as it knows: the keeper reports at stop()
  return self.lock:info().held
end

--- handle:info() -> { owner, rvn, fence, expires_at, lease_ms, held } as the engine has it now
function handle:info()
  check_held(self, "info")
  return self.lock:info()
end

-- While a renewal of a task keeper is in flight, stop() checks back this
-- often for it to end.
local STOP_POLL_MS = 5

-- A keeper as a task of the runtime (runtime.spawn): it sleeps a period,
-- renews through the machine, and so on, on a grid of the monotonic clock
-- (beats a slow renewal overran are skipped, not fired back to back), until
-- stopped or the lease is lost. Reports like the engine's keeper thread.
local function task_keeper(h, runtime, period_ms)
  local mono, sleep = runtime.mono_ms, runtime.sleep
  local st = { renewing = false, stopping = false, err = nil }
  local task = runtime.spawn(function()
    local due = mono() + period_ms
    while true do
      local wait = due - mono()
      if wait > 0 then sleep(wait) end
      if st.stopping then return end
      st.renewing = true
      local ok, err = renew(h, nil)
      st.renewing = false
      if ok then
        st.err = nil   -- a later success makes up for a transient failure
      else
        st.err = err
        if final(err) then return end
      end
      if st.stopping then return end
      local now = mono()
      repeat due = due + period_ms until due > now
    end
  end)
  h.keeper = st
  local stopped
  return {
    stop = function()
      if stopped then return stopped[1], stopped[2] end
      st.stopping = true
      -- A renewal in flight is let finish (as the engine's keeper lets it),
      -- so the handle is left with the record version the item has.
      while st.renewing and not task:done() do sleep(STOP_POLL_MS) end
      local ok, err = true, nil
      if task:done() then
        local fine, raised = task:result()
        if fine == false then   -- the task raised: no renewal can be vouched for
          err = type(raised) == "table" and raised
            or setmetatable({ code = "KeeperFailed", message = tostring(raised) }, core.error_mt)
        end
      else
        task:cancel()
      end
      err = err or st.err
      if err then ok = nil end
      h.keeper = nil
      refresh(h)
      stopped = { ok, err }
      return ok, err
    end,
  }
end

--- handle:keep(period_ms) -> keeper: renews the lease every period_ms while
-- a slow piece of work runs: in the blocking runtime on an engine thread with
-- its own connection (runtime.keep_lease), in the others as a task of the
-- runtime (runtime.spawn). period_ms must be shorter than the lease (a third
-- of it leaves room for a retry). keeper:stop() -> true | nil, err: the last
-- renewal's failure ("lost", "not_owner" end the keeping; a transient one
-- only matters if no later renewal succeeded: check valid_ms()). A renewal
-- in flight when stop() is called is let finish; on the engine thread only
-- its attempt on the wire is (its retries and read-back are abandoned, and
-- stop answers nil, "Cancelled": see ddbk_lock_keep_stop). The engine
-- thread's requests count in client:stats() once stopped. Until stop, the
-- handle's other methods raise.
function handle:keep(period_ms)
  check_held(self, "keep")
  if type(period_ms) ~= "number" or period_ms < 1 or period_ms ~= floor(period_ms) then
    error("ddbkit.lock: keep's period_ms must be an integer >= 1", 2)
  end
  -- A beat at or past the lease renews a lease that already ran out.
  local lease_ms = self.lock:info().lease_ms
  if period_ms >= lease_ms then
    error(("ddbkit.lock: keep's period_ms (%d) must be shorter than the lease (%d ms)")
      :format(period_ms, lease_ms), 2)
  end
  local runtime = self.client.runtime
  local keep_lease = runtime.keep_lease
  if not keep_lease then
    if runtime.spawn then return task_keeper(self, runtime, period_ms) end
    error("ddbkit.lock: this runtime cannot keep a lease (it has neither keep_lease nor spawn)", 2)
  end
  local k, err = keep_lease(self.client.core, self.lock, period_ms)
  local h = self
  local stopped
  if k then
    self.keeper = k
  end
  return {
    stop = function()
      if stopped then return stopped[1], stopped[2] end
      local ok, serr = true, nil
      if k then ok, serr = k:stop() else ok, serr = nil, err end
      h.keeper = nil
      refresh(h)
      stopped = { ok, serr }
      return ok, serr
    end,
  }
end

--- handle:owner_condition(opts?) -> the condition that this handle's lease
-- is still the item's current one, for a write of the caller's own on the
-- lock item (a write that also ends the lease, say):
--   { ConditionExpression, ExpressionAttributeNames, ExpressionAttributeValues,
--     set_released = "#ddbkit_x = :ddbkit_r",     -- for the SET clause
--     remove_owner = "#ddbkit_o, #ddbkit_r",      -- for the REMOVE clause
--     rvn = the record version }
-- A write that ends the lease with both clauses is read by waiters as a
-- release; call mark_released() once it succeeded. With opts.free,
-- set_released also marks the item released (releasedAt) and sets its
-- expiresAt to a second already past, as handle:release() does: the next
-- acquire (ddbkit's or the Node adapter's) takes it at once, and DynamoDB's
-- TTL deletes it. Without, the item stays the caller's to date (a record
-- that ends the lease keeps its own expiresAt and is not free).
function handle.owner_condition(self, opts)
  check_held(self, "owner_condition")
  local info = self.lock:info()
  local cond = {
    ConditionExpression = "#ddbkit_o = :ddbkit_o AND #ddbkit_r = :ddbkit_r",
    ExpressionAttributeNames = { ["#ddbkit_o"] = "lockOwner", ["#ddbkit_r"] = "lockRvn",
                                 ["#ddbkit_x"] = "releasedRvn" },
    ExpressionAttributeValues = { [":ddbkit_o"] = info.owner, [":ddbkit_r"] = info.rvn },
    set_released = "#ddbkit_x = :ddbkit_r",
    remove_owner = "#ddbkit_o, #ddbkit_r",
    rvn = info.rvn,
  }
  if opts ~= nil and type(opts) ~= "table" then
    error("ddbkit.lock: owner_condition takes nil or an options table", 2)
  end
  if opts and opts.free then
    -- engine/lock.c, released_expires_at: past for every clock within the
    -- skew margin, recent enough for TTL.
    local now = floor(core.now_ms())
    local names, values = cond.ExpressionAttributeNames, cond.ExpressionAttributeValues
    names["#ddbkit_ra"], names["#ddbkit_e"] = "releasedAt", "expiresAt"
    values[":ddbkit_ra"] = now
    values[":ddbkit_e"] = floor((now - self.skew) / 1000) - 1
    cond.set_released = "#ddbkit_x = :ddbkit_r, #ddbkit_ra = :ddbkit_ra, #ddbkit_e = :ddbkit_e"
  end
  return cond
end

--- handle:mark_released(): the caller's own write (see owner_condition)
-- ended the lease, or showed it was lost; the handle stops claiming it.
function handle.mark_released(self)
  check_held(self, "mark_released")
  core.lock_mark_released(self.lock)
  self.released = true
end

--- handle:fence_condition(attr?) -> the condition a write on a guarded item
-- adds to reject holders older than this one: the item's `attr` (default
-- "fence") is absent or not above our token (equal: our own earlier write,
-- so a holder may write more than once per lease). The write should also SET
-- attr = our token, so later writers are held to it.
function handle:fence_condition(attr)
  attr = attr or "fence"
  return {
    ConditionExpression = "attribute_not_exists(#ddbkit_fence) OR #ddbkit_fence <= :ddbkit_fence",
    ExpressionAttributeNames = { ["#ddbkit_fence"] = attr },
    ExpressionAttributeValues = { [":ddbkit_fence"] = self.fence },
  }
end

return _M
