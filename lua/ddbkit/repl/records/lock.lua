-- ddbkit.repl.records.lock: `:lock NAME [--watch MS]`, the lock
-- locks(NAME) (pk = sk = "LOCK#"..NAME on the store table) as engine/lock.c
-- lays it out: state, holder, fence, lease, expiry, and whether the holder
-- is alive by its renewals (the record version, watched). 1 GetItem, then
-- one per 100 ms while it watches.
local core = require "ddbkit.core"
local escape = require("ddbkit.pretty").escape
local R = require "ddbkit.repl.records"

local floor, max, min = math.floor, math.max, math.min
local seconds, when, rows_text, value_text, number, get =
      R.seconds, R.when, R.rows_text, R.value_text, R.number, R.get

local _M = { _VERSION = "0.1.0" }

local WATCH_MS = 2000     -- the default watch for a renewal
local POLL_MS = 100

local function lock_state(item, now)
  if not item then return "free" end
  local exp = (number(item.expiresAt) or 0) * 1000
  if item.lockOwner ~= nil then return exp > now and "held" or "expired" end
  if item.releasedAt ~= nil or item.releasedRvn ~= nil then return "released" end
  return exp > now and "held" or "expired"   -- the Node adapter's layout: no owner
end

local function lock_view(s, o)
  local tbl = s.tables and s.tables.store or "http-client-toolkit"
  local pk = "LOCK#" .. o.arg
  local key = { pk = pk, sk = pk }
  local item, err = get(s, tbl, key)
  if item == nil then return nil, err end
  local runtime = s.client.runtime
  local now = runtime.now_ms()
  local v = { lock = o.arg, table = tbl, key = pk, state = lock_state(item, now) }
  if item then
    v.holder = item.lockOwner
    v.fence = number(item.fence)
    v.record_version = item.lockRvn
    v.lease_ms = number(item.leaseMs)
    v.acquired_at_ms = number(item.acquiredAt)
    v.released_at_ms = number(item.releasedAt)
    local exp = number(item.expiresAt)
    v.expires_at_ms = exp and exp * 1000
    v.layout = (item.lockOwner or item.releasedRvn or item.releasedAt) and "ddbkit" or "node"
  end
  if v.state ~= "held" then
    if v.state == "expired" then
      v.alive, v.alive_note = false, "its lease ran out without a renewal"
    end
    return v
  end
  if v.layout == "node" then
    v.alive_note = "a Node adapter lock: its holder never renews it"
    return v
  end
  -- A holder that is alive renews before its lease ends, and every renewal
  -- writes a new record version: watch the version, up to the watch or the
  -- lease's end, whichever comes first.
  local watch = o.watch or WATCH_MS
  local t0 = runtime.mono_ms()
  local limit = min(watch, max(0, v.expires_at_ms - now) + 1000)
  if not o.json and s.le and s.le.isatty(1) and limit > 0 then   -- a person waits: say why
    io.stdout:write("watching for a renewal, up to ", seconds(limit), " (Ctrl-C stops)\n")
    io.stdout:flush()
  end
  while runtime.mono_ms() - t0 < limit do
    runtime.sleep(POLL_MS)
    local again, rerr = get(s, tbl, key)
    if again == nil then return nil, rerr end
    local t = floor(runtime.mono_ms() - t0)
    if not again or again.lockOwner ~= item.lockOwner then
      v.alive = false
      v.alive_note = "the lease ended after " .. seconds(t) .. " (released or taken over)"
      return v
    end
    if again.lockRvn ~= item.lockRvn then
      v.alive, v.watched_ms = true, t
      v.alive_note = "renewed " .. seconds(t) .. " into the watch"
      local e = number(again.expiresAt)
      v.expires_at_ms, v.record_version = e and e * 1000, again.lockRvn
      return v
    end
    if lock_state(again, runtime.now_ms()) == "expired" then
      v.alive, v.state, v.watched_ms = false, "expired", t
      v.alive_note = "its lease ran out while watched: the holder stopped renewing"
      return v
    end
  end
  v.watched_ms = floor(runtime.mono_ms() - t0)
  v.alive = core.null   -- unknown (JSON null)
  v.alive_note = "no renewal seen in " .. seconds(v.watched_ms)
                 .. " (a holder renews before its lease ends; watch longer with --watch MS)"
  return v
end

local function lock_text(v, now)
  local rows = { { "lock", escape(v.lock) .. "  (table " .. escape(v.table) .. ", pk = sk = "
                   .. escape(v.key) .. ")" },
                 { "state", v.state .. (v.layout == "node" and " (Node adapter layout)" or "") } }
  if v.holder then rows[#rows + 1] = { "holder", value_text(v.holder) } end
  if v.fence then rows[#rows + 1] = { "fence", value_text(v.fence) } end
  if v.lease_ms then rows[#rows + 1] = { "lease", value_text(v.lease_ms) .. " ms" } end
  if v.acquired_at_ms then rows[#rows + 1] = { "acquired", when(v.acquired_at_ms, now) } end
  if v.released_at_ms then rows[#rows + 1] = { "released", when(v.released_at_ms, now) } end
  if v.expires_at_ms and v.state ~= "released" then
    rows[#rows + 1] = { "expires", when(v.expires_at_ms, now) }
  end
  if v.alive ~= nil or v.alive_note then
    local head = v.alive == true and "yes" or v.alive == false and "no" or "unknown"
    rows[#rows + 1] = { "alive", head .. (v.alive_note and ": " .. v.alive_note or "") }
  end
  return rows_text(rows)
end

_M.view, _M.text = lock_view, lock_text

return _M
