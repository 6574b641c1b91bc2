-- ddbkit.idempotency: run a handler once per key across many processes and
-- give its stored result (or error) to everyone else.
--
--   local idem = ddbkit.idempotency.new{ client = client }
--   local result, err = idem:execute(key, { method = "POST", path = "/orders", body = body },
--                                    function(ctx) return create_order(ctx.body) end)
--   -- err.status is the HTTP status to answer with (400, 409, 500, 503)
--
-- Two layouts, chosen by opts.mode (table `idempotency-cache`, HASH key
-- cacheKey, TTL on expiresAt in both):
--
-- "compat" (default): the Node middleware's (compat.md B), so Node and
-- ddbkit callers exclude each other and replay each other's results. The
-- record item is cacheKey = <cache key> with response, statusCode?,
-- headers?, createdAt (ms), ttl (ms), expiresAt (s); the lock item is
-- cacheKey = "lock:<cache key>", held with ddbkit's conditional lock (owner
-- and record version, renewals, fencing; the Node adapter reads it as its
-- own: expiresAt in epoch seconds, 0 once released). A first call costs 4
-- requests where the Node adapter pays 5:
--   GetItem record -> UpdateItem lock (acquire) -> GetItem record (someone
--   may have finished between the two) -> TransactWriteItems [ Put record,
--   release the lock if still ours ].
-- The transaction stores the record only while the lock is ours: a holder
-- whose lease ran out cannot overwrite what its successor stored. A replay
-- is 1 GetItem.
--
-- "fast": one item per key (ddbkit-only tables). Acquire is the same
-- conditional UpdateItem, on the record's own item: it succeeds when the
-- item is missing, released or expired, and otherwise fails with the item
-- itself (ALL_OLD), which is either the finished record (a replay: 1
-- request) or someone's in-progress marker (wait). Completion is one
-- UpdateItem that writes the record and ends the lease, on condition that
-- the lease is still ours. 2 requests on a first call, 1 on a replay, 0
-- when opts.lru_size keeps recent finished records in this process.
--
-- While a handler runs, its lease is renewed every third of lock_ttl_ms
-- (by the runtime: a thread of the engine in the blocking runtime). A
-- handler that outlives its lease anyway (DynamoDB unreachable for that
-- long) gets LOST back and nothing is stored: someone else may be running
-- it by then.
--
-- A handler's error is kept for min(lock_ttl_ms, ttl_ms), as the Node
-- middleware does: long enough for the callers racing the first one to get
-- it, short enough that a later retry runs the handler again.
--
-- Errors: nil, err with err.code and err.status: KEY_REQUIRED 400,
-- LOCK_TIMEOUT 409, CONFLICT 409, STORAGE_ERROR 503 (err.cause: the
-- DynamoDB error), SERIALIZATION_ERROR 500, LOST 500. A handler's own error
-- (raised, or returned as nil, err) is stored as the Node tagged object
-- {"@@idempotency/error": true, name, message, extras?} and comes back to
-- the first caller and every replay alike: err.code = err.name, err.message,
-- err.status (extras.status when it is a number, else 500), err.extras.
local core = require "ddbkit.core"
local store = require "ddbkit.store"
local lock = require "ddbkit.lock"
local client_mod = require "ddbkit.client"
local schema = require "ddbkit.schema"
local may_have_applied = require("ddbkit.ambiguous").may_have_applied

local type, pairs, ipairs, error, setmetatable, tostring, tonumber, pcall =
      type, pairs, ipairs, error, setmetatable, tostring, tonumber, pcall
local ceil, floor, min, max = math.ceil, math.floor, math.min, math.max
local sort, concat = table.sort, table.concat
local sha256_hex, null = core.sha256_hex, core.null

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.idempotency"
local ERROR_TAG = "@@idempotency/error"
local LOCK_PREFIX = "lock:"

_M.STATUS = {
  KEY_REQUIRED = 400, LOCK_TIMEOUT = 409, CONFLICT = 409,
  STORAGE_ERROR = 503, SERIALIZATION_ERROR = 500, LOST = 500,
}

-- Options ----------------------------------------------------------------

local function is_list_of_strings(v)
  if type(v) ~= "table" then return "a list of strings" end
  for k, s in pairs(v) do
    if type(k) ~= "number" or type(s) ~= "string" or s == "" then return "a list of strings" end
  end
end

local function is_integer_at_least(n)
  return function(v)
    if type(v) ~= "number" or v ~= v or v < n or v ~= floor(v) then
      return "an integer >= " .. n
    end
  end
end

local OPTIONS = {
  client = store.is_client,
  table_name = store.is_string,
  ttl_ms = is_integer_at_least(1),
  lock_timeout_ms = is_integer_at_least(0),
  lock_ttl_ms = is_integer_at_least(1),
  lock_poll_interval_ms = is_integer_at_least(1),
  max_key_length = is_integer_at_least(1),
  include_body_in_key = function(v) if type(v) ~= "boolean" then return "a boolean" end end,
  vary_headers = is_list_of_strings,
  methods = is_list_of_strings,
  should_cache = function(v) if type(v) ~= "function" then return "a function" end end,
  mode = function(v) if v ~= "compat" and v ~= "fast" then return '"compat" or "fast"' end end,
  lru_size = is_integer_at_least(0),
  max_clock_skew_ms = is_integer_at_least(0),
  header_name = store.is_string,
}

local function always() return true end

--- ddbkit.idempotency.new{ client, table_name?, ttl_ms?, lock_timeout_ms?,
--    lock_ttl_ms?, lock_poll_interval_ms?, max_key_length?,
--    include_body_in_key?, vary_headers?, methods?, should_cache?, mode?,
--    lru_size?, max_clock_skew_ms?, header_name? } -> idem. Raises on a bad option.
function _M.new(opts)
  opts = store.options(NAME .. ".new", opts, OPTIONS)
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 2) end
  if opts.lru_size and opts.lru_size > 0 and opts.mode ~= "fast" then
    error(NAME .. ".new: opts.lru_size needs mode = \"fast\" (a compat record may be "
          .. "deleted by a Node service at any time)", 2)
  end
  local skew, timeout = opts.max_clock_skew_ms or 1000, opts.lock_timeout_ms or 30000
  local ttl = opts.lock_ttl_ms or (timeout > 0 and timeout or 30000)
  if ttl <= skew then
    -- A lease is only trusted for lock_ttl_ms minus the skew margin: none
    -- would be left, and every handler would end LOST.
    error(NAME .. ".new: opts.lock_ttl_ms (" .. ttl .. ") must be larger than "
          .. "opts.max_clock_skew_ms (" .. skew .. ")", 2)
  end
  local vary = {}
  for i, h in ipairs(opts.vary_headers or {}) do vary[i] = h:lower() end
  sort(vary)
  local methods = {}
  for _, m in ipairs(opts.methods or { "POST", "PUT", "PATCH" }) do methods[m:upper()] = true end
  local self = setmetatable({
    client = opts.client,
    runtime = opts.client.runtime,
    table_name = opts.table_name or schema.IDEMPOTENCY_TABLE_NAME,
    ttl_ms = opts.ttl_ms or 86400000,
    lock_timeout_ms = timeout,
    lock_ttl_ms = ttl,
    poll_ms = opts.lock_poll_interval_ms or 100,
    max_key_length = opts.max_key_length or 256,
    include_body = opts.include_body_in_key ~= false,
    vary = vary,
    methods = methods,
    should_cache = opts.should_cache or always,
    fast = opts.mode == "fast",
    skew_ms = skew,
    header_name = (opts.header_name or "Idempotency-Key"):lower(),
  }, mt)
  if self.fast and (opts.lru_size or 0) > 0 then self.recent = _M.lru(opts.lru_size) end
  return self
end

function _M:close() return true end

-- Errors -------------------------------------------------------------------

local function fail(code, message, fields)
  local e = store.err(code, message)
  e.status = _M.STATUS[code] or 500
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

local function storage_error(cause, what)
  return fail("STORAGE_ERROR", what .. ": " .. tostring(cause), { cause = cause, retryable = true })
end

-- A handler's error as the Node tagged object: name and message, and the
-- other plain fields of an error table as extras (so code and status
-- survive a replay).
local function tag_error(e)
  if type(e) ~= "table" then
    return { [ERROR_TAG] = true, name = "Error", message = tostring(e) }
  end
  local extras
  for k, v in pairs(e) do
    local tv = type(v)
    if type(k) == "string" and k ~= "name" and k ~= "message" and k ~= "extras"
       and (tv == "string" or tv == "number" or tv == "boolean") then
      extras = extras or {}
      extras[k] = v
    end
  end
  if type(e.extras) == "table" then
    for k, v in pairs(e.extras) do extras = extras or {}; extras[k] = v end
  end
  local name = e.name or e.code
  return { [ERROR_TAG] = true, name = type(name) == "string" and name or "Error",
           message = type(e.message) == "string" and e.message or tostring(e), extras = extras }
end

local function is_tagged_error(v)
  return type(v) == "table" and v[ERROR_TAG] == true
end

-- The error value every caller gets for a stored (tagged) error.
local function handler_error(t)
  local extras = type(t.extras) == "table" and t.extras or nil
  -- Only an HTTP error status is one to answer with: a ddbkit error's
  -- status (0 when nothing was sent, DynamoDB's 400 for its own faults) is
  -- not the web request's.
  local s = extras and extras.status
  local status = type(s) == "number" and s >= 400 and s <= 599 and s == floor(s) and s or 500
  local name = type(t.name) == "string" and t.name or "Error"
  local message = type(t.message) == "string" and t.message or ""
  return fail(name, message, { name = name, status = status, extras = extras, handler_error = true })
end

-- Cache keys ---------------------------------------------------------------

-- Deterministic JSON for a non-string body: object keys sorted, scalars as
-- the stores write them. (Node hashes JSON.stringify's insertion order,
-- which Lua tables do not have: only string bodies match Node's keys.) A
-- table is a list when marked with ddbkit.array or when its keys are
-- exactly 1..n; otherwise an object, whose keys must not collide as text
-- (1 and "1"), so two different bodies never share a key.
local function is_list(t)
  if core.is_array(t) then return true end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n > 0 and n == #t
end

local function canonical_json(v, out, depth)
  if depth > 64 then error(NAME .. ": body nested too deeply (a cycle?)", 4) end
  if type(v) ~= "table" or v == null then
    local text, err = store.json_encode(v)
    if not text then error(NAME .. ": body is not JSON-encodable: " .. tostring(err), 4) end
    out[#out + 1] = text
    return
  end
  if is_list(v) then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      canonical_json(v[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys, by_text = {}, {}
  for k, val in pairs(v) do
    local text = tostring(k)
    if by_text[text] ~= nil then
      error(NAME .. ": body has two keys that read " .. text, 4)
    end
    by_text[text] = val
    keys[#keys + 1] = text
  end
  sort(keys)
  out[#out + 1] = "{"
  for i, text in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = store.json_encode(text)
    out[#out + 1] = ":"
    canonical_json(by_text[text], out, depth + 1)
  end
  out[#out + 1] = "}"
end

local function header_value(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v == nil then
    for k, x in pairs(headers) do
      if type(k) == "string" and k:lower() == name then v = x break end
    end
  end
  if type(v) == "table" then v = concat(v, ", ") end
  return v ~= nil and tostring(v) or nil
end

--- idem:cache_key(key, ctx?) -> 64 hex characters: SHA-256 of
-- "METHOD:PATH:KEY:BODYHASH:HEADERS" (compat.md B; method POST and path /
-- when ctx does not say; BODYHASH empty without a body or when
-- include_body_in_key is false).
function _M:cache_key(key, ctx)
  if type(key) ~= "string" then error(NAME .. ": key must be a string", 2) end
  ctx = ctx or {}
  if type(ctx) ~= "table" then error(NAME .. ": ctx must be a table", 2) end
  local body_hash = ""
  local body = ctx.body
  if self.include_body and body ~= nil and body ~= "" and body ~= null then
    if type(body) == "string" then
      body_hash = sha256_hex(body)
    else
      local out = {}
      canonical_json(body, out, 0)
      body_hash = sha256_hex(concat(out))
    end
  end
  local pairs_text = {}
  for i, name in ipairs(self.vary) do
    pairs_text[i] = name .. "=" .. (header_value(ctx.headers, name) or "")
  end
  return sha256_hex((ctx.method or "POST") .. ":" .. (ctx.path or "/") .. ":" .. key .. ":"
                    .. body_hash .. ":" .. concat(pairs_text, "&"))
end

local function check_key(self, key)
  if key == nil or key == "" then
    return fail("KEY_REQUIRED", "Idempotency-Key is required")
  end
  if type(key) ~= "string" then error(NAME .. ": key must be a string", 3) end
  if #key > self.max_key_length then
    return fail("KEY_REQUIRED", "Idempotency-Key exceeds maximum length of "
                .. self.max_key_length .. " characters")
  end
end

-- Items ----------------------------------------------------------------------

local function now_ms(self) return self.runtime.now_ms() end

-- A record item's state at wall-clock time `now`: "record" (replayable),
-- "expired", "held" (someone's live lease), "released", or "free".
local function classify(self, item, now)
  if item == nil then return "free" end
  local exp = tonumber(item.expiresAt) or 0
  if item.lockOwner ~= nil or (item.acquiredAt ~= nil and item.response == nil and exp > 0) then
    -- a ddbkit lease, or a Node lock item (acquiredAt + expiresAt, no owner)
    if exp * 1000 >= now - self.skew_ms then return "held" end
    return "expired"
  end
  if item.createdAt ~= nil and item.ttl ~= nil and item.response ~= nil then
    -- get_item refuses undatable records; a seen item (a busy lock's)
    -- that cannot be dated is not replayed.
    local created, ttl = tonumber(item.createdAt), tonumber(item.ttl)
    if not created or not ttl or now > created + ttl then return "expired" end
    return "record"
  end
  if exp == 0 then return "released" end
  return exp * 1000 >= now - self.skew_ms and "held" or "expired"
end

local function record_fields(res)
  return { response = res.response, statusCode = res.statusCode, headers = res.headers }
end

-- The record item for a result stored now: the Node layout.
local function record_item(self, ck, fields, ttl)
  local now = now_ms(self)
  local item = record_fields(fields)
  item.cacheKey = ck
  item.createdAt = now
  item.ttl = ttl
  item.expiresAt = ceil((now + ttl) / 1000)
  return item
end

local DATED = { "createdAt", "ttl", "expiresAt" }
local function get_item(self, ck)
  local res, err = self.client:get_item{ TableName = self.table_name, Key = { cacheKey = ck },
                                         ConsistentRead = true }
  if not res then return nil, err end
  local item = res.Item
  if not item then return false end
  -- What a server (or another writer) stored is read, never trusted: the
  -- dates of a record are numbers, or the record is malformed.
  for _, f in ipairs(DATED) do
    local v = item[f]
    if v ~= nil and not tonumber(v) then
      return nil, client_mod.malformed("idempotency item " .. f .. " is a " .. type(v)
                                       .. ", not a number")
    end
  end
  return item
end

-- Shapes: how a result becomes record fields and back. `plain` is execute's
-- (the result is the response); `http` is the web helper's.
local plain = {
  to_record = function(result) return { response = result } end,
  from_record = function(item) return item.response end,
}

local http = {
  -- A response without a body (a 204) is still a record: NULL, read back as "".
  to_record = function(r)
    return { response = r.body == nil and null or r.body, statusCode = r.status, headers = r.headers }
  end,
  from_record = function(item)
    local headers = {}
    for k, v in pairs(type(item.headers) == "table" and item.headers or {}) do headers[k] = v end
    return { status = tonumber(item.statusCode) or 200, headers = headers,
             body = item.response ~= null and item.response or "", replayed = true }
  end,
}

local function replay(item, shape)
  if is_tagged_error(item.response) then return nil, handler_error(item.response) end
  return shape.from_record(item)
end

-- Running the handler --------------------------------------------------------

-- Runs the handler while the lease is renewed. Returns ok, value: ok true
-- with the result, or false with the tagged error to store; or nil, err when
-- there is nothing to store (the handler returned nothing).
local function run_handler(self, h, handler, ctx)
  local keeper = h:keep(max(1, floor(self.lock_ttl_ms / 3)))
  local ok, res, herr = pcall(handler, ctx)
  local kept, kerr = keeper:stop()
  if not kept and (kerr.code == "lost" or kerr.code == "not_owner") or h:valid_ms() <= 0 then
    local why = kerr and ("renewing failed: " .. tostring(kerr)) or "no renewal in time"
    return nil, fail("LOST", "the lock's lease ran out while the handler ran (" .. why
                     .. "); the result was not stored", { result = ok and res or nil, cause = kerr })
  end
  if not ok then return false, tag_error(res) end
  if res == nil then
    if herr ~= nil then return false, tag_error(herr) end
    return nil, fail("SERIALIZATION_ERROR", "the handler returned nothing: return a value, "
                     .. "or nil and an error")
  end
  return true, res
end

-- A result DynamoDB would refuse (not encodable, too large) is reported
-- with the handler's result kept on the error, so it is not lost.
local function serialization_error(cause, result)
  return fail("SERIALIZATION_ERROR", "the result cannot be stored: " .. tostring(cause and cause.message),
              { cause = cause, result = result })
end

-- Refused for what the value is (not encodable here: status 0; too large
-- for an item: DynamoDB's size message), not for how it was asked.
local function refused_value(err)
  return err.code == "ValidationException"
     and (err.status == 0 or (err.message or ""):lower():find("size", 1, true) ~= nil)
end

-- Ending a lease with a final write ------------------------------------------

-- After a final write (store_compat, finish_fast) whose answer may hide that
-- it applied, the item it ended the lease on says what happened (design.md:
-- ambiguous writes are resolved by reading back): "applied" (releasedRvn is
-- our record version: only our write sets it), "held" (our lease is still
-- on it: the write did not apply), "taken" (someone else's now), or nil, err
-- when the read fails too.
local function read_back(self, key, cond)
  local item, err = get_item(self, key)
  if item == nil then return nil, err end
  if item and item.releasedRvn == cond.rvn then return "applied" end
  if item and item.lockOwner == cond.ExpressionAttributeValues[":ddbkit_o"]
     and item.lockRvn == cond.rvn then
    return "held"
  end
  return "taken"
end

-- How a final write that failed ends. Returns true (it did apply), or nil,
-- err, how: how "refused" (the value: nothing applied), "not_applied"
-- (nothing applied, the lease is still ours: the caller gives it back so
-- nobody waits it out), or nil (LOST, or unknown: the read-back failed too,
-- and the lease is left to expire).
local function failed_final(self, h, key, cond, err)
  if refused_value(err) then return nil, err, "refused" end
  if not may_have_applied(err) then
    return nil, storage_error(err, "storing the result"), "not_applied"
  end
  local state, rerr = read_back(self, key, cond)
  if state == "applied" then
    h:mark_released()
    return true
  elseif state == "held" then
    return nil, storage_error(err, "storing the result"), "not_applied"
  elseif state == "taken" then
    h:mark_released()
    return nil, fail("LOST", "the lease was taken over before the result was stored; not stored")
  end
  local e = storage_error(err, "storing the result (and reading it back: " .. tostring(rerr) .. ")")
  e.ambiguous = true
  return nil, e
end

-- Compat mode ---------------------------------------------------------------

local function lock_of(self, ck)
  return lock.new{ client = self.client, table_name = self.table_name,
                   key = { cacheKey = LOCK_PREFIX .. ck }, max_clock_skew_ms = self.skew_ms }
end

-- Stores the record and releases the lock in one transaction that only
-- goes through while the lock is ours.
local TRANSACT_ATTEMPTS = 4

local function conflicted(err)
  if err.code == "TransactionConflictException" then return true end
  local reasons = err.cancellation_reasons
  if type(reasons) ~= "table" then return false end
  for i = 1, #reasons do
    local r = client_mod.reason_of(err, i)
    if r and r.Code == "TransactionConflict" then return true end
  end
  return false
end

local function merged(a, b)
  local t = {}
  for k, v in pairs(a) do t[k] = v end
  for k, v in pairs(b) do t[k] = v end
  return t
end

local function store_compat(self, h, ck, item)
  local cond = h:owner_condition()
  local req = {
    TransactItems = {
      { Put = { TableName = self.table_name, Item = item } },
      { Update = {
          TableName = self.table_name, Key = { cacheKey = LOCK_PREFIX .. ck },
          UpdateExpression = "SET #e = :zero, " .. cond.set_released .. " REMOVE " .. cond.remove_owner,
          ConditionExpression = cond.ConditionExpression,
          ExpressionAttributeNames = merged(cond.ExpressionAttributeNames, { ["#e"] = "expiresAt" }),
          ExpressionAttributeValues = merged(cond.ExpressionAttributeValues, { [":zero"] = 0 }),
      } },
    },
    -- The same token on every retry: a transaction that went through and
    -- lost its answer is not applied twice, it just reports success.
    ClientRequestToken = cond.rvn,
  }
  local res, err
  for attempt = 1, TRANSACT_ATTEMPTS do
    res, err = self.client:transact_write_items(req)
    if res or not conflicted(err) or attempt == TRANSACT_ATTEMPTS then break end
    -- Another transaction (or a waiter's acquire) touched the lock item at
    -- the same moment: nothing was applied, and the same token makes a
    -- repeat safe.
    self.runtime.sleep(attempt * 20)
  end
  if res then
    h:mark_released()
    return true
  end
  local second = client_mod.reason_of(err, 2)
  if second and second.Code == "ConditionalCheckFailed" then
    h:mark_released()
    return nil, fail("LOST", "the lock was taken over before the result was stored; not stored")
  end
  -- The lock item tells whether the transaction went through: it sets our
  -- releasedRvn there together with the record.
  return failed_final(self, h, LOCK_PREFIX .. ck, cond, err)
end

-- Fast mode -----------------------------------------------------------------

local function lease_of(self, ck)
  return lock.new{ client = self.client, table_name = self.table_name,
                   key = { cacheKey = ck }, max_clock_skew_ms = self.skew_ms }
end

-- Ends the lease on the record's own item with one UpdateItem: writes the
-- record (fields non-nil) or clears it (nil), on condition that the lease is
-- still ours.
local function finish_fast(self, h, ck, item)
  local cond = h:owner_condition()
  local names, values = merged(cond.ExpressionAttributeNames, {}), merged(cond.ExpressionAttributeValues, {})
  local sets, removes = { cond.set_released }, { cond.remove_owner }
  for _, attr in ipairs{ "response", "statusCode", "headers", "createdAt", "ttl", "expiresAt" } do
    local v = item and item[attr]
    if attr == "expiresAt" and v == nil then v = 0 end  -- released: free for the next caller
    names["#" .. attr] = attr
    if v ~= nil then
      sets[#sets + 1] = "#" .. attr .. " = :" .. attr
      values[":" .. attr] = v
    else
      removes[#removes + 1] = "#" .. attr
    end
  end
  local res, err = self.client:update_item{
    TableName = self.table_name, Key = { cacheKey = ck },
    UpdateExpression = "SET " .. concat(sets, ", ") .. " REMOVE " .. concat(removes, ", "),
    ConditionExpression = cond.ConditionExpression,
    ExpressionAttributeNames = names,
    ExpressionAttributeValues = values,
    ReturnValuesOnConditionCheckFailure = "ALL_OLD",
  }
  if res then
    h:mark_released()
    return true
  end
  if err.code == "ConditionalCheckFailedException" then
    h:mark_released()
    local old = client_mod.item_of(err.item)
    if old and old.releasedRvn == cond.rvn then return true end  -- a retry after it landed
    return nil, fail("LOST", "the lease was taken over before the result was stored; not stored")
  end
  return failed_final(self, h, ck, cond, err)
end

-- The flow ----------------------------------------------------------------

-- Takes the lock (compat: lock:<ck>; fast: the record item). Returns the
-- handle, or nil and what stands in the way: the item seen (fast mode), or
-- an error.
local function acquire(self, ck)
  local locks = self.fast and lease_of(self, ck) or lock_of(self, ck)
  local h, err = locks:acquire{ lease_ms = self.lock_ttl_ms, with_item = self.fast }
  if h then return h end
  if err.code == "busy" then return nil, nil, client_mod.item_of(err.item) or false end
  -- The holder's storing transaction was on the item at that moment: it is
  -- as good as busy, and the next look will likely find the record.
  if err.code == "TransactionConflictException" then return nil, nil, false end
  return nil, storage_error(err, "acquiring the lock")
end

-- The outcome of a key whose handler ran (or runs) elsewhere: replay the
-- record, wait for the holder, CONFLICT when it finished without storing, or
-- "again" when its lease expired (the caller takes over).
local function await(self, ck, shape, deadline)
  while true do
    -- The holder was just seen: a look now would find the same.
    self.runtime.sleep(self.poll_ms)
    local item, err = get_item(self, self.fast and ck or LOCK_PREFIX .. ck)
    if item == nil then return nil, storage_error(err, "waiting for the lock") end
    local state = classify(self, item or nil, now_ms(self))
    if state == "record" then return "done", replay(item, shape) end
    if state == "expired" or (state == "free" and self.fast) then return "again" end
    if state ~= "held" then
      -- Released (or gone): the record, if the holder stored one.
      if not self.fast then
        local rec, rerr = get_item(self, ck)
        if rec == nil then return nil, storage_error(rerr, "reading the record") end
        if rec and classify(self, rec, now_ms(self)) == "record" then
          return "done", replay(rec, shape)
        end
      end
      return "done", nil, fail("CONFLICT", "Idempotency-Key In Use: the request with this key "
                               .. "finished without a stored result; retry it")
    end
    if self.runtime.mono_ms() >= deadline then
      return "done", nil, fail("LOCK_TIMEOUT", "timed out after " .. self.lock_timeout_ms
                               .. " ms waiting for the request with this key to finish")
    end
  end
end

local function release_quietly(self, h, ck)
  if self.fast then return finish_fast(self, h, ck, nil) end
  return h:release()
end

-- The handler's turn: run it, then store what it gave (or release).
local function complete(self, h, ck, handler, ctx, shape)
  local ok, value = run_handler(self, h, handler, ctx)
  if ok == nil then
    if value.code ~= "LOST" then release_quietly(self, h, ck) end
    return nil, value
  end
  local result, herr
  if ok then result = value else herr = handler_error(value) end
  if not self.should_cache(ok and result or herr) then
    release_quietly(self, h, ck)
    return result, herr
  end
  local fields = ok and shape.to_record(result) or { response = value }
  local ttl = ok and self.ttl_ms or min(self.lock_ttl_ms, self.ttl_ms)
  local item = record_item(self, ck, fields, ttl)
  local stored, serr, how
  if self.fast then
    stored, serr, how = finish_fast(self, h, ck, item)
  else
    stored, serr, how = store_compat(self, h, ck, item)
  end
  if not stored then
    if how == "refused" then
      release_quietly(self, h, ck)
      return nil, serialization_error(serr, result)
    end
    -- Nothing stored and the lease still ours: give it back, so waiters
    -- get CONFLICT now (and a retry runs) instead of LOCK_TIMEOUT later.
    if how == "not_applied" then release_quietly(self, h, ck) end
    serr.result = result
    return nil, serr
  end
  if self.recent then self.recent:put(ck, item) end
  return result, herr
end

local function run(self, ck, handler, ctx, shape)
  if self.recent then
    local item = self.recent:get(ck, now_ms(self))
    if item then return replay(item, shape) end
  end
  if not self.fast then
    local rec, err = get_item(self, ck)
    if rec == nil then return nil, storage_error(err, "reading the record") end
    if rec and classify(self, rec, now_ms(self)) == "record" then return replay(rec, shape) end
  end
  local deadline = self.runtime.mono_ms() + self.lock_timeout_ms
  while true do
    -- Tries again (after await) when the holder's lease expired; await
    -- sleeps first, which paces these tries.
    local h, err, seen = acquire(self, ck)
    if err then return nil, err end
    if h then
      if not self.fast then
        -- Someone may have stored the record between our read and the lock.
        local rec, rerr = get_item(self, ck)
        if rec == nil then
          h:release()
          return nil, storage_error(rerr, "reading the record")
        end
        if rec and classify(self, rec, now_ms(self)) == "record" then
          h:release()
          return replay(rec, shape)
        end
        return complete(self, h, ck, handler, ctx, shape)  -- none, or expired: ours to replace
      else
        return complete(self, h, ck, handler, ctx, shape)
      end
    elseif seen and classify(self, seen, now_ms(self)) == "record" then
      if self.recent then self.recent:put(ck, seen) end
      return replay(seen, shape)
    end
    if self.runtime.mono_ms() >= deadline then
      return nil, fail("LOCK_TIMEOUT", "timed out after " .. self.lock_timeout_ms
                       .. " ms waiting for the request with this key to finish")
    end
    local outcome, result, rerr = await(self, ck, shape, deadline)
    if outcome == nil then return nil, result end
    if outcome == "done" then return result, rerr end
  end
end

--- idem:execute(key, ctx?, handler) -> result | nil, err
-- handler(ctx) returns the result (any value DynamoDB can hold), or raises,
-- or returns nil, err. See the top of this file for what it costs.
function _M:execute(key, ctx, handler)
  if type(handler) ~= "function" then error(NAME .. ": handler must be a function", 2) end
  if ctx ~= nil and type(ctx) ~= "table" then error(NAME .. ": ctx must be a table", 2) end
  local kerr = check_key(self, key)
  if kerr then return nil, kerr end
  return run(self, self:cache_key(key, ctx), handler, ctx or {}, plain)
end

-- The web helper --------------------------------------------------------------

local function error_response(err)
  local body = store.json_encode{ error = err.code, message = err.message }
  return { status = err.status or 500, headers = { ["Content-Type"] = "application/json" },
           body = body }
end

--- idem:handle(req, handler) -> response
-- For web frameworks (nginx not needed): req = { method, path, headers,
-- body (raw string) }; handler(req) returns { status, headers, body }.
-- Requests whose method is not in opts.methods, or without the header, go
-- straight to the handler. Otherwise the response comes from the first
-- request with the same key and request (replays carry replayed = true and
-- an Idempotent-Replayed header); failures become JSON error responses with
-- err.status.
function _M:handle(req, handler)
  if type(req) ~= "table" then error(NAME .. ": req must be a table", 2) end
  if type(handler) ~= "function" then error(NAME .. ": handler must be a function", 2) end
  local method = (req.method or "GET"):upper()
  local key = header_value(req.headers, self.header_name)
  if not self.methods[method] or key == nil then return handler(req) end
  local kerr = check_key(self, key)
  if kerr then return error_response(kerr) end
  local ctx = { method = method, path = req.path or "/", headers = req.headers, body = req.body }
  local resp, err = run(self, self:cache_key(key, ctx), function()
    local r, herr = handler(req)
    if r == nil then return nil, herr end
    if type(r) ~= "table" or type(r.status) ~= "number" then
      error({ name = "Error", message = "the handler must return { status, headers, body }" })
    end
    return { status = r.status, headers = r.headers, body = r.body }
  end, ctx, http)
  if not resp then return error_response(err) end
  if resp.replayed then resp.headers["Idempotent-Replayed"] = "true" end
  return resp
end

-- The StorageAdapter ------------------------------------------------------------

local adapter = {}
local adapter_mt = { __index = adapter }

--- idem:adapter() -> the Node StorageAdapter, on this table and layout:
-- get / set / delete / acquire_lock / release_lock / wait_for_lock (and
-- no-op connect / disconnect). Keys are cache keys. Unlike the Node
-- adapter's, release_lock only releases a lock this adapter took.
function _M:adapter()
  return setmetatable({ idem = self, held = {} }, adapter_mt)
end

function adapter.connect() return true end
function adapter.disconnect() return true end

--- adapter:get(key) -> record { response, statusCode?, headers?, createdAt, ttl } | nil | nil, err
-- An expired record reads as missing and is deleted, as the Node adapter does.
function adapter:get(key)
  local idem = self.idem
  local item, err = get_item(idem, key)
  if item == nil then return nil, storage_error(err, "reading the record") end
  if not item then return nil end
  if now_ms(idem) > (tonumber(item.createdAt) or 0) + (tonumber(item.ttl) or 0) then
    idem.client:delete_item{ TableName = idem.table_name, Key = { cacheKey = key } }
    return nil
  end
  return { response = item.response, statusCode = item.statusCode, headers = item.headers,
           createdAt = item.createdAt, ttl = item.ttl }
end

--- adapter:set(key, record) -> true | nil, err
function adapter:set(key, record)
  if type(record) ~= "table" then error(NAME .. ": adapter:set takes a record table", 2) end
  local idem = self.idem
  local item = record_fields(record)
  item.cacheKey = key
  item.createdAt = record.createdAt or now_ms(idem)
  item.ttl = record.ttl or idem.ttl_ms
  item.expiresAt = ceil((item.createdAt + item.ttl) / 1000)
  local ok, err = idem.client:put_item{ TableName = idem.table_name, Item = item }
  if not ok then
    if refused_value(err) then return nil, serialization_error(err) end
    return nil, storage_error(err, "storing the record")
  end
  return true
end

--- adapter:delete(key) -> true | nil, err
function adapter:delete(key)
  local idem = self.idem
  local ok, err = idem.client:delete_item{ TableName = idem.table_name, Key = { cacheKey = key } }
  if not ok then return nil, storage_error(err, "deleting the record") end
  return true
end

--- adapter:acquire_lock(key, ttl_ms) -> true | false | nil, err
function adapter:acquire_lock(key, ttl_ms)
  local idem = self.idem
  local h, err = lock_of(idem, key):acquire{ lease_ms = ttl_ms or idem.lock_ttl_ms }
  if h then
    self.held[key] = h
    return true
  end
  if err.code == "busy" then return false end
  return nil, storage_error(err, "acquiring the lock")
end

--- adapter:release_lock(key) -> true | nil, err (code "not_owner" when this
-- adapter does not hold it: another holder's lock is never touched)
function adapter:release_lock(key)
  local h = self.held[key]
  if not h then return nil, store.err("not_owner", "this adapter does not hold the lock on " .. key) end
  local ok, err = h:release()
  -- Forgotten once it is released or not ours any more; after a transient
  -- failure the adapter still holds it, and a retry can release it.
  if ok or err.code == "not_owner" then self.held[key] = nil end
  if not ok and err.code ~= "not_owner" then return nil, storage_error(err, "releasing the lock") end
  return ok, err
end

--- adapter:wait_for_lock(key, timeout_ms, poll_ms) -> true | nil, err (LOCK_TIMEOUT)
function adapter:wait_for_lock(key, timeout_ms, poll_ms)
  local idem = self.idem
  local deadline = idem.runtime.mono_ms() + (timeout_ms or idem.lock_timeout_ms)
  while true do
    local item, err = get_item(idem, LOCK_PREFIX .. key)
    if item == nil then return nil, storage_error(err, "waiting for the lock") end
    if classify(idem, item or nil, now_ms(idem)) ~= "held" then return true end
    if idem.runtime.mono_ms() >= deadline then
      return nil, fail("LOCK_TIMEOUT", "timed out waiting for the lock on " .. key)
    end
    idem.runtime.sleep(poll_ms or idem.poll_ms)
  end
end

-- The in-process LRU of finished records (fast mode) --------------------------

local lru = {}
local lru_mt = { __index = lru }

--- ddbkit.idempotency.lru(size) -> a least-recently-used map of cache key ->
-- record item, which forgets a record once it expires.
function _M.lru(size)
  local head = {}
  head.prev, head.next = head, head
  return setmetatable({ size = size, count = 0, map = {}, head = head }, lru_mt)
end

local function unlink(n) n.prev.next, n.next.prev = n.next, n.prev end
local function push_front(head, n)
  n.next, n.prev = head.next, head
  head.next.prev = n
  head.next = n
end

function lru:get(k, now)
  local n = self.map[k]
  if not n then return nil end
  if now > n.item.createdAt + n.item.ttl then
    unlink(n)
    self.map[k] = nil
    self.count = self.count - 1
    return nil
  end
  unlink(n)
  push_front(self.head, n)
  return n.item
end

function lru:put(k, item)
  local n = self.map[k]
  if n then
    n.item = item
    unlink(n)
  else
    n = { key = k, item = item }
    self.map[k] = n
    self.count = self.count + 1
    if self.count > self.size then
      local last = self.head.prev
      unlink(last)
      self.map[last.key] = nil
      self.count = self.count - 1
    end
  end
  push_front(self.head, n)
end

return _M
