-- ddbkit.repl.inspect: the REPL's views of ddbkit's own records, which no
-- DynamoDB tool understands. Each reads the items with a few strongly
-- consistent requests and prints them as rows, or with --output json as
-- one JSON object on one line (for scripts: `echo ':lock job --output json'
-- | ddbkit`).
--
--   :lock NAME [--watch MS]   the lock locks(NAME) (pk = sk = "LOCK#"..NAME
--                             on the store table): 1 GetItem, then one per
--                             100 ms while it watches for a renewal
--   :limit RESOURCE           rate_limit's RESOURCE, both layouts: Query of
--                             the log, Query of the slots, GetItem of the
--                             native item, GetItem of the cooldown (4)
--   :idem KEY                 the idempotency table's record and lock items
--                             of cache key KEY (2 GetItems)
--   :cache HASH               cache's entry HASH (GetItem) and its tags (a
--                             Query of gsi1)
--
-- Item layouts: engine/lock.c (locks), compat.md A.1 and A.3 and
-- ddbkit/ratelimit/native.lua (store table), compat.md B and
-- ddbkit/idempotency/record.lua (idempotency table). Every string read
-- from an item is printed through pretty's escaping.
local core = require "ddbkit.core"
local pretty = require "ddbkit.pretty"
local store = require "ddbkit.store"
local jsjson = require "ddbkit.jsjson"

local type, tonumber, tostring, ipairs, pairs, floor, max, min =
      type, tonumber, tostring, ipairs, pairs, math.floor, math.max, math.min
local format, concat, sort = string.format, table.concat, table.sort
local escape = pretty.escape

local _M = { _VERSION = "0.1.0" }

local WATCH_MS = 2000     -- :lock's default watch for a renewal
local POLL_MS = 100
local MAX_WATCH_MS = 600000

-- Arguments ----------------------------------------------------------------------

-- The words of args: runs of non-blanks, or "double quoted" (a name with
-- blanks; \" and \\ inside), or nil and what is wrong.
local function split(args)
  local out, i, n = {}, 1, #args
  while i <= n do
    local c = args:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == '"' then
      local buf, j = {}, i + 1
      while true do
        local d = args:sub(j, j)
        if d == "" then return nil, "unterminated quote in: " .. args end
        if d == '"' then break end
        if d == "\\" then
          j = j + 1
          d = args:sub(j, j)
        end
        buf[#buf + 1] = d
        j = j + 1
      end
      out[#out + 1] = concat(buf)
      i = j + 1
    else
      local e = args:find("%s", i) or n + 1
      out[#out + 1] = args:sub(i, e - 1)
      i = e
    end
  end
  return out
end

local USAGE = {
  lock = ":lock NAME [--watch MS] [--output json]",
  limit = ":limit RESOURCE [--output json]",
  idem = ":idem KEY [--output json]",
  cache = ":cache HASH [--output json]",
}

-- { arg = the one positional word, json = bool, watch = ms } or nil, err.
local function parse(name, args)
  local words, err = split(args)
  if not words then return nil, err end
  local o = {}
  local i = 1
  while i <= #words do
    local w = words[i]
    local flag, value = w:match("^(%-%-?[%a]+)=(.*)$")
    flag = flag or w
    if flag == "--output" or flag == "-o" then
      value = value or words[i + 1]
      if not value then return nil, "--output needs a value (json); usage: " .. USAGE[name] end
      if value ~= "json" then return nil, "--output must be json, not '" .. value .. "'" end
      o.json = true
      i = i + (w:find("=", 1, true) and 1 or 2)
    elseif flag == "--watch" and name == "lock" then
      value = value or words[i + 1]
      local ms = math.tointeger(tonumber(value))
      if not ms or ms < 0 or ms > MAX_WATCH_MS then
        return nil, "--watch must be milliseconds (0-" .. MAX_WATCH_MS .. "), not '"
                    .. tostring(value) .. "'"
      end
      o.watch = ms
      i = i + (w:find("=", 1, true) and 1 or 2)
    elseif w:match("^%-%-") then
      return nil, "unknown option " .. w .. "; usage: " .. USAGE[name]
    elseif o.arg then
      return nil, "unexpected argument '" .. w .. "'; usage: " .. USAGE[name]
    else
      o.arg = w
      i = i + 1
    end
  end
  if not o.arg or o.arg == "" then return nil, "usage: " .. USAGE[name] end
  return o
end

-- Text ---------------------------------------------------------------------------

local function seconds(ms)
  ms = math.abs(ms)
  if ms < 1000 then return format("%d ms", floor(ms + 0.5)) end
  if ms < 120000 then return format("%.1f s", ms / 1000) end
  if ms < 7200000 then return format("%.1f min", ms / 60000) end
  return format("%.1f h", ms / 3600000)
end

-- "in 2.7 s" / "3.1 s ago" for an epoch ms against now, with the UTC time.
local function when(ms, now)
  if type(ms) ~= "number" then return tostring(ms) end
  local rel = ms >= now and "in " .. seconds(ms - now) or seconds(now - ms) .. " ago"
  -- An item's date may be anything: os.date refuses what time_t cannot hold.
  local ok, date = pcall(os.date, "!%Y-%m-%dT%H:%M:%SZ", floor(ms / 1000))
  return rel .. " (" .. (ok and date or "not a date") .. ")"
end

-- Rows { label, text } as aligned lines.
local function rows_text(rows)
  local w = 0
  for _, r in ipairs(rows) do w = max(w, #r[1]) end
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = r[1] .. (" "):rep(w - #r[1] + 2) .. r[2]
  end
  return concat(out, "\n") .. "\n"
end

-- A value as one escaped line of Lua (items' strings come from anyone).
local function value_text(v)
  if type(v) == "string" then return escape(v) end
  return (pretty.format(v):gsub("\n%s*", " "))
end

local function number(v) return tonumber(v) end

-- Reads ---------------------------------------------------------------------------

local function get(s, tbl, key)
  local res, err = s.client:get_item{ TableName = tbl, Key = key, ConsistentRead = true }
  if not res then return nil, err end
  return res.Item or false
end

local function query_all(s, params)
  params.ConsistentRead = params.IndexName == nil or nil
  return s.client:query_all(params)
end

-- The REPL's store (a global that ddbkit.cli put there), or nil, err.
local function store_of(field)
  local v = rawget(_G, field)
  if type(v) ~= "table" or type(v.policy) ~= "table" then
    return nil, "the stores are not loaded (fix the policy script and :reload)"
  end
  return v
end

-- :lock ---------------------------------------------------------------------------

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

-- :limit --------------------------------------------------------------------------

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

-- :idem ---------------------------------------------------------------------------

local function idem_view(s, o)
  local idem = rawget(_G, "idem")
  if type(idem) ~= "table" or type(idem.table_name) ~= "string" then
    return nil, "the idempotency store (idem) is not loaded"
  end
  local record = require "ddbkit.idempotency.record"
  local tbl = idem.table_name
  local item, err = get(s, tbl, { cacheKey = o.arg })
  if item == nil then return nil, err end
  local lock
  lock, err = get(s, tbl, { cacheKey = record.LOCK_PREFIX .. o.arg })
  if lock == nil then return nil, err end
  local now = idem.runtime.now_ms()
  local v = { key = o.arg, table = tbl }
  local rstate = record.classify(idem, item or nil, now)
  local lstate = record.classify(idem, lock or nil, now)
  -- The lease is on the record item (fast mode) or on the lock item (the
  -- Node layout, compat mode).
  local lease = (rstate == "held" and item) or (lstate == "held" and lock) or nil
  if rstate == "record" then
    v.state = "completed"
  elseif lease then
    v.state = "in progress"
  elseif rstate == "expired" or lstate == "expired" or lstate == "node_expired"
         or rstate == "node_expired" then
    v.state = "expired"
  elseif item or lock then
    v.state = "released"
  else
    v.state = "none"
  end
  if lease then
    v.owner = lease.lockOwner or "a Node adapter (no owner token)"
    v.fence = number(lease.fence)
    local e = number(lease.expiresAt)
    v.lease_expires_at_ms = e and e * 1000
    v.lock_item = lease == lock and record.LOCK_PREFIX .. o.arg or o.arg
  end
  if item and item.response ~= nil then
    v.created_at_ms = number(item.createdAt)
    local created, ttl = number(item.createdAt), number(item.ttl)
    v.expires_at_ms = created and ttl and created + ttl
    v.status_code = number(item.statusCode)
    v.headers = item.headers
    local r = item.response
    if type(r) == "table" and r["@@idempotency/error"] == true then
      v.error = { name = r.name, message = r.message }
    else
      v.response = r
    end
  end
  return v
end

local function idem_text(v, now)
  local rows = { { "key", escape(v.key) .. "  (table " .. escape(v.table) .. ")" },
                 { "state", v.state == "none" and "none (KEY is the cache key as stored: "
                   .. "idem:cache_key(key, ctx) gives it)" or v.state } }
  if v.owner then rows[#rows + 1] = { "owner", value_text(v.owner) } end
  if v.fence then rows[#rows + 1] = { "fence", value_text(v.fence) } end
  if v.lease_expires_at_ms then
    rows[#rows + 1] = { "lease ends", when(v.lease_expires_at_ms, now) }
  end
  if v.created_at_ms then rows[#rows + 1] = { "stored", when(v.created_at_ms, now) } end
  if v.expires_at_ms then rows[#rows + 1] = { "expires", when(v.expires_at_ms, now) } end
  if v.status_code then rows[#rows + 1] = { "status", value_text(v.status_code) } end
  if v.headers then rows[#rows + 1] = { "headers", value_text(v.headers) } end
  if v.error then
    rows[#rows + 1] = { "error", value_text(v.error.name) .. ": " .. value_text(v.error.message) }
  end
  local out = rows_text(rows)
  if v.response ~= nil then out = out .. "response\n" .. pretty.format(v.response) .. "\n" end
  return out
end

-- :cache --------------------------------------------------------------------------

local function cache_view(s, o)
  local c, serr = store_of("cache")
  if not c then return nil, serr end
  local bad = store.check_part("hash", o.arg)
  if bad then return nil, bad end
  local tbl, terr = c.policy.table("cache", c.table_name)
  if not tbl then return nil, terr end
  local cp, perr = c.policy.prefix("cache")
  if not cp then return nil, perr end
  local tp, tperr = c.policy.prefix("tag")
  if not tp then return nil, tperr end
  local pk = cp .. o.arg
  local item, err = get(s, tbl, { pk = pk, sk = pk })
  if item == nil then return nil, err end
  local tags
  tags, err = query_all(s, { TableName = tbl, IndexName = "gsi1",
    KeyConditionExpression = "gsi1pk = :k", ProjectionExpression = "pk, sk, gsi1sk",
    ExpressionAttributeValues = { [":k"] = pk } })
  if not tags then return nil, err end
  local now = c.runtime.now_ms()
  local v = { hash = o.arg, table = tbl, key = pk, found = item ~= false }
  if item then
    local ttl = number(item.ttl)
    v.ttl = ttl
    v.expires_at_ms = ttl and ttl > 0 and ttl * 1000 or nil
    v.expired = ttl ~= nil and ttl > 0 and now >= ttl * 1000
    v.created_at_ms = number(item.createdAt)
    if item.value == store.UNDEFINED then
      v.undefined = true
    elseif type(item.value) == "string" then
      local ok, value = store.json_decode(item.value)
      if ok then v.value = value else v.value_text, v.undecodable = item.value, true end
      v.size_bytes = #item.value
    end
  end
  local list = {}
  for _, t in ipairs(tags) do
    if t.sk == pk and type(t.pk) == "string" and t.pk:sub(1, #tp) == tp then
      list[#list + 1] = t.pk:sub(#tp + 1)
    end
  end
  sort(list)
  v.tags = core.array(list)
  return v
end

local function cache_text(v, now)
  local rows = { { "hash", escape(v.hash) .. "  (table " .. escape(v.table) .. ", pk = sk = "
                   .. escape(v.key) .. ")" } }
  if not v.found then
    rows[#rows + 1] = { "entry", "none" }
  else
    local state = v.expired and "expired (get treats it as missing)" or "live"
    rows[#rows + 1] = { "entry", state .. (v.size_bytes and ", " .. v.size_bytes .. " bytes of JSON" or "") }
    rows[#rows + 1] = { "expires", v.expires_at_ms and when(v.expires_at_ms, now)
                        or "never (ttl 0)" }
    if v.created_at_ms then rows[#rows + 1] = { "stored", when(v.created_at_ms, now) } end
  end
  local tags = {}
  for i, t in ipairs(v.tags) do tags[i] = escape(t) end
  rows[#rows + 1] = { "tags", #tags > 0 and concat(tags, ", ") or "none (tags a Node service "
                      .. "wrote are found only by a Scan)" }
  local out = rows_text(rows)
  if v.undefined then
    out = out .. "value\nundefined (__UNDEFINED__)\n"
  elseif v.undecodable then
    out = out .. "value (not JSON: get deletes it)\n" .. pretty.quote(v.value_text) .. "\n"
  elseif v.found then
    out = out .. "value\n" .. pretty.format(v.value) .. "\n"
  end
  return out
end

-- Dispatch ------------------------------------------------------------------------

local VIEWS = {
  lock = { lock_view, lock_text }, limit = { limit_view, limit_text },
  idem = { idem_view, idem_text }, cache = { cache_view, cache_text },
}

--- inspect.view(s, name, args) -> the view (a table) and the options |
-- nil, err. s: the REPL's state (client, tables).
function _M.view(s, name, args)
  local o, err = parse(name, args)
  if not o then return nil, err end
  local v, verr = VIEWS[name][1](s, o)
  if v == nil then return nil, verr end
  return v, o
end

--- inspect.run(s, name, args) -> the text to print | nil, err
function _M.run(s, name, args)
  local v, o = _M.view(s, name, args)
  if v == nil then return nil, o end
  if o.json then
    local text, err = jsjson.stringify(v)
    if not text then return nil, "the view has no JSON form: " .. tostring(err) end
    -- JSON.stringify escapes C0 controls but leaves DEL and the C1
    -- controls (U+0080-U+009F, CSI among them) as they are: escaped here,
    -- as the same JSON, so that no stored string drives the terminal.
    text = text:gsub("\127", "\\u007f"):gsub("\194([\128-\159])", function(c)
      return format("\\u%04x", c:byte())
    end)
    return text .. "\n"
  end
  return VIEWS[name][2](v, s.client.runtime.now_ms())
end

return _M
