-- ddbkit.repl.records.limit: `:limit RESOURCE`, rate_limit's RESOURCE in
-- both layouts: the Node package's (compat.md A.3: log and slots) and the
-- native one (ddbkit/ratelimit/native.lua: one item of lease buckets), and
-- its cooldown. A Query of the log, a Query of the slots, a GetItem of the
-- native item and one of the cooldown: 4 requests (more pages only when
-- the window holds more than 1 MB of log).
local store = require "ddbkit.store"
local escape = require("ddbkit.pretty").escape
local R = require "ddbkit.repl.records"

local type, tostring, ipairs, pairs, next, floor, max, min =
      type, tostring, ipairs, pairs, next, math.floor, math.max, math.min
local format, concat, sort = string.format, table.concat, table.sort
local seconds, when, rows_text, value_text, number, get, query_all, store_of =
      R.seconds, R.when, R.rows_text, R.value_text, R.number, R.get, R.query_all, R.store_of

local _M = { _VERSION = "0.1.0" }

-- The native item's buckets "E:s,E:s" -> { { end_ms, grants } }.
local function buckets(b)
  local out = {}
  if type(b) ~= "string" then return out end
  for e, n in b:gmatch("(%d+):(%d+)") do out[#out + 1] = { tonumber(e), tonumber(n) } end
  return out
end

local function limit_view(s, o)
  local rl, serr = store_of("rate_limit")
  if not rl then return nil, serr end
  local ratelimit = require "ddbkit.ratelimit"
  local bad = store.check_part("resource", o.arg)
  if bad then return nil, bad end
  local cfg = rl:get_resource_config(o.arg)
  local tbl, terr = ratelimit.table_of(rl)
  if not tbl then return nil, terr end
  local log_pk, slot_pk = ratelimit.keys(rl, o.arg)
  if not log_pk then return nil, slot_pk end
  local native_pk, nerr = store.key(rl.policy, "ratelimit_native", o.arg)
  if not native_pk then return nil, nerr end
  local cool_pk, cerr = store.key(rl.policy, "cooldown", o.arg)
  if not cool_pk then return nil, cerr end

  local now = floor(rl.runtime.now_ms())
  local W, L = cfg.window_ms, cfg.limit
  local from = now - W
  local v = { resource = o.arg, table = tbl, limit = L, window_ms = W }

  -- The Node layout: the log (one item per grant) and the slots.
  local logs, err = query_all(s, { TableName = tbl,
    KeyConditionExpression = "pk = :pk AND sk >= :from",
    ProjectionExpression = "#t, priority", ExpressionAttributeNames = { ["#t"] = "timestamp" },
    ExpressionAttributeValues = { [":pk"] = log_pk, [":from"] = "TS#" .. format("%.0f", from) } })
  if not logs then return nil, err end
  local slots
  slots, err = query_all(s, { TableName = tbl, KeyConditionExpression = "pk = :pk",
    ProjectionExpression = "sk, #t", ExpressionAttributeNames = { ["#t"] = "timestamp" },
    ExpressionAttributeValues = { [":pk"] = slot_pk } })
  if not slots then return nil, err end
  local native
  native, err = get(s, tbl, { pk = native_pk, sk = native_pk })
  if native == nil then return nil, err end
  local cool
  cool, err = get(s, tbl, { pk = cool_pk, sk = cool_pk })
  if cool == nil then return nil, err end

  local layouts = {}
  if #logs > 0 or #slots > 0 then
    layouts[#layouts + 1] = "node"
    local by_priority, grants = {}, 0
    for _, it in ipairs(logs) do
      local ts = number(it.timestamp)
      if ts and ts > from then
        grants = grants + 1
        if type(it.priority) == "string" then
          by_priority[it.priority] = (by_priority[it.priority] or 0) + 1
        end
      end
    end
    local busy, oldest = 0, nil
    for _, it in ipairs(slots) do
      local ts = number(it.timestamp)
      if ts and ts >= from then
        busy = busy + 1
        oldest = oldest and min(oldest, ts) or ts
      end
    end
    v.node = { log_pk = log_pk, slot_pk = slot_pk, grants_in_window = grants,
               remaining = max(0, L - grants), slots_busy = busy,
               next_free_in_ms = (busy < L) and 0 or max(0, oldest + W - now) }
    if next(by_priority) then v.node.grants_by_priority = by_priority end
  end
  if native then
    layouts[#layouts + 1] = "native"
    local leased, first_end = 0, nil
    for _, b in ipairs(buckets(native.b)) do
      if b[1] > from then   -- a bucket counts until its end + window_ms
        leased = leased + b[2]
        first_end = first_end and min(first_end, b[1]) or b[1]
      end
    end
    v.native = { pk = native_pk, version = number(native.v), leased_in_window = leased,
                 remaining = max(0, L - leased),
                 next_free_in_ms = (leased < L) and 0 or max(0, first_end + W - now) }
  end
  v.layout = #layouts > 0 and concat(layouts, "+") or "none"
  if cool then
    local untl = number(cool.cooldownUntil)
    v.cooldown = { until_ms = untl, active = untl ~= nil and untl > now,
                   in_ms = untl and max(0, untl - now) }
  end
  return v
end

local function limit_text(v, now)
  local rows = {
    { "resource", escape(v.resource) .. "  (table " .. escape(v.table) .. ")" },
    { "config", format("limit %s per %s (rate_limit's config for it)", value_text(v.limit),
                       seconds(v.window_ms)) },
    { "layout", v.layout == "none" and "none (no grant recorded: the whole limit is free)"
                or v.layout },
  }
  local n = v.node
  if n then
    rows[#rows + 1] = { "grants", format("%d in the window (Node layout log)", n.grants_in_window) }
    if n.grants_by_priority then
      local parts = {}
      for p, c in pairs(n.grants_by_priority) do parts[#parts + 1] = escape(p) .. " " .. c end
      sort(parts)
      rows[#rows + 1] = { "by priority", concat(parts, ", ") }
    end
    rows[#rows + 1] = { "remaining", tostring(n.remaining) }
    rows[#rows + 1] = { "slots", format("%d of %d busy", n.slots_busy, v.limit) }
    rows[#rows + 1] = { "next free", n.next_free_in_ms == 0 and "now"
                        or "in " .. seconds(n.next_free_in_ms) }
  end
  local x = v.native
  if x then
    rows[#rows + 1] = { "native", format("%d leased in the window (version %s)", x.leased_in_window,
                                         tostring(x.version)) }
    rows[#rows + 1] = { "remaining", tostring(x.remaining) .. " (native)" }
    rows[#rows + 1] = { "next free", (x.next_free_in_ms == 0 and "now" or "in "
                        .. seconds(x.next_free_in_ms)) .. " (native)" }
  end
  local c = v.cooldown
  if c then
    rows[#rows + 1] = { "cooldown", c.active and "active, ends " .. when(c.until_ms, now)
                        or "passed, ended " .. (c.until_ms and when(c.until_ms, now) or "") }
  else
    rows[#rows + 1] = { "cooldown", "none" }
  end
  return rows_text(rows)
end

_M.view, _M.text = limit_view, limit_text

return _M
