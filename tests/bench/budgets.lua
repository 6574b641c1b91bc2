-- Requests per store operation in `make bench`, against DynamoDB Local:
-- each row of the budget table, measured with client:stats() (reset_stats
-- before the operation, requests and the per-operation counts read after).
-- Runs once (the counts are exact, not timings). Lua 5.4 or LuaJIT.
--
--   budgets.lua single ENDPOINT TABLE FILL
--       Creates TABLE with the store schema (ddbkit.TABLE_SCHEMA: pk, sk,
--       gsi1) unless it exists, then measures every single-process row.
--       Before the cache delete / set_with_tags rows it writes FILL other
--       items (small CACHE# entries) with BatchWriteItem, 25 per request,
--       so that a Scan-based delete (the Node package's) would have to read
--       them all; it also counts the pages such a Scan takes.
--
--   budgets.lua load TABLE_LIMIT WINDOW_MS FILE...
--       Reads the output files of tests/spec/ratelimit_worker.lua (one per
--       process, all on one resource with limit TABLE_LIMIT per WINDOW_MS)
--       and prints the row for "acquire under the multi-process test":
--       average and maximum requests per acquire call (grants and denials).
--       It also checks the rate limit held: any TABLE_LIMIT + 1 consecutive
--       grants (sorted by their stored timestamps) span more than
--       WINDOW_MS; a violation is reported and ends with exit status 1.
--
-- Output: one line per row,
--   ROW | operation | ddbkit requests | budget | PASS/MISS | Node package |
-- (run.sh turns them into a Markdown table), plus on `load` one line
--   LOAD workers=W calls=C grants=G denials=D avg=X max=Y over_limit=K
-- A result that differs from what the row sets up (a miss that hits, an
-- acquire that should grant and does not, ...) is an error (exit status 1):
-- the counts would not mean what the row says.
local ddbkit = require "ddbkit"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local schema = require "ddbkit.schema"

local die = common.die_for("budgets")

local function usage()
  io.stderr:write([[
usage: budgets.lua single ENDPOINT TABLE FILL
       budgets.lua load   LIMIT WINDOW_MS FILE...
]])
  os.exit(2)
end

local whole = common.whole

local function check(v, err, what)
  if v == nil then die("%s: %s", what, tostring(err)) end
  return v
end

local function row(op, requests, budget, pass, node)
  print(("ROW | %s | %s | %s | %s | %s |"):format(op, requests, budget, pass and "PASS" or "MISS", node))
end

-- Runs f with fresh stats; returns the request count, a breakdown text
-- ("DeleteItem 1, BatchWriteItem 1") and the per-operation request counts,
-- then f's own results.
local OP_ORDER = { "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                   "TransactWriteItems", "BatchWriteItem" }
local function measure(c, f)
  c:reset_stats()
  local a, b = f()
  local s = c:stats()
  local per, parts, seen = {}, {}, {}
  for name, o in pairs(s.operations or {}) do
    if (o.requests or 0) > 0 then per[name] = o.requests end
  end
  for _, name in ipairs(OP_ORDER) do
    if per[name] then parts[#parts + 1] = name .. " " .. per[name]; seen[name] = true end
  end
  local rest = {}
  for name in pairs(per) do if not seen[name] then rest[#rest + 1] = name end end
  table.sort(rest)
  for _, name in ipairs(rest) do parts[#parts + 1] = name .. " " .. per[name] end
  return s.requests, table.concat(parts, ", "), per, a, b
end

local function shown(n, breakdown)
  if breakdown == "" then return tostring(n) end
  return ("%d (%s)"):format(n, breakdown)
end

-- ------------------------------------------------------------- single

local FILL_BATCH = 25

local function ensure_table(c, tname)
  local _, err = c:describe_table{ TableName = tname }
  if err and err.code == "ResourceNotFoundException" then
    local ok, cerr = c:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, tname))
    check(ok, cerr, "create_table " .. tname)
    local desc, werr = c:wait_for_table(tname, 30000)
    check(desc, werr, "wait_for_table " .. tname)
  elseif err then
    die("describe_table %s: %s", tname, tostring(err))
  end
end

-- FILL small cache entries, CACHE#fill-<i>, 25 per BatchWriteItem (the
-- client resends unprocessed items, a bounded number of times).
local function fill_table(c, tname, fill)
  local now = os.time() * 1000
  local i = 0
  while i < fill do
    local chunk = {}
    for j = i + 1, math.min(i + FILL_BATCH, fill) do
      local ck = ("CACHE#fill-%06d"):format(j)
      chunk[#chunk + 1] = { PutRequest = { Item = {
        pk = ck, sk = ck, ttl = 0, createdAt = now,
        value = ('{"id":%d,"body":"filler entry for the budget table of make bench"}'):format(j),
      } } }
    end
    local ok, err = c:batch_write_item{ RequestItems = { [tname] = chunk } }
    if not ok then die("filling the table (item %d): %s", i + 1, tostring(err)) end
    i = i + #chunk
  end
end

-- What a full Scan of the table costs: pages (requests) and items read.
-- Select = COUNT pages exactly like a Scan returning items (1 MB read per
-- page), whatever projection or filter the Node package uses.
local function scan_cost(c, tname)
  local pages, items = 0, 0
  for page, err in c:scan_pages{ TableName = tname, Select = "COUNT" } do
    if page == false then die("scan: %s", tostring(err)) end
    pages = pages + 1
    items = items + (page.ScannedCount or page.Count or 0)
    if pages > 10000 then die("scan: more than 10000 pages") end
  end
  return pages, items
end

local function tag_has(c, tname, tag, ck)
  local items = check(c:query_all{
    TableName = tname, ConsistentRead = true,
    KeyConditionExpression = "pk = :p AND sk = :s",
    ExpressionAttributeValues = { [":p"] = "TAG#" .. tag, [":s"] = ck },
  }, nil, "query TAG#" .. tag)
  return #items > 0
end

-- 10000 -> "10,000"
local function thousands(n)
  local s = tostring(math.floor(n))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function run_single(endpoint, tname, fill)
  local c = common.client(endpoint)
  -- Keys of this run (hashes, resources, the job) carry a run id, so that a
  -- second run against the same table measures the same situations.
  local id = require("ddbkit.core").uuid():sub(1, 8)
  local function k(name) return "budget-" .. id .. "-" .. name end
  ensure_table(c, tname)
  local cache = ddbkit.cache.new{ client = c, table_name = tname }
  local VALUE = { user = "ada", n = 42, tags = ddbkit.array{ "a", "b" } }

  -- cache get: a hit and a miss -----------------------------------------
  check(cache:set(k("hit"), VALUE, 300), nil, "cache set")
  local n, b, _, v, err = measure(c, function() return cache:get(k("hit")) end)
  if not (type(v) == "table" and v.user == "ada" and v.n == 42) then
    die("cache get of a stored entry did not hit: %s", tostring(err))
  end
  row("cache get, hit", shown(n, b), "1", n == 1, "1 (GetItem)")

  n, b, _, v, err = measure(c, function() return cache:get(k("absent")) end)
  if v ~= nil or err ~= nil then die("cache get of an absent entry: %s", tostring(err or v)) end
  row("cache get, miss", shown(n, b), "1", n == 1, "1 (GetItem)")

  -- the table gets FILL other items ---------------------------------------
  local t0 = os.time()
  fill_table(c, tname, fill)
  io.stderr:write(("budgets: %d other items written in about %d s\n"):format(fill, os.time() - t0))
  local pages, scanned = scan_cost(c, tname)
  local node_scan = ("a full Scan (here %d page%s, %s items read), then the deletes")
    :format(pages, pages == 1 and "" or "s", thousands(scanned))
  local fill_text = ("%s other items"):format(thousands(fill))

  -- cache delete of an entry with 3 tags -----------------------------------
  local TAGS = { k("t1"), k("t2"), k("t3") }
  check(cache:set_with_tags(k("del"), VALUE, 300, TAGS), nil, "cache set_with_tags")
  local per
  n, b, per, v, err = measure(c, function() return cache:delete(k("del")) end)
  check(v, err, "cache delete")
  for _, t in ipairs(TAGS) do
    if tag_has(c, tname, t, "CACHE#" .. k("del")) then die("cache delete left tag item %s", t) end
  end
  local bound = 2 + math.ceil(#TAGS / 25)
  row(("cache delete, 3 tags, %s in the table"):format(fill_text), shown(n, b),
      ("no Scan; O(tags): ≤ 2 + ⌈tags/25⌉ = %d"):format(bound),
      not per.Scan and n <= bound, node_scan)

  -- the same after a plain ddbkit set over it: set is an UpdateItem that
  -- keeps the entry's tag list, so the delete still needs no search
  check(cache:set_with_tags(k("del2"), VALUE, 300, TAGS), nil, "cache set_with_tags")
  check(cache:set(k("del2"), VALUE, 300), nil, "cache set")
  n, b, per, v, err = measure(c, function() return cache:delete(k("del2")) end)
  check(v, err, "cache delete")
  for _, t in ipairs(TAGS) do
    if tag_has(c, tname, t, "CACHE#" .. k("del2")) then die("cache delete left tag item %s", t) end
  end
  row("cache delete, 3 tags, entry re-set by a plain ddbkit set (list kept), same table", shown(n, b),
      ("no Scan; O(tags): ≤ 2 + ⌈tags/25⌉ = %d"):format(bound),
      not per.Scan and n <= bound, node_scan)

  -- set_with_tags replacing old tags: {t1,t2,t3} -> {t3,t4,t5} -------------
  local NEW = { k("t3"), k("t4"), k("t5") }
  check(cache:set_with_tags(k("swt"), VALUE, 300, TAGS), nil, "cache set_with_tags")
  n, b, per, v, err = measure(c, function()
    return cache:set_with_tags(k("swt"), { user = "bob", n = 7 }, 300, NEW)
  end)
  check(v, err, "cache set_with_tags (replacing)")
  for _, t in ipairs({ k("t1"), k("t2") }) do
    if tag_has(c, tname, t, "CACHE#" .. k("swt")) then die("set_with_tags left stale tag item %s", t) end
  end
  for _, t in ipairs(NEW) do
    if not tag_has(c, tname, t, "CACHE#" .. k("swt")) then die("set_with_tags did not write tag item %s", t) end
  end
  local swt_bound = 2 + math.ceil((2 + #NEW) / 25)
  row(("cache set_with_tags, 3 old tags → 3 new (2 stale), %s in the table"):format(fill_text),
      shown(n, b),
      ("no Scan; O(tags): ≤ 2 + ⌈(stale + new)/25⌉ = %d"):format(swt_bound),
      not per.Scan and n <= swt_bound, node_scan)

  -- rate_limit ------------------------------------------------------------
  local LIMIT = 10
  local rl = ddbkit.ratelimit.new{ client = c, table_name = tname,
                                   default_config = { limit = LIMIT, window_ms = 60000 } }
  n, b, _, v, err = measure(c, function() return rl:acquire(k("capacity")) end)
  if v ~= true then die("rate_limit acquire with capacity did not grant: %s", tostring(err or v)) end
  row(("rate_limit acquire, with capacity (limit %d)"):format(LIMIT), shown(n, b), "≤ 2", n <= 2,
      ("1 to limit (%d) transactions"):format(LIMIT))

  for i = 1, LIMIT do
    local ok, aerr = rl:acquire(k("full"))
    if ok ~= true then die("filling the window: acquire %d: %s", i, tostring(aerr or ok)) end
  end
  n, b, _, v, err = measure(c, function() return rl:acquire(k("full")) end)
  if v ~= false then die("rate_limit acquire on a full window: %s", tostring(err or v)) end
  row(("rate_limit acquire, window full (limit %d)"):format(LIMIT), shown(n, b), "≤ 2", n <= 2,
      ("limit (%d) transactions"):format(LIMIT))

  -- dedupe: joining a job another caller owns --------------------------------
  local c2 = common.client(endpoint)
  local owner = ddbkit.dedupe.new{ client = c2, table_name = tname }
  local job, jerr = owner:register_or_join(k("job"))
  check(job, jerr, "dedupe register_or_join (owner)")
  if not job.is_owner then die("dedupe: the first register_or_join did not own the job") end
  local dd = ddbkit.dedupe.new{ client = c, table_name = tname }
  n, b, _, v, err = measure(c, function() return dd:register_or_join(k("job")) end)
  if not (v and v.is_owner == false and v.job_id == job.job_id) then
    die("dedupe register_or_join did not join the owner's job: %s", tostring(err))
  end
  row("dedupe register_or_join, another caller owns the job", shown(n, b), "1", n == 1, "2")
  c2:close()

  -- adaptive: the first call loads the resource's activity once --------------
  local ALIMIT = 20
  local arl = ddbkit.adaptive.new{ client = c, table_name = tname,
                                   default_config = { limit = ALIMIT, window_ms = 60000 } }
  n, b, _, v, err = measure(c, function() return arl:acquire(k("adaptive"), "user") end)
  if v ~= true then die("adaptive acquire (first) did not grant: %s", tostring(err or v)) end
  row(("adaptive acquire (user, limit %d), first call: includes the once-per-process load"):format(ALIMIT),
      shown(n, b), "≤ 2 + the load (2 Query)", n <= 4, "1 to ⌈share⌉ transactions")
  n, b, _, v, err = measure(c, function() return arl:acquire(k("adaptive"), "user") end)
  if v ~= true then die("adaptive acquire (steady) did not grant: %s", tostring(err or v)) end
  row("adaptive acquire (user), steady state", shown(n, b), "≤ 2", n <= 2, "1 to ⌈share⌉ transactions")

  c:close()
end

-- --------------------------------------------------------------- load

local function run_load(limit, window_ms, files)
  local calls, total, max, grants, denials = 0, 0, 0, {}, 0
  local grant_requests = 0
  for i, path in ipairs(files) do
    local f, ferr = io.open(path, "r")
    if not f then die("load: %s", tostring(ferr)) end
    local seen_run = false
    for line in f:lines() do
      local ts, g = line:match("^G (%d+) (%d+)$")
      local d = line:match("^D (%d+)$")
      local n
      if ts then
        grants[#grants + 1] = tonumber(ts)
        n = tonumber(g)
        grant_requests = grant_requests + n
      elseif d then
        n = tonumber(d)
        denials = denials + 1
      elseif line:match("^R %d+ %d+$") then
        seen_run = true
      else
        die("load: worker %d: bad line %q", i, line)
      end
      if n then
        calls = calls + 1
        total = total + n
        if n > max then max = n end
      end
    end
    f:close()
    if not seen_run then die("load: worker %d wrote no run line (%s)", i, path) end
  end
  if calls == 0 then die("load: no acquire calls recorded") end
  table.sort(grants)
  local over = 0
  for i = 1, #grants - limit do
    if grants[i + limit] - grants[i] <= window_ms then over = over + 1 end
  end
  local avg = total / calls
  print(("LOAD workers=%d calls=%d grants=%d denials=%d requests=%d avg=%.3f max=%d per_grant=%.3f over_limit=%d")
    :format(#files, calls, #grants, denials, total, avg, max,
            grant_requests / math.max(1, #grants), over))
  row(("rate_limit acquire under the multi-process test (%d processes, limit %d per %d ms; %d calls: %d grants, %d denials)")
        :format(#files, limit, window_ms, calls, #grants, denials),
      ("avg %.2f, max %d (%.2f per grant)"):format(avg, max, grant_requests / math.max(1, #grants)),
      "avg ≤ 3, max ≤ 6 (+1 stamping a slow grant again)", avg <= 3 and max <= 7,
      ("up to limit (%d) transactions"):format(limit))
  if over > 0 then
    die("load: %d windows of %d ms held more than %d grants", over, window_ms, limit)
  end
end

-- --------------------------------------------------------------- main

local mode = arg[1]
if mode == "single" then
  local fill = whole(arg[4])
  if not (arg[2] and arg[3] and fill) then usage() end
  run_single(arg[2], arg[3], fill)
elseif mode == "load" then
  local limit, window = whole(arg[2]), whole(arg[3])
  if not (limit and window and limit >= 1 and arg[4]) then usage() end
  local files = {}
  for i = 4, #arg do files[#files + 1] = arg[i] end
  run_load(limit, window, files)
else
  usage()
end
