-- The cases of tests/spec/hostile_server_spec.lua: one table of hostile
-- answers (what the double of tests/hostile/hostile.py says to every
-- request) and one table of operations (a store call, or a client helper),
-- and run(answer, op, runtime) that makes one call against the double and
-- describes what happened. Kept apart from the spec so that a case that may
-- overflow the C stack or loop forever runs the same code in a child
-- process (`interpreter -e "..."`), where a crash or a hang fails one case
-- and not the whole busted run.
local ddbkit = require "ddbkit"

local _M = {}

local DDB = "com.amazonaws.dynamodb.v20120810#"

-- What the spec expects of an answer (per op, see _M.expect):
--   malformed  nil, err with MalformedResponse (err.code or a cause's)
--   fails      nil, err with a non-empty err.code
--   shape      malformed where the op reads `field`, fails where the op
--              must prove a grant (locks), else only: no raise, bounded
--   no_grant   fails where the op must prove a grant, else bounded
--   pages      fails for the pagers that collect (query_all ...), else bounded
-- Every case also: never raises, never crashes, never hangs, sends at most
-- _M.MAX_REQUESTS requests, and a nil return carries err.code.
-- `isolate`: run in a child process (a stack overflow is what the case is
-- about).
-- 2 MB answers: time to move them even on a loaded machine under ASan.
local DEEP_CLIENT = { timeout_ms = 6000 }

_M.ANSWERS = {
  { name = "200 5", expect = "malformed", script = { { body = "5" } } },
  { name = '200 "str"', expect = "malformed", script = { { body = '"str"' } } },
  { name = "200 null", expect = "malformed", script = { { body = "null" } } },
  { name = "200 []", expect = "malformed", script = { { body = "[]" } } },
  { name = "200 non-JSON", expect = "malformed",
    script = { { body = "<html>502 Bad Gateway</html>", headers = { ["Content-Type"] = "text/html" } } } },
  { name = '200 {"Item":true}', expect = "shape", field = "Item", script = { { body = '{"Item":true}' } } },
  { name = '200 {"Items":5}', expect = "shape", field = "Items", script = { { body = '{"Items":5}' } } },
  { name = '200 {"Responses":5}', expect = "shape", field = "Responses",
    script = { { body = '{"Responses":5}' } } },
  { name = '200 {"Attributes":"x"}', expect = "shape", field = "Attributes",
    script = { { body = '{"Attributes":"x"}' } } },
  { name = "200 {}", expect = "no_grant", script = { { body = "{}" } } },
  { name = "200 with an error body", expect = "no_grant",
    script = { { body = '{"__type":"' .. DDB .. 'ConditionalCheckFailedException","message":"no"}' } } },
  { name = '400 {"__type":""}', expect = "fails", script = { { status = 400, body = '{"__type":""}' } } },
  { name = "400 hostile __type and message", expect = "fails",
    script = { { kind = "error", type = DDB .. "\27]0;owned\7\27[2J",
                 message = "\27]52;c;ZWNobyBvd25lZA==\7\27[31mred\r\n" } } },
  { name = "400 empty body", expect = "fails", script = { { status = 400, body = "" } } },
  { name = "200 truncated", expect = "fails",
    script = { { kind = "truncate", body = '{"Item":{"pk":{"S":"a"},"v":{"S":"partial' } } },
  { name = "400 truncated ConditionalCheckFailed", expect = "fails",
    script = { { kind = "truncate", status = 400,
                 body = '{"__type":"' .. DDB .. 'ConditionalCheckFailedException","message":"m",'
                        .. '"Item":{"pk":{"S":"a"},"v":{"S":"partial' } } },
  -- a whole JSON object, but less than Content-Length promised
  { name = "400 ConditionalCheckFailed cut short after a whole body", expect = "fails",
    script = { { kind = "truncate", status = 400,
                 body = '{"__type":"' .. DDB .. 'ConditionalCheckFailedException","message":"m",'
                        .. '"Item":{"pk":{"S":"a"}}}' } } },
  { name = "close without an answer", expect = "fails", script = { { kind = "close" } } },
  { name = "trickle past the timeout", expect = "fails", client = { timeout_ms = 300, max_attempts = 1 },
    script = { { kind = "trickle", body = '{"Item":{"pk":{"S":"slow"}}}', bytes = 1, interval_ms = 200 } } },
  -- the status line, which would take 40 s: a client that bounds each
  -- read, not the exchange, waits it out
  { name = "trickle the status line past the timeout", expect = "fails",
    client = { timeout_ms = 300, max_attempts = 1 },
    script = { { kind = "trickle", head = true, reason = string.rep("X", 400),
                 body = '{}', bytes = 1, interval_ms = 100 } } },
  { name = "200 Attributes nested 1,000,000 deep", expect = "shape", field = "Attributes", isolate = true,
    client = DEEP_CLIENT,
    script = { { gen = "deep", depth = 1000000, at = "Attributes" } } },
  { name = "200 Item nested 1,000,000 deep", expect = "shape", field = "Item", isolate = true,
    client = DEEP_CLIENT,
    script = { { gen = "deep", depth = 1000000, at = "Item" } } },
  { name = "400 ConditionalCheckFailed, Item nested 1,000,000 deep", expect = "fails", isolate = true,
    client = DEEP_CLIENT,
    script = { { gen = "deep", depth = 1000000, at = "Item", status = 400,
                 type = DDB .. "ConditionalCheckFailedException" } } },
  -- 200 answers, then the double says ValidationException: a pager that
  -- does not stop shows as 200+ requests, fast, instead of as a hang.
  { name = "the same LastEvaluatedKey 200 times", expect = "pages",
    script = { { gen = "repeat_lek", forever = false, count = 200 } } },
}

-- A request bound no correct call comes near (max_attempts = 2 below; the
-- most any store call makes is a handful of calls), far below a loop's.
_M.MAX_REQUESTS = 40

-- The client of every case: small timeouts and attempts, so a case that
-- does not stop fails fast.
_M.CLIENT = { timeout_ms = 2000, connect_timeout_ms = 1000, max_attempts = 2,
              base_delay_ms = 1, max_backoff_ms = 5, batch_max_attempts = 2 }

local TABLE = "hostile"
local KEY = { pk = "k", sk = "k" }

-- Each op: run(client) -> what the call returns. reads: the response fields
-- it relies on; proves: a success must be proven by what came back (a
-- lock grant); collects: a pager that returns everything at once; lead:
-- answers queued before the hostile one, to lead the op to the request the
-- case is about; result: the type a success must have.
_M.OPS = {
  { name = "client:get_item", result = "table", reads = { Item = true },
    run = function(c) return c:get_item{ TableName = TABLE, Key = KEY } end },
  { name = "client:update_item ALL_NEW", result = "table", reads = { Attributes = true },
    run = function(c)
      return c:update_item{ TableName = TABLE, Key = KEY, UpdateExpression = "SET v = :v",
                            ExpressionAttributeValues = { [":v"] = 1 }, ReturnValues = "ALL_NEW" }
    end },
  { name = "client:query_all", result = "table", reads = { Items = true }, collects = true,
    run = function(c)
      return c:query_all{ TableName = TABLE, KeyConditionExpression = "pk = :p",
                          ExpressionAttributeValues = { [":p"] = "k" } }
    end },
  { name = "client:scan_all", result = "table", reads = { Items = true }, collects = true,
    run = function(c) return c:scan_all{ TableName = TABLE } end },
  { name = "client:query_items", reads = { Items = true }, collects = true,
    run = function(c)
      local n = 0
      for item, err in c:query_items{ TableName = TABLE, KeyConditionExpression = "pk = :p",
                                      ExpressionAttributeValues = { [":p"] = "k" } } do
        if item == false then return nil, err end
        n = n + 1
      end
      return n
    end },
  { name = "client:batch_get_item", result = "table", reads = { Responses = true },
    run = function(c) return c:batch_get_item{ RequestItems = { [TABLE] = { Keys = { KEY } } } } end },
  { name = "client:transact_get_items", result = "table", reads = { Responses = true },
    run = function(c) return c:transact_get_items{ TransactItems = { { Get = { TableName = TABLE, Key = KEY } } } } end },
  { name = "cache:get", reads = { Item = true },
    run = function(c) return ddbkit.cache.new{ client = c }:get("h") end },
  { name = "cache:set",
    run = function(c) return ddbkit.cache.new{ client = c }:set("h", { body = "x" }, 60) end },
  { name = "cache:delete", reads = { Attributes = true, Items = true },
    run = function(c) return ddbkit.cache.new{ client = c }:delete("h") end },
  { name = "cache:set_with_tags", reads = { Attributes = true, Items = true },
    run = function(c) return ddbkit.cache.new{ client = c }:set_with_tags("h", { body = "x" }, 60, { "t" }) end },
  { name = "cache:invalidate_by_tag", reads = { Items = true },
    run = function(c) return ddbkit.cache.new{ client = c }:invalidate_by_tag("t") end },
  { name = "dedupe:register_or_join",
    run = function(c) return ddbkit.dedupe.new{ client = c }:register_or_join("h") end },
  { name = "dedupe:is_in_progress", reads = { Item = true },
    run = function(c) return ddbkit.dedupe.new{ client = c }:is_in_progress("h") end },
  { name = "dedupe:wait_for", reads = { Item = true },
    run = function(c) return ddbkit.dedupe.new{ client = c, job_timeout_ms = 1000 }:wait_for("h") end },
  { name = "ratelimit:acquire", reads = { Items = true },
    run = function(c)
      return ddbkit.ratelimit.new{ client = c, default_config = { limit = 5, window_ms = 60000 } }:acquire("r")
    end },
  { name = "ratelimit:get_status", reads = { Items = true },
    run = function(c)
      return ddbkit.ratelimit.new{ client = c, default_config = { limit = 5, window_ms = 60000 } }:get_status("r")
    end },
  { name = "adaptive:acquire user", reads = { Items = true },
    run = function(c)
      return ddbkit.adaptive.new{ client = c, default_config = { limit = 10, window_ms = 60000 } }:acquire("r", "user")
    end },
  { name = "lock:acquire", reads = { Attributes = true }, proves = true,
    run = function(c)
      local locks = ddbkit.lock.new{ client = c, table_name = TABLE, key = { pk = "LOCK#h", sk = "LOCK#h" } }
      return locks:acquire{ lease_ms = 5000, wait_ms = 0 }
    end },
  { name = "idempotency:execute compat", proves = true,
    lead = { { match = "GetItem", body = "{}" } },   -- no record yet: on to the lock
    run = function(c)
      local idem = ddbkit.idempotency.new{ client = c, mode = "compat", lock_timeout_ms = 0, lock_ttl_ms = 5000 }
      return idem:execute("key-1", { method = "POST", path = "/x", body = "b" }, function() return "ran" end)
    end },
  { name = "idempotency:execute fast", proves = true,
    run = function(c)
      local idem = ddbkit.idempotency.new{ client = c, mode = "fast", lock_timeout_ms = 0, lock_ttl_ms = 5000 }
      return idem:execute("key-1", { method = "POST", path = "/x", body = "b" }, function() return "ran" end)
    end },
}

_M.RUNTIMES = { "blocking", "coroutine" }

local function find(list, name)
  for _, x in ipairs(list) do if x.name == name then return x end end
  error("no case named " .. tostring(name), 2)
end
_M.answer, _M.op = function(n) return find(_M.ANSWERS, n) end, function(n) return find(_M.OPS, n) end

--- expect(answer, op) -> "malformed" | "fails" | "bounded"
function _M.expect(a, op)
  local e = a.expect
  if e == "shape" then
    if op.reads and op.reads[a.field] then return "malformed" end
    return op.proves and "fails" or "bounded"
  elseif e == "no_grant" then
    return op.proves and "fails" or "bounded"
  elseif e == "pages" then
    return op.collects and "fails" or "bounded"
  end
  return e
end

--- script(answer, op) -> the list of answers to queue for the case: the
-- op's lead, then the hostile answer for every request after it.
function _M.script(a, op)
  local out = {}
  for _, l in ipairs(op.lead or {}) do out[#out + 1] = l end
  for _, s in ipairs(a.script) do
    local x = {}
    for k, v in pairs(s) do x[k] = v end
    if x.gen ~= "repeat_lek" then x.forever = true end
    out[#out + 1] = x
  end
  return out
end

-- The codes of err and of the causes it wraps (a store's STORAGE_ERROR
-- carries the client's error as err.cause).
local function codes(err)
  local out, seen = {}, 0
  while type(err) == "table" and seen < 5 do
    out[#out + 1] = err.code
    err = err.cause
    seen = seen + 1
  end
  return out
end

local function has_item(err)
  local seen = 0
  while type(err) == "table" and seen < 5 do
    if err.item ~= nil then return true end
    err = err.cause
    seen = seen + 1
  end
  return false
end

--- run(answer_name, op_name, runtime_name, endpoint) -> outcome:
-- { raised = message | nil, first = type of the first return,
--   value = the first return when a boolean, codes = { err.code, cause
--   codes... }, code_type = type(err.code), err_item = whether an error
--   (or a cause) carries .item, message = err.message (200 bytes) }. The answer must already be scripted on
-- the double at `endpoint`.
function _M.run(answer_name, op_name, runtime_name, endpoint)
  local a, op = _M.answer(answer_name), _M.op(op_name)
  local o = { region = "us-east-1", endpoint = endpoint,
              credentials = { access_key_id = "hostile", secret_access_key = "hostilesecret" },
              runtime = runtime_name }
  for k, v in pairs(_M.CLIENT) do o[k] = v end
  for k, v in pairs(a.client or {}) do o[k] = v end
  local c = assert(ddbkit.client(o))
  local call = function() return op.run(c) end
  local ok, r1, r2
  if runtime_name == "coroutine" then
    -- ddbkit.run: true, fn's results | false, err; fn's results are pcall's.
    local tok, rok, pok, a1, a2 = pcall(ddbkit.run, function() return pcall(call) end)
    if not tok then ok, r1 = false, rok
    elseif not rok then ok, r1 = false, pok
    else ok, r1, r2 = pok, a1, a2 end
  else
    ok, r1, r2 = pcall(call)
  end
  c:close()
  local out = {}
  if not ok then
    out.raised = tostring(r1)
    return out
  end
  out.first = type(r1)
  if type(r1) == "boolean" then out.value = r1 end
  if r1 == nil or r1 == false then
    out.codes = codes(r2)
    out.code_type = type(r2) == "table" and type(r2.code) or type(r2)
    out.err_item = has_item(r2)
    if type(r2) == "table" and type(r2.message) == "string" then out.message = r2.message:sub(1, 200) end
  end
  return out
end


local function has(list, x)
  for _, v in ipairs(list or {}) do if v == x then return true end end
  return false
end

--- check(outcome, expect, stats): raises (an assertion failure naming the
-- case's outcome) unless the outcome of run() is what expect(answer, op)
-- asks for, within the double's stats (H.hostile_stats()) for the case.
-- Shared by the specs of every runtime (hostile_server_spec,
-- openresty_hostile_spec).
function _M.check(o, expect, stats)
  local cjson = require "cjson.safe"
  local what = cjson.encode(o)
  assert(not o.died, o.died)
  assert(o.raised == nil, "raised: " .. tostring(o.raised))
  assert(stats.requests >= 1, "the call never reached the double")
  assert(stats.requests <= _M.MAX_REQUESTS,
    string.format("%d requests sent (bound %d)", stats.requests, _M.MAX_REQUESTS))
  -- a slow answer is cut at the client's timeout, never waited out
  assert((stats.trickles_finished or 0) == 0, "a trickled answer was waited out to its end")
  -- whatever it returns, an error has a code
  if o.code_type ~= nil and o.code_type ~= "nil" then
    assert(o.code_type == "string" and o.codes[1] ~= "", "an error without a code: " .. what)
  end
  if expect == "malformed" then
    assert(o.first == "nil", "not nil, err: " .. what)
    assert(has(o.codes, "MalformedResponse"), "not MalformedResponse: " .. what)
  elseif expect == "fails" then
    assert(o.first == "nil", "not nil, err: " .. what)
    assert(o.code_type == "string" and o.codes[1] ~= "", "no err.code: " .. what)
    assert(not o.err_item, "err.item decoded from a failed answer: " .. what)
  end
end

return _M
