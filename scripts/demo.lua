-- The ddbkit demo: every part of ddbkit against a local DynamoDB, one line
-- per step saying what was done and what came back.
--   lua5.4 scripts/demo.lua ENDPOINT [STORE_TABLE [IDEMPOTENCY_TABLE]]
-- Both tables must exist (scripts/setup_tables.lua creates them). The demo
-- can run again and again on the same tables.
--
-- Sections: 1 the client, 2 cache with tags, 3 dedupe across two processes,
-- 4 rate limit, 5 adaptive priorities, 6 a lock and its fencing token,
-- 7 an idempotent handler replayed.
local ddbkit = require "ddbkit"
local schema = require "ddbkit.schema"
local core = require "ddbkit.core"

local CREDENTIALS = { access_key_id = "ddbkitlocal", secret_access_key = "ddbkitlocal" }

local function new_client(endpoint)
  return assert(ddbkit.client{ endpoint = endpoint, region = "us-east-1", credentials = CREDENTIALS })
end

local function short(id) return tostring(id):sub(1, 8) end

-- Section 3's second process: `demo.lua --dedupe-joiner ENDPOINT TABLE HASH`.
-- It joins the job process A owns, says so on stdout, waits for the result
-- and reports it; process A relays these lines.
if arg[1] == "--dedupe-joiner" then
  local endpoint, tname, hash = arg[2], arg[3], arg[4]
  local client = new_client(endpoint)
  local dedupe = ddbkit.dedupe.new{ client = client, table_name = tname, poll_interval_ms = 100 }
  local job = assert(dedupe:register_or_join(hash))
  if job.is_owner then
    print("B: register_or_join -> OWNER (expected to join A's job)")
    dedupe:fail(hash)
    os.exit(1)
  end
  print(("B: register_or_join -> joined job %s, not the owner (%d request)")
        :format(short(job.job_id), client:stats().requests))
  io.stdout:flush()   -- A completes the job only once it has read this line
  client:reset_stats()
  local value, err = dedupe:wait_for(hash)
  if value == nil then
    print("B: wait_for -> nil " .. tostring(err))
    os.exit(1)
  end
  print(("B: wait_for -> report %s with %d rows, after %d polls (GetItem)")
        :format(value.report, value.rows, client:stats().requests))
  os.exit(0)
end

local endpoint = assert(arg[1], "usage: demo.lua ENDPOINT [STORE_TABLE [IDEMPOTENCY_TABLE]]")
local T = arg[2] or ddbkit.DEFAULT_TABLE_NAME
local IT = arg[3] or schema.IDEMPOTENCY_TABLE_NAME

local client = new_client(endpoint)

local function section(title) print(("\n== %s"):format(title)) end
local function step(fmt, ...) print("  " .. fmt:format(...)) end

-- "N requests (GetItem 1, ...)" for what the client sent since the last
-- call, then starts counting afresh.
local function requests()
  local s = client:stats()
  local ops = {}
  for op, o in pairs(s.operations) do
    if o.requests > 0 then ops[#ops + 1] = ("%s %d"):format(op, o.requests) end
  end
  table.sort(ops)
  client:reset_stats()
  local n = s.requests
  return ("%d request%s%s"):format(n, n == 1 and "" or "s",
    #ops > 0 and " (" .. table.concat(ops, ", ") .. ")" or "")
end

-- must("what", call(...)): the call's first result, or the error raised
-- with what failed (the call goes last so that its error comes along).
local function must(what, ok, err)
  if ok == nil then error(what .. ": " .. tostring(err), 2) end
  return ok
end

------------------------------------------------------------------------
section("1. The client: put, get, a failed conditional write, a paged query")
local player = {
  pk = "DEMO#player-7", sk = "PROFILE", name = "Ada", level = 42, ratio = 0.75, online = true,
  inventory = { "sword", "shield" }, badges = ddbkit.set("explorer", "first-blood"),
  gold = ddbkit.decimal("12345678901234567890.123456789"),
}
must("put_item", client:put_item{ TableName = T, Item = player })
step("put_item %s: name, level, a list, a string set, a 38-digit decimal -> ok", player.pk)

local got = must("get_item", client:get_item{ TableName = T, Key = { pk = player.pk, sk = "PROFILE" } }).Item
step("get_item -> name=%s level=%s (%s) inventory=%s gold=%s", got.name, got.level,
     math.type and math.type(got.level) or type(got.level), table.concat(got.inventory, "+"), tostring(got.gold))

local ok, err = client:put_item{
  TableName = T, Item = { pk = player.pk, sk = "PROFILE", name = "Impostor" },
  ConditionExpression = "attribute_not_exists(pk)",
  ReturnValuesOnConditionCheckFailure = "ALL_OLD",
}
step("put_item if attribute_not_exists(pk) -> %s, %s; err.item.name = %s (no extra read)",
     tostring(ok), err.code, tostring(err.item and err.item.name))

for i = 1, 12 do
  must("put_item", client:put_item{ TableName = T,
                                    Item = { pk = "DEMO#events", sk = ("EVENT#%02d"):format(i), n = i } })
end
step("put_item x12 -> events EVENT#01..EVENT#12 under DEMO#events")
local page_no = 0
for page, perr in client:query_pages{ TableName = T, Limit = 5,
    KeyConditionExpression = "pk = :p", ExpressionAttributeValues = { [":p"] = "DEMO#events" } } do
  if not page then error(tostring(perr)) end
  page_no = page_no + 1
  local first, last = page.Items[1], page.Items[#page.Items]
  step("query page %d (Limit 5) -> %d items, %s..%s%s", page_no, #page.Items,
       first and first.sk or "-", last and last.sk or "-",
       page.LastEvaluatedKey and ", more to follow" or ", last page")
end
local s = client:stats()
step("client:stats() -> %d requests, %d retries, %d failed (the conditional put), p50 %.1f ms",
     s.requests, s.retries, s.errors, s.latency_us.p50 / 1000)
client:reset_stats()

------------------------------------------------------------------------
section("2. Cache with tags")
local cache = ddbkit.cache.new{ client = client, table_name = T }
local k1 = ddbkit.hash_request("/users", { page = 1 })
local k2 = ddbkit.hash_request("/users", { page = 2 })
must("set_with_tags", cache:set_with_tags(k1, { users = { "ada", "bob" } }, 300, { "users" }))
must("set_with_tags", cache:set_with_tags(k2, { users = { "eve" } }, 300, { "users" }))
step("set_with_tags /users?page=1 and ?page=2 (ttl 300 s, tag \"users\") -> ok, %s", requests())
local v = cache:get(k1)
step("get /users?page=1 -> hit: users = %s, %s", v and table.concat(v.users, ", ") or "nil", requests())
local n = must("invalidate_by_tag", cache:invalidate_by_tag("users"))
step("invalidate_by_tag(\"users\") -> %d entries invalidated, %s", n, requests())
local v1, gerr = cache:get(k1)
step("get /users?page=1 -> %s, %s", (v1 == nil and not gerr) and "miss (nil)" or "still there?!",
     requests())
cache:close()

------------------------------------------------------------------------
-- Dedupe across two processes (the choice for this section): process A is
-- this demo, process B a second run of this same file with
-- --dedupe-joiner, started with the same interpreter and package paths.
-- Both share only the table, as two servers would.
section("3. Dedupe: process A owns the job, process B joins and waits")
local dedupe = ddbkit.dedupe.new{ client = client, table_name = T }
-- a fresh job per run (a completed job may be registered again anyway)
local job_hash = ddbkit.hash_request("/reports/daily", { run = core.uuid() })
local job = must("register_or_join", dedupe:register_or_join(job_hash))
assert(job.is_owner, "process A should own a fresh job")
step("A: register_or_join -> owner of job %s, %s", short(job.job_id), requests())

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local lowest = 0
while arg[lowest - 1] do lowest = lowest - 1 end
local interpreter = {}
local shown = {}
for i = lowest, -1 do
  interpreter[#interpreter + 1] = shell_quote(arg[i])
  shown[#shown + 1] = arg[i]
end
local paths = ("LUA_PATH=%s LUA_PATH_5_4=%s LUA_CPATH=%s LUA_CPATH_5_4=%s"):format(
  shell_quote(package.path), shell_quote(package.path),
  shell_quote(package.cpath), shell_quote(package.cpath))
local cmd = ("%s %s %s --dedupe-joiner %s %s %s"):format(paths, table.concat(interpreter, " "),
  shell_quote(arg[0]), shell_quote(endpoint), shell_quote(T), shell_quote(job_hash))
local child = assert(io.popen(cmd, "r"))
step("A: started process B: %s %s --dedupe-joiner ...", table.concat(shown, " "), arg[0])
local line = child:read("l")
if not line or not line:find("joined", 1, true) then
  dedupe:fail(job_hash)
  error("process B did not join: " .. tostring(line))
end
step("%s", line)
client.runtime.sleep(300)   -- the "work" B is waiting for
must("complete", dedupe:complete(job_hash, { report = "daily", rows = 3 }))
step("A: did the work (300 ms), complete(job, { report = \"daily\", rows = 3 }) -> true, %s",
     requests())
line = child:read("l")
step("%s", tostring(line))
local closed, how, code = child:close()
if not closed then error(("process B failed (%s %s)"):format(tostring(how), tostring(code))) end
step("A: process B exited with status 0")
dedupe:close()

------------------------------------------------------------------------
section("4. Rate limit: 5 per 10 s window for \"demo-api\", until refused")
local rl = ddbkit.ratelimit.new{ client = client, table_name = T,
  resource_configs = { ["demo-api"] = { limit = 5, window_ms = 10000 } } }
must("reset", rl:reset("demo-api"))
requests()
step("reset(\"demo-api\") -> a fresh window")
for i = 1, 10 do
  local granted, aerr = rl:acquire("demo-api")
  if granted == nil then error("acquire: " .. tostring(aerr)) end
  step("acquire #%d -> %s, %s", i, granted and "granted" or "REFUSED", requests())
  if not granted then break end
end
step("can_proceed -> %s, %s", tostring(must("can_proceed", rl:can_proceed("demo-api"))),
     requests())
local st = must("get_status", rl:get_status("demo-api"))
step("get_status -> remaining %d of %d", st.remaining, st.limit)
local wait = must("get_wait_time", rl:get_wait_time("demo-api"))
step("get_wait_time -> %d ms until the oldest grant leaves the window", wait)
rl:close()

------------------------------------------------------------------------
section("5. Adaptive priorities: limit 20 per minute for \"search\", user vs background")
local arl = ddbkit.adaptive.new{ client = client, table_name = T,
  resource_configs = { search = { limit = 20, window_ms = 60000 } },
  -- small thresholds and no caching of the split, so the demo shows it move
  adaptive_config = { high_activity_threshold = 5, moderate_activity_threshold = 2,
                      recalculation_interval_ms = 0 } }
must("reset", arl:reset("search"))

local function split(what)
  local status = must("get_status", arl:get_status("search"))
  local a = status.adaptive
  step("%s -> user %d, background %d%s; %s", what, a.user_reserved, a.background_max,
       a.background_paused and " (PAUSED)" or "", a.reason)
end
split("get_status, nothing recorded yet")
local granted = 0
for _ = 1, 3 do
  if must("acquire", arl:acquire("search", "background")) then granted = granted + 1 end
end
step("acquire(\"search\", \"background\") x3 -> %d granted", granted)
split("get_status")
granted = 0
for _ = 1, 6 do
  if must("acquire", arl:acquire("search", "user")) then granted = granted + 1 end
end
step("acquire(\"search\", \"user\") x6 (a burst of user traffic) -> %d granted", granted)
split("get_status")
local bg = must("acquire", arl:acquire("search", "background"))
step("acquire(\"search\", \"background\") -> %s", bg and "granted" or "refused: background is paused")
step("can_proceed(\"search\", \"background\") -> %s",
     tostring(must("can_proceed", arl:can_proceed("search", "background"))))
local user = must("acquire", arl:acquire("search", "user"))
step("acquire(\"search\", \"user\") -> %s", user and "granted" or "refused")
arl:close()
requests()

------------------------------------------------------------------------
section("6. A lock with its fencing token")
local lock_key = { pk = "LOCK#demo-world", sk = "LOCK#demo-world" }
local locks = ddbkit.lock.new{ client = client, table_name = T, key = lock_key }
-- wait_ms: a lease left by an interrupted earlier run runs out by itself
local h1 = must("acquire", locks:acquire{ lease_ms = 5000, wait_ms = 7000 })
step("acquire (lease 5 s) -> owner %s, fence %d, %s", h1.owner, h1.fence, requests())
local rival = ddbkit.lock.new{ client = client, table_name = T, key = lock_key }
local h2, berr = rival:acquire{ lease_ms = 5000 }
assert(not h2, "a second acquire should be busy")
step("second acquire (another owner) -> %s: held by %s with fence %d, %s", berr.code,
     tostring(berr.holder and berr.holder.owner), berr.holder and berr.holder.fence or -1, requests())
must("release", h1:release())
step("release -> ok, %s", requests())
local h3 = must("acquire", locks:acquire{ lease_ms = 5000 })
step("acquire again -> owner %s, fence %d (= %d + 1), %s", h3.owner, h3.fence, h1.fence,
     requests())

-- What the fence is for: a write guarded by it refuses an older holder.
local function guarded_write(h, tick)
  local w = h:fence_condition("fence")
  w.TableName, w.Key = T, { pk = "DEMO#world", sk = "STATE" }
  w.UpdateExpression = "SET tick = :t, fence = :ddbkit_fence"
  w.ExpressionAttributeValues[":t"] = tick
  return client:update_item(w)
end
must("delete_item", client:delete_item{ TableName = T, Key = { pk = "DEMO#world", sk = "STATE" } })
local wok = guarded_write(h3, 1)
step("write guarded by fence %d -> %s", h3.fence, wok and "ok" or "refused")
local _, werr = guarded_write(h1, 2)
step("stale write guarded by the old fence %d -> %s", h1.fence, werr and werr.code or "ok?!")
must("release", h3:release())
step("release -> ok")
requests()

------------------------------------------------------------------------
section("7. An idempotent handler replayed (ddbkit.idempotency, mode compat)")
local idem = ddbkit.idempotency.new{ client = client, table_name = IT, mode = "compat" }
local runs = 0
local function create_order(ctx)
  runs = runs + 1
  return { order_id = 9001, total = ctx.body.total }
end
-- a fresh key per run: a stored result is replayed for 24 h
local key = "order-" .. short(core.uuid())
local ctx = { method = "POST", path = "/orders", body = { total = 42 } }
client:reset_stats()
local order = must("execute", idem:execute(key, ctx, create_order))
step("execute(%s) -> order %d, handler runs = %d, %s", key, order.order_id, runs, requests())
order = must("execute", idem:execute(key, ctx, create_order))
step("execute(%s) again -> order %d, handler runs = %d (replayed), %s", key, order.order_id, runs,
     requests())

local declines = 0
local function charge()
  declines = declines + 1
  error({ name = "PaymentDeclined", message = "card declined", status = 402 })
end
local pkey = "pay-" .. short(core.uuid())
local r, e = idem:execute(pkey, { method = "POST", path = "/payments", body = "card=4000" }, charge)
step("execute(%s) -> %s, error %s %d \"%s\", handler runs = %d, %s", pkey, tostring(r), e.code,
     e.status, e.message, declines, requests())
r, e = idem:execute(pkey, { method = "POST", path = "/payments", body = "card=4000" }, charge)
step("execute(%s) again -> %s, error %s %d \"%s\", handler runs = %d (replayed), %s", pkey,
     tostring(r), e.code, e.status, e.message, declines, requests())
idem:close()

client:close()
print("\ndone")
