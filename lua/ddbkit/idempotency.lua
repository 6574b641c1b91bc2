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
-- ddbkit callers exclude each other and replay each other's results; 4
-- requests on a first call, 1 on a replay (ddbkit/idempotency/compat.lua).
--
-- "fast": one item per key (ddbkit-only tables): 2 requests on a first
-- call, 1 on a replay, 0 when opts.lru_size keeps recent finished records
-- in this process (ddbkit/idempotency/fast.lua).
--
-- The two layouts are strategies with one small interface (see compat.lua);
-- this file is the flow they share. Elsewhere: the cache key
-- (idempotency/cache_key.lua), the items (record.lua), the errors
-- (errors.lua), how a lease ends (lease_end.lua), the Node StorageAdapter
-- face (adapter.lua), the in-process LRU (ddbkit/lru.lua).
--
-- While a handler runs, its lease is renewed every third of lock_ttl_ms
-- (by the runtime: a thread of the engine in the blocking runtime). A
-- handler that outlives its lease anyway (DynamoDB unreachable for that
-- long) gets LOST back and nothing is stored: someone else may be running
-- it by then. A final write whose answer is lost is resolved by reading the
-- item back (lease_end.lua); one that surely failed gives the lease back.
--
-- A handler's error is kept for min(lock_ttl_ms, ttl_ms), as the Node
-- middleware does: long enough for the callers racing the first one to get
-- it, short enough that a later retry runs the handler again.
--
-- Errors: nil, err with err.code and err.status: KEY_REQUIRED 400 (empty,
-- whitespace only, not UTF-8, or longer than max_key_length UTF-16 units,
-- as the Node middleware counts), BODY_NOT_JSON 400 (a body given as JSON
-- text that is not JSON), LOCK_TIMEOUT 409, CONFLICT 409, STORAGE_ERROR
-- 503 (err.cause: the DynamoDB error), SERIALIZATION_ERROR 500, LOST 500.
-- A handler's own error
-- (raised, or returned as nil, err) is stored as the Node tagged object
-- {"@@idempotency/error": true, name, message, extras?} and comes back to
-- the first caller and every replay alike: err.code = err.name, err.message,
-- err.status (extras.status when it is a number, else 500), err.extras.
local store = require "ddbkit.store"
local schema = require "ddbkit.schema"
local lru = require "ddbkit.lru"
local errors = require "ddbkit.idempotency.errors"
local keys = require "ddbkit.idempotency.cache_key"
local record = require "ddbkit.idempotency.record"
local compat = require "ddbkit.idempotency.compat"
local fast = require "ddbkit.idempotency.fast"
local adapter = require "ddbkit.idempotency.adapter"

local type, pairs, ipairs, error, setmetatable, tostring, pcall =
      type, pairs, ipairs, error, setmetatable, tostring, pcall
local floor, min, max = math.floor, math.min, math.max
local fail, classify, replay = errors.fail, record.classify, record.replay

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.idempotency"

_M.STATUS = errors.STATUS

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
  lock_ttl_ms = is_integer_at_least(3),   -- renewed every third of it, inside it
  lock_poll_interval_ms = is_integer_at_least(1),
  max_key_length = is_integer_at_least(1),
  include_body_in_key = function(v) if type(v) ~= "boolean" then return "a boolean" end end,
  vary_headers = is_list_of_strings,
  json_bodies = function(v) if type(v) ~= "boolean" then return "a boolean" end end,
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
--    lru_size?, max_clock_skew_ms?, header_name?, json_bodies? } -> idem.
-- Raises on a bad option. vary_headers: header names (RFC 7230 tokens),
-- kept as written: the cache key holds "Name=value" with the name as
-- configured, as the Node middleware's does. json_bodies (false): see
-- idem:handle.
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
  local vary = keys.vary(opts.vary_headers or {})
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
    json_bodies = opts.json_bodies == true,
    vary = vary,
    methods = methods,
    should_cache = opts.should_cache or always,
    fast = opts.mode == "fast",
    layout = opts.mode == "fast" and fast or compat,
    skew_ms = skew,
    header_name = (opts.header_name or "Idempotency-Key"):lower(),
  }, mt)
  if self.fast and (opts.lru_size or 0) > 0 then self.recent = _M.lru(opts.lru_size) end
  return self
end

function _M:close() return true end

--- idem:cache_key(key, ctx?) -> 64 hex characters | nil, err (BODY_NOT_JSON)
-- The Node middleware's execute(key, ctx) key, SHA-256 of
-- "METHOD:PATH:KEY:BODYHASH:HEADERS" (compat.md B). ctx = { method?,
-- path? (else POST and /), body? or input? (body ?? input), body_json?,
-- headers? }; see cache_key.of for each part. In short: a string body is
-- hashed as is ("" too); a table body as JSON.stringify writes it, and Lua
-- tables have no key order: pass ctx.body_json, the body's JSON text (or
-- a table from ddbkit.jsjson.decode), to hash its keys in the order Node's
-- JSON.parse saw; a table built in Lua is written with array-index keys
-- first, then the other keys sorted (by UTF-16 units), and matches Node's
-- key only when Node's object had its keys in that order. Vary headers
-- are looked up only under their lowercase names in ctx.headers.
function _M:cache_key(key, ctx)
  if type(key) ~= "string" then error(NAME .. ": key must be a string", 2) end
  ctx = ctx or {}
  if type(ctx) ~= "table" then error(NAME .. ": ctx must be a table", 2) end
  return keys.of(key, ctx, self.include_body, self.vary)
end

--- idem:request_cache_key(req) -> cache key, idempotency key | nil (the
-- request is passed through: its method is not the store's, or it has no
-- key) | nil, err (KEY_REQUIRED, BODY_NOT_JSON): the key the Node
-- middleware's Express integration gives the same HTTP request; see
-- idem:handle for req.
function _M:request_cache_key(req)
  if type(req) ~= "table" then error(NAME .. ": req must be a table", 2) end
  local method = (req.method or "GET"):upper()
  if not self.methods[method] then return nil end
  return keys.request({ method = method, path = req.path, headers = req.headers, body = req.body }, self)
end

local function now_ms(self) return self.runtime.now_ms() end

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
  if not ok then return false, errors.tag(res) end
  if res == nil then
    if herr ~= nil then return false, errors.tag(herr) end
    return nil, fail("SERIALIZATION_ERROR", "the handler returned nothing: return a value, "
                     .. "or nil and an error")
  end
  return true, res
end

-- The flow ----------------------------------------------------------------

local function lock_timeout(self)
  return fail("LOCK_TIMEOUT", "timed out after " .. self.lock_timeout_ms
              .. " ms waiting for the request with this key to finish")
end

-- The outcome of a key whose handler ran (or runs) elsewhere: replay the
-- record, wait for the holder, CONFLICT when it finished without storing, or
-- "again" when its lease expired (the caller takes over).
local function await(self, ck, shape, deadline)
  local layout = self.layout
  while true do
    -- The holder was just seen: a look now would find the same.
    self.runtime.sleep(self.poll_ms)
    local item, err = record.get(self, layout.watched(ck))
    if item == nil then return nil, errors.storage(err, "waiting for the lock") end
    local state = classify(self, item or nil, now_ms(self))
    if state == "record" then return "done", replay(item, shape) end
    if state ~= "held" then
      local rec, rerr = layout.settled(self, ck, state)
      if rec == "again" then return "again" end
      if rec == nil then return nil, errors.storage(rerr, "reading the record") end
      if rec then return "done", replay(rec, shape) end
      return "done", nil, fail("CONFLICT", "Idempotency-Key In Use: the request with this key "
                               .. "finished without a stored result; retry it")
    end
    if self.runtime.mono_ms() >= deadline then return "done", nil, lock_timeout(self) end
  end
end

-- The handler's turn: run it, then store what it gave (or release).
local function complete(self, h, ck, handler, ctx, shape)
  local layout = self.layout
  local ok, value = run_handler(self, h, handler, ctx)
  if ok == nil then
    if value.code ~= "LOST" then layout.release(self, h, ck) end
    return nil, value
  end
  local result, herr
  if ok then result = value else herr = errors.of_tagged(value) end
  if not self.should_cache(ok and result or herr) then
    layout.release(self, h, ck)
    return result, herr
  end
  local fields = ok and shape.to_record(result) or { response = value }
  local ttl = ok and self.ttl_ms or min(self.lock_ttl_ms, self.ttl_ms)
  local item = record.item(self, ck, fields, ttl)
  local stored, serr, how = layout.finish(self, h, ck, item)
  if not stored then
    if how == "refused" then
      layout.release(self, h, ck)
      return nil, errors.serialization(serr, result)
    end
    -- Nothing stored and the lease still ours: give it back, so waiters
    -- get CONFLICT now (and a retry runs) instead of LOCK_TIMEOUT later.
    if how == "not_applied" then layout.release(self, h, ck) end
    serr.result = result
    return nil, serr
  end
  if self.recent then self.recent:put(ck, item) end
  return result, herr
end

local function run(self, ck, handler, ctx, shape)
  local layout = self.layout
  if self.recent then
    local item = self.recent:get(ck, now_ms(self))
    if item then return replay(item, shape) end
  end
  local rec, err = layout.lookup(self, ck)
  if rec == nil then return nil, errors.storage(err, "reading the record") end
  if rec then return replay(rec, shape) end
  local deadline = self.runtime.mono_ms() + self.lock_timeout_ms
  while true do
    -- Tries again (after await) when the holder's lease expired; await
    -- sleeps first, which paces these tries.
    local h, aerr, seen = layout.acquire(self, ck)
    if aerr then return nil, aerr end
    if h then
      local again, rerr = layout.recheck(self, h, ck)
      if again == nil then return nil, errors.storage(rerr, "reading the record") end
      if again then return replay(again, shape) end
      return complete(self, h, ck, handler, ctx, shape)
    elseif seen and classify(self, seen, now_ms(self)) == "record" then
      if self.recent then self.recent:put(ck, seen) end
      return replay(seen, shape)
    end
    if self.runtime.mono_ms() >= deadline then return nil, lock_timeout(self) end
    local outcome, result, werr = await(self, ck, shape, deadline)
    if outcome == nil then return nil, result end
    if outcome == "done" then return result, werr end
  end
end

--- idem:execute(key, ctx?, handler) -> result | nil, err
-- handler(ctx) returns the result (any value DynamoDB can hold), or raises,
-- or returns nil, err. See the top of this file for what it costs.
function _M:execute(key, ctx, handler)
  if type(handler) ~= "function" then error(NAME .. ": handler must be a function", 2) end
  if ctx ~= nil and type(ctx) ~= "table" then error(NAME .. ": ctx must be a table", 2) end
  local kerr = keys.check(key, self.max_key_length)
  if kerr then return nil, kerr end
  local ck, cerr = self:cache_key(key, ctx)
  if not ck then return nil, cerr end
  return run(self, ck, handler, ctx or {}, record.plain)
end

-- The web helper --------------------------------------------------------------

local function error_response(err)
  local body = store.json_encode{ error = err.code, message = err.message }
  return { status = err.status or 500, headers = { ["Content-Type"] = "application/json" },
           body = body }
end

--- idem:handle(req, handler) -> response
-- For web frameworks (nginx not needed): req = { method, path (as the
-- client sent it: not percent-decoded, without the query, as Express's
-- req.path), headers (names in any case, values as received), body (the
-- raw bytes, or nil) }; handler(req) returns { status, headers, body }.
-- Requests whose method is not in opts.methods, or without the header (or
-- with it empty), go straight to the handler. Otherwise the response comes
-- from the first request with the same key and request (replays carry
-- replayed = true and an Idempotent-Replayed header); failures become JSON
-- error responses with err.status.
-- The request is keyed as the Node middleware's Express integration keys
-- it (idem:request_cache_key): header values as Node reads them (latin1),
-- a key longer than max_key_length bytes refused (400), no whitespace
-- check; the raw body hashed as a string, as behind express.text(). With
-- opts.json_bodies, an application/json body is hashed as express.json()
-- parses it (key order kept, {} when empty; 400 BODY_NOT_JSON when it is
-- not a JSON object or array): set it when the Node services parse JSON
-- bodies, so both keep one record per request.
function _M:handle(req, handler)
  if type(req) ~= "table" then error(NAME .. ": req must be a table", 2) end
  if type(handler) ~= "function" then error(NAME .. ": handler must be a function", 2) end
  local ck, kerr = self:request_cache_key(req)
  if not ck then
    if kerr then return error_response(kerr) end
    return handler(req)
  end
  local resp, err = run(self, ck, function()
    local r, herr = handler(req)
    if r == nil then return nil, herr end
    if type(r) ~= "table" or type(r.status) ~= "number" then
      error({ name = "Error", message = "the handler must return { status, headers, body }" })
    end
    return { status = r.status, headers = r.headers, body = r.body }
  end, req, record.http)
  if not resp then return error_response(err) end
  if resp.replayed then resp.headers["Idempotent-Replayed"] = "true" end
  return resp
end

--- idem:adapter() -> the Node StorageAdapter on this table (see
-- ddbkit/idempotency/adapter.lua): get / set / delete / acquire_lock /
-- release_lock / wait_for_lock, connect / disconnect.
function _M:adapter()
  return adapter.new(self)
end

-- The in-process LRU of finished records (fast mode) --------------------------

local recent = {}
local recent_mt = { __index = recent }

--- ddbkit.idempotency.lru(size) -> a least-recently-used map of cache key ->
-- record item (a ddbkit.lru), which forgets a record once it expires.
function _M.lru(size)
  return setmetatable({ map = lru.new(size) }, recent_mt)
end

function recent:get(k, now) return self.map:get(k, now) end
function recent:put(k, item) self.map:set(k, item, item.createdAt + item.ttl) end

return _M
