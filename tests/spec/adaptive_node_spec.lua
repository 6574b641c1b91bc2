-- ddbkit.adaptive beside the Node package's DynamoDBAdaptiveRateLimitStore
-- on one table (issue 14), against DynamoDB Local with a fake clock.
--
-- The Node side is simulated item for item (compat.md A.4, checked against
-- the package): its acquire is the loop
--   start = floor(random() * share)
--   for offset = 0, offset < share: slot = (start + offset) % share,
--     TransactWriteItems(Put RATELIMIT_SLOT#<res>#<priority> / "SLOT#" .. String(slot)
--       if attribute_not_exists(pk) OR #timestamp < :windowStart,
--       Put the log item RATELIMIT#<res> / TS#<now>#<uuid> with priority, gsi1pk, gsi1sk)
-- with the share as Node computes it, fractional in the moderate strategy.
-- The shares and every slot key text are computed by `node` itself (one
-- process for the whole file): JavaScript's `%` and String(n) are the
-- reference, so the sort keys are byte for byte what Node writes
-- ("SLOT#0.7599999999999998").
--
-- The scenario: limit 10, window 60 s, 3 user requests in the newest third
-- of the monitoring window (moderate, increasing): Node's split is
-- user = min(7, 4 * 1.56) = 6.24, background 3.76; ddbkit's 6 / 4.
--
-- What is proved (the bound is the one stated in lua/ddbkit/adaptive.lua):
-- * Node alone reaches |S(s)| = 2*ceil(s) - 1 grants of a priority in one
--   window for a fractional share s (13 for 6.24): the number a Node-only
--   fleet allows.
-- * ddbkit counts Node's fractional slot items as busy: with 6 of them held,
--   a ddbkit user acquire is refused (its share is 6).
-- * ddbkit acquiring concurrently with Node acquirers (coroutine runtime:
--   the transactions are in flight together) keeps the window's total at
--   most |S(6.24)| + |S(3.76)| = 20, every slot key used is one Node's
--   acquire can name, and ddbkit's own grants stay within its shares and
--   the limit.
-- * processes that split differently (ddbkit 9 / 1 beside Node's 6.24):
--   the grants reach the union of their slot keys, 13 + 2, and no more;
--   ddbkit takes none once Node has filled its 13.
-- * get_status: remaining is Node's rule (no floor, a paused background
--   counted) on the same items, Node's grants included; Node's rule applied
--   to the items ddbkit wrote counts ddbkit's; `available` is ddbkit's own
--   view.
local H = require "test_helper"
local ddbkit = require "ddbkit"
local core = require "ddbkit.core"
local schema = require "ddbkit.schema"
local adaptive = require "ddbkit.adaptive"
local corort = require "ddbkit.runtime.coroutine"
local cjson = require "cjson.safe"

local LIMIT, WINDOW = 10, 60000
local fmt = string.format

-- The reference: Node's moderate split for the scenario, and for each
-- share the slot keys Node's acquire tries from each start, in order.
local NODE_JS = [==[
const L = 10, recent = 3, high = 10, scaling = 2;
const m = Math.max(1, Math.min(scaling, 1 + recent / high) * 1.2);
const user = Math.min(L * 0.7, Math.floor(L * 0.4) * m);
const background = L - user;
const out = { user: String(user), background: String(background), seqs: {}, distinct: {} };
for (const [p, share] of [["user", user], ["background", background]]) {
  const seqs = [], set = new Set();
  for (let start = 0; start < Math.ceil(share); start++) {
    const seq = [];
    for (let offset = 0; offset < share; offset++) {
      const sk = `SLOT#${(start + offset) % share}`;
      seq.push(sk); set.add(sk);
    }
    seqs.push(seq);
  }
  out.seqs[p] = seqs; out.distinct[p] = [...set];
}
console.log(JSON.stringify(out));
]==]

local function node_reference()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(NODE_JS)
  f:close()
  local p = assert(io.popen("timeout 30 node " .. H.shell_quote(path) .. " 2>&1"))
  local text = p:read("*a")
  p:close()
  os.remove(path)
  local ref = cjson.decode(text)
  assert(type(ref) == "table", "node reference failed: " .. tostring(text))
  ref.share = { user = tonumber(ref.user), background = tonumber(ref.background) }
  ref.set = {}
  for prio, list in pairs(ref.distinct) do
    ref.set[prio] = {}
    for _, sk in ipairs(list) do ref.set[prio][sk] = true end
  end
  return ref
end

-- Steps until no task is live; a task's error fails the test (the
-- scheduler would only report it on stderr).
local failures = {}
local function task(fn)
  ddbkit.spawn(function()
    local ok, err = pcall(fn)
    if not ok then failures[#failures + 1] = tostring(err) end
  end)
end

local function drain(seconds)
  local deadline = core.mono_ms() + seconds * 1000
  while true do
    local n, err = ddbkit.step(50)
    assert(n, err)
    if n == 0 then
      assert(#failures == 0, table.concat(failures, "\n"))
      return
    end
    assert(core.mono_ms() < deadline, "tasks still live after " .. seconds .. " s")
  end
end

describe("ddbkit.adaptive beside Node on one table", function()
  local admin, T, ref

  setup(function()
    admin = H.client()
    T = H.unique("arlnode")
    assert(admin:create_table(schema.create_table_params(ddbkit.TABLE_SCHEMA, T)))
    assert(admin:wait_for_table(T, 30000))
    ref = node_reference()
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  -- A log item as Node's record() / acquire() writes it.
  local function node_log_item(res, priority, now)
    local sk = "TS#" .. fmt("%.0f", now) .. "#" .. core.uuid()
    return { pk = "RATELIMIT#" .. res, sk = sk, gsi1pk = "RATELIMIT#" .. res .. "#" .. priority,
             gsi1sk = sk, ttl = math.floor((now + WINDOW) / 1000), timestamp = now,
             priority = priority }
  end

  -- Node's acquire with the given start slot: true (granted), false (every
  -- slot tried was busy), or "error" where Node's acquire throws (a
  -- cancellation without a ConditionalCheckFailed reason).
  local function node_acquire(c, res, priority, start, now)
    local window_start = now - WINDOW
    for _, sk in ipairs(ref.seqs[priority][start + 1]) do
      local ok, err = c:transact_write_items{ TransactItems = {
        { Put = { TableName = T,
            Item = { pk = "RATELIMIT_SLOT#" .. res .. "#" .. priority, sk = sk, timestamp = now,
                     ttl = math.floor((now + WINDOW) / 1000) },
            ConditionExpression = "attribute_not_exists(pk) OR #timestamp < :windowStart",
            ExpressionAttributeNames = { ["#timestamp"] = "timestamp" },
            ExpressionAttributeValues = { [":windowStart"] = window_start } } },
        { Put = { TableName = T, Item = node_log_item(res, priority, now) } } } }
      if ok then return true end
      assert(err.code == "TransactionCanceledException", err.message)
      local conditional = false
      for i = 1, 2 do
        local r = require("ddbkit.client").reason_of(err, i)
        if r and r.Code == "ConditionalCheckFailed" then conditional = true end
      end
      if not conditional then return "error" end
    end
    return false
  end

  -- The moderate scenario: 3 user requests Node recorded 1..3 s ago.
  local function seed(res, now)
    for i = 1, 3 do
      assert(admin:put_item{ TableName = T, Item = node_log_item(res, "user", now - 1000 * i) })
    end
  end

  -- Node's getStatus rule on the items in the table: per priority, Query
  -- gsi1 COUNT (all pages) of gsi1sk >= TS#<windowStart>; remaining =
  -- userReserved - userUsed + (backgroundMax - backgroundUsed), Node's
  -- shares, no floor. Lua's doubles do JavaScript's arithmetic exactly.
  local function node_used(res, priority, now)
    local n = 0
    for page, err in admin:query_pages{ TableName = T, IndexName = "gsi1", Select = "COUNT",
        KeyConditionExpression = "gsi1pk = :p AND gsi1sk >= :s",
        ExpressionAttributeValues = { [":p"] = "RATELIMIT#" .. res .. "#" .. priority,
                                      [":s"] = "TS#" .. fmt("%.0f", now - WINDOW) } } do
      assert(page, err)
      n = n + page.Count
    end
    return n
  end
  local function node_remaining(res, now, share)
    share = share or ref.share
    return share.user - node_used(res, "user", now)
           + (share.background - node_used(res, "background", now))
  end

  local function slot_keys(res, priority)
    local items = assert(admin:query_all{ TableName = T, ConsistentRead = true,
      KeyConditionExpression = "pk = :p",
      ExpressionAttributeValues = { [":p"] = "RATELIMIT_SLOT#" .. res .. "#" .. priority } })
    local out = {}
    for _, it in ipairs(items) do out[#out + 1] = it.sk end
    return out
  end

  local function store(c)
    return adaptive.new{ client = c, table_name = T,
                         default_config = { limit = LIMIT, window_ms = WINDOW } }
  end

  it("the reference: Node's moderate split is fractional and its slot keys are too", function()
    assert.equals("6.24", ref.user)
    assert.equals("3.76", ref.background)
    -- |S(s)| = 2 * ceil(s) - 1: SLOT#0..6 and (7..12) % 6.24
    assert.equals(13, #ref.distinct.user)
    assert.equals(7, #ref.distinct.background)
    assert.is_true(ref.set.user["SLOT#0.7599999999999998"])
    assert.is_true(ref.set.background["SLOT#2.24"])
  end)

  it("Node alone grants 2*ceil(s) - 1 of a priority in one window", function()
    local c = H.clock_client({ T = 1701000000000 })
    local res, now = H.unique("nalone"), 1701000000000
    local granted = 0
    -- start at the last integer slot (7 grants: 6 and the six fractions),
    -- then at 0 (SLOT#0..5); every start after that finds all busy
    for _, start in ipairs({ 6, 6, 6, 6, 6, 6, 6, 0, 0, 0, 0, 0, 0, 0, 3, 6 }) do
      if node_acquire(c, res, "user", start, now) == true then granted = granted + 1 end
    end
    assert.equals(13, granted)
    assert.equals(13, #slot_keys(res, "user"))
  end)

  it("counts Node's fractional slot items as busy, and get_status is Node's rule", function()
    local now = 1701100000000
    local state = { T = now }
    local c = H.clock_client(state)
    local res = H.unique("nfrac")
    seed(res, now)
    -- ddbkit's view is taken now (held for the recalculation interval, as
    -- Node holds its own): 3 recent user requests, share 6 / 4
    local s = store(c)
    local st = assert(s:get_status(res))
    assert.equals(6, st.adaptive.user_reserved)
    assert.equals(4, st.adaptive.background_max)
    -- 6 Node user grants from start 6: SLOT#6 and five fractional slots
    for _ = 1, 6 do assert.is_true(node_acquire(admin, res, "user", 6, now)) end
    local keys = slot_keys(res, "user")
    assert.equals(6, #keys)
    -- ddbkit's user share is 6 and 6 slot items are busy: refused
    assert.is_false(s:acquire(res, "user"))
    assert.is_true(s:acquire(res, "background"))
    -- user: 3 recorded + 6 acquired = 9 used, over both shares; background 1
    st = assert(s:get_status(res))
    assert.equals(6 - 9 + (4 - 1), st.remaining)
    assert.is_true(math.abs(node_remaining(res, now) - st.remaining) < 1e-9,
      "Node " .. node_remaining(res, now) .. " ddbkit " .. st.remaining)
    assert.equals(0 + (4 - 1), st.available)
    -- the window moves on: Node's grants leave it, ddbkit takes slot items again
    state.T = now + WINDOW + 1
    assert.is_true(s:acquire(res, "user"))
  end)

  it("Node's getStatus rule counts ddbkit's grants; ddbkit writes only slot keys Node's acquire names", function()
    local now = 1701200000000
    local c = H.clock_client({ T = now })
    local res = H.unique("nread")
    seed(res, now)
    local s = store(c)
    for _ = 1, 4 do assert.is_true(s:acquire(res, "user")) end
    for _ = 1, 2 do assert.is_true(s:acquire(res, "background")) end
    assert.is_true(s:record(res, "background"))
    assert.equals(3 + 4, node_used(res, "user", now))
    assert.equals(3, node_used(res, "background", now))
    local st = assert(s:get_status(res))
    assert.equals(6 - 7 + (4 - 3), st.remaining)
    assert.is_true(math.abs(node_remaining(res, now) - st.remaining) < 1e-9)
    for _, prio in ipairs({ "user", "background" }) do
      for _, sk in ipairs(slot_keys(res, prio)) do
        assert.is_true(ref.set[prio][sk] == true, prio .. " " .. sk .. " is not a key Node's acquire names")
      end
    end
    -- a Node acquire honours ddbkit's slots: 4 user slots busy, Node takes others
    for start = 0, 2 do assert.is_true(node_acquire(admin, res, "user", start, now)) end
    assert.equals(7, #slot_keys(res, "user"))
  end)

  it("get_status counts a paused background's share, as Node does; available does not", function()
    local now = 1701300000000
    local state = { T = now }
    local c = H.clock_client(state)
    local s = adaptive.new{ client = c, table_name = T,
                            default_config = { limit = 100, window_ms = WINDOW } }
    local res = H.unique("npause")
    assert.is_true(s:acquire(res, "background"))
    for i = 1, 12 do
      state.T = state.T + 100
      assert.is_true(s:acquire(res, "user"), "user " .. i)
    end
    state.T = state.T + 30000                  -- recalculated: high, increasing
    local st = assert(s:get_status(res))
    assert.is_true(st.adaptive.background_paused)
    assert.equals(90, st.adaptive.user_reserved)
    assert.equals(10, st.adaptive.background_max)
    -- high: user = min(90, floor(100)) = 90 in Node too (no fraction here)
    local share = { user = 90, background = 10 }
    assert.equals(90 - 12 + (10 - 1), st.remaining)
    assert.equals(node_remaining(res, state.T, share), st.remaining)
    assert.equals(90 - 12, st.available)
  end)

  it("reads slot keys it did not write: numbers count as busy slots, other text is ignored", function()
    local now = 1701600000000
    local c = H.clock_client({ T = now })
    local res = H.unique("nodd")
    seed(res, now)
    local s = store(c)
    assert.equals(6, assert(s:get_status(res)).adaptive.user_reserved)
    local function put(sk)
      assert(admin:put_item{ TableName = T, Item = { pk = "RATELIMIT_SLOT#" .. res .. "#user", sk = sk,
        timestamp = now - 10, ttl = math.floor((now + WINDOW) / 1000) } })
    end
    -- not slot numbers: ignored
    for _, sk in ipairs({ "SLOT#x", "SLOT#", "SLOT#1.5.5", "OTHER#1" }) do put(sk) end
    -- numbers, none of them a slot ddbkit draws: 5 busy, 1 of the share left
    for _, sk in ipairs({ "SLOT#0.7599999999999998", "SLOT#1e-7", "SLOT#1e400", "SLOT#-1", "SLOT#6" }) do
      put(sk)
    end
    assert.is_true(s:acquire(res, "user"))
    assert.is_false(s:acquire(res, "user"))
  end)

  -- Processes that split differently: a ddbkit process that saw high
  -- activity (user 9) beside a Node process still on 6.24. The keys in use
  -- are S(6.24) and SLOT#0..8: the union holds 13 + 2 (SLOT#7, SLOT#8),
  -- and that is the bound; ddbkit adds keys only past ceil(6.24) = 7.
  it("processes with different splits: the bound is the union of their slot keys", function()
    local now = 1701500000000
    local c = H.clock_client({ T = now })
    local function forced()
      return adaptive.new{ client = c, table_name = T,
        default_config = { limit = LIMIT, window_ms = WINDOW },
        strategy = { name = "high-view", compute = function()
          return { user_reserved = 9, background_max = 1, background_paused = false, reason = "x" }
        end } }
    end
    local union = #ref.distinct.user + 2
    -- ddbkit first: it takes SLOT#0..8, Node then finds the six fractions
    local res = H.unique("nviews")
    local s, granted = forced(), 0
    for _ = 1, 12 do if s:acquire(res, "user") then granted = granted + 1 end end
    assert.equals(9, granted)
    for i = 1, 20 do
      if node_acquire(admin, res, "user", (i * 3) % 7, now) == true then granted = granted + 1 end
    end
    assert.equals(union, granted)
    assert.equals(union, #slot_keys(res, "user"))
    -- Node first: it fills S(6.24); ddbkit reads 13 busy slot items, above
    -- its 9, and takes none
    res = H.unique("nviews")
    granted = 0
    for _, start in ipairs({ 6, 6, 6, 6, 6, 6, 6, 0, 0, 0, 0, 0, 0, 0 }) do
      if node_acquire(admin, res, "user", start, now) == true then granted = granted + 1 end
    end
    assert.equals(13, granted)
    s = forced()
    local n, ok = H.requests(c, function() return s:acquire(res, "user") end)
    assert.is_false(ok)
    assert.equals(2 + 1, n)      -- the activity load, then one read of the partition
    assert.equals(13, #slot_keys(res, "user"))
  end)

  it("ddbkit and Node acquiring together stay within what Node alone allows", function()
    local now = 1701400000000
    local c = H.client{ runtime = {
      send = corort.send, call_raw = corort.call_raw, sleep = corort.sleep, spawn = corort.spawn,
      now_ms = function() return now end, mono_ms = function() return now end } }
    local res = H.unique("nmix")
    seed(res, now)
    -- three ddbkit processes (three stores, each its own view), loaded
    -- before the race so they all see the seeded activity (share 6 / 4)
    local stores = {}
    for i = 1, 3 do
      stores[i] = store(c)
      task(function()
        local st = assert(stores[i]:get_status(res))
        assert(st.adaptive.user_reserved == 6 and st.adaptive.background_max == 4)
      end)
    end
    drain(30)
    local grants = { ddbkit = { user = 0, background = 0 }, node = { user = 0, background = 0 } }
    local node_errors = 0
    -- Node's random start, from a fixed sequence (Park-Miller) so runs repeat
    local seedv = 12345
    local function rand()
      seedv = (seedv * 16807) % 2147483647
      return seedv / 2147483647
    end
    local ROUNDS = 12
    for i = 1, 3 do
      local s = stores[i]
      task(function()
        for r = 1, ROUNDS do
          local prio = (r + i) % 2 == 0 and "user" or "background"
          local ok, err = s:acquire(res, prio)
          assert(ok ~= nil, err and err.message)
          if ok then grants.ddbkit[prio] = grants.ddbkit[prio] + 1 end
        end
      end)
      task(function()
        for r = 1, ROUNDS do
          local prio = (r + i) % 2 == 1 and "user" or "background"
          local start = math.floor(rand() * ref.share[prio])
          local ok = node_acquire(c, res, prio, start, now)
          if ok == true then grants.node[prio] = grants.node[prio] + 1
          elseif ok == "error" then node_errors = node_errors + 1 end
        end
      end)
    end
    drain(120)
    local total = 0
    for _, side in pairs(grants) do
      for _, n in pairs(side) do total = total + n end
    end
    -- every grant is a log item of the window (3 seeded ones besides)
    assert.equals(total, node_used(res, "user", now) + node_used(res, "background", now) - 3)
    -- the bound: at most one grant per slot key per window, and every key
    -- used is one of Node's S(s): |S(6.24)| + |S(3.76)| = 13 + 7
    local bound = #ref.distinct.user + #ref.distinct.background
    assert.is_true(total <= bound, "total " .. total .. " > " .. bound)
    for _, prio in ipairs({ "user", "background" }) do
      local keys = slot_keys(res, prio)
      -- all grants at one timestamp: one slot item per grant, none reused
      assert.equals(grants.ddbkit[prio] + grants.node[prio], #keys)
      for _, sk in ipairs(keys) do
        assert.is_true(ref.set[prio][sk] == true, prio .. " " .. sk .. " is not a key Node's acquire names")
      end
    end
    -- ddbkit's own grants: within its integer shares and the limit
    assert.is_true(grants.ddbkit.user <= 6, grants.ddbkit.user)
    assert.is_true(grants.ddbkit.background <= 4, grants.ddbkit.background)
    assert.is_true(grants.ddbkit.user + grants.ddbkit.background <= LIMIT)
    -- both sides were granted something (the race was a race)
    assert.is_true(grants.ddbkit.user + grants.ddbkit.background > 0)
    assert.is_true(grants.node.user + grants.node.background > 0)
    assert.is_true(node_errors <= 3 * ROUNDS)
  end)
end)
