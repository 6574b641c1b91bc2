-- ddbkit.dedupe: request de-duplication on the shared store table, in the
-- Node store package's layout (compat.md A.2), so a Node service and a
-- ddbkit process join each other's in-flight jobs.
--
--   local dedupe = ddbkit.dedupe.new{ client = client }
--   local job, err = dedupe:register_or_join(hash)
--   if job and job.is_owner then
--     local ok, err = dedupe:complete(hash, fetch(), job)   -- or dedupe:fail(hash, e, job)
--   elseif job then
--     local value, err = dedupe:wait_for(hash)         -- nil: failed, timed out or gone
--   end
--
-- Item: pk = sk = "DEDUPE#<hash>" (the policy's "dedupe" prefix), jobId (a
-- UUID), status pending | completed | failed, result, error, createdAt,
-- updatedAt (epoch ms), ttl (epoch s: (now + job_timeout_ms) / 1000, or 0
-- when job_timeout_ms is 0 = no timeout).
--
-- `result` (what complete stores; Node's reader and this module agree both
-- ways):
--   nil          <-> "__UNDEFINED__"   (also: NULL / absent / "" read as nil)
--   ddbkit.null  <-> "__NULL__"        (cjson.null is accepted when writing)
--   any other    <-> its JSON text     (JSON null inside reads as ddbkit.null,
--                                       integral numbers as Lua 5.4 integers;
--                                       undecodable text reads as nil)
-- The JSON text itself is store.json_encode's (shared by every store).
--
-- Costs (requests): register_or_join / register 1 (owner, or joining a
-- pending job: the failed conditional Put returns the old item with
-- ReturnValuesOnConditionCheckFailure = ALL_OLD; the Node package pays 2);
-- complete 1 (Node: 1 too), fail 1, is_in_progress 1 (2 when it deletes an
-- expired job), wait_for 1 per poll (+1 when it marks a job timed out),
-- clear 1 Scan page + 1 BatchWriteItem per 25 items.
--
-- Ownership: complete and fail settle only the job the caller owns, on
-- condition that the item's jobId is still that job's (a UUID drawn for
-- each registration, the owner token; the Node layout needs nothing more).
-- A former owner whose stale job was taken over is refused (false) and
-- cannot settle its successor's job. Which job: the one passed (the table
-- register_or_join returned, or its job_id); else the last job this store
-- registered for that hash (remembered after it settles too, so a late
-- second settle is refused as well; the max_owned_jobs most recent hashes);
-- else, for a caller that registered nothing here, whatever job is
-- pending, as the Node package does. Two tasks of one process that own the
-- same hash one after the other (the second took the first's stale job
-- over) must pass their job: the store cannot tell them apart.
--
-- Lost answers: a write whose answer may hide that it applied (see
-- ddbkit.ambiguous) is resolved by reading the item back and looking for
-- our own jobId, never by guessing (design.md, Retries).
--
-- Time: wall clock (createdAt, ttl, expiry) from client.runtime.now_ms, the
-- wait_for deadline also on client.runtime.mono_ms, sleeping only through
-- client.runtime.sleep: nothing here blocks on its own.
local ddbkit_core = require "ddbkit.core"
local store = require "ddbkit.store"
local client_mod = require "ddbkit.client"
local lru = require "ddbkit.lru"
local may_have_applied = require("ddbkit.ambiguous").may_have_applied
local cjson = require "cjson.safe"   -- only for its null, which callers may pass

local type, pairs, ipairs, error, setmetatable, tostring, floor =
      type, pairs, ipairs, error, setmetatable, tostring, math.floor
local null, uuid = ddbkit_core.null, ddbkit_core.uuid
local json_null = cjson.null

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local NAME = "ddbkit.dedupe"
local DEFAULT_TABLE = "http-client-toolkit"
local UNDEFINED, NULL_TEXT = "__UNDEFINED__", "__NULL__"
local MAX_ATTEMPTS = 3
local PENDING, COMPLETED, FAILED = "pending", "completed", "failed"

local OPTIONS = {
  client = store.is_client,
  table_name = store.is_string,
  policy = store.is_any,
  job_timeout_ms = store.is_non_negative,
  poll_interval_ms = store.is_positive,
  max_owned_jobs = store.is_positive,
}

--- ddbkit.dedupe.new{ client, table_name?, policy?, job_timeout_ms? (300000),
--- poll_interval_ms? (500), max_owned_jobs? (10000) } -> store. Raises on a
--- bad option.
function _M.new(opts)
  opts = store.options(NAME .. ".new", opts, OPTIONS)
  if opts.client == nil then error(NAME .. ".new: opts.client must be a ddbkit.client", 2) end
  local max_owned = opts.max_owned_jobs or 10000
  if max_owned ~= floor(max_owned) then
    error(NAME .. ".new: opts.max_owned_jobs must be an integer >= 1", 2)
  end
  return setmetatable({
    client = opts.client,
    runtime = opts.client.runtime,
    table_name = opts.table_name or DEFAULT_TABLE,
    policy = store.policy(opts.policy),
    job_timeout_ms = opts.job_timeout_ms or 300000,
    poll_interval_ms = opts.poll_interval_ms or 500,
    -- hash -> the job id this store registered last for it
    owned = lru.new(max_owned),
  }, mt)
end

-- Value encoding -------------------------------------------------------

--- The `result` attribute for value v, or nil, err (SerializationError).
local function encode(v)
  if v == nil then return UNDEFINED end
  if v == null or v == json_null then return NULL_TEXT end
  return store.json_encode(v, "result")
end
--- The value a stored `result` stands for (Node's deserializeResult).
local function decode(s)
  if s == UNDEFINED or type(s) ~= "string" or s == "" then return nil end
  if s == NULL_TEXT then return null end
  local ok, v = store.json_decode(s)
  if not ok then return nil end   -- undecodable: Node gives undefined too
  return v
end

_M._encode, _M._decode = encode, decode   -- for the specs

-- Helpers ---------------------------------------------------------------

local function check_open(self, what)
  if self.closed then error(NAME .. ": " .. what .. " on a closed store", 3) end
end

-- TableName and Key for hash, or nil, err (a bad hash, a failing policy).
local function target(self, hash)
  local bad = store.check_part("hash", hash)
  if bad then return nil, bad end
  local key, err = store.key(self.policy, "dedupe", hash)
  if not key then return nil, err end
  local tname, terr = self.policy.table("dedupe", self.table_name)
  if not tname then return nil, terr end
  return tname, { pk = key, sk = key }
end

local function expired(self, item, now)
  local created = item.createdAt
  return self.job_timeout_ms > 0 and type(created) == "number"
     and now - created >= self.job_timeout_ms
end

local function get(self, tname, key)
  local res, err = self.client:get_item{ TableName = tname, Key = key, ConsistentRead = true }
  if not res then return nil, err end
  return res.Item or false
end

local function is_ccf(err)
  return err and err.code == "ConditionalCheckFailedException"
end

-- Registration ----------------------------------------------------------

local function owner_of(self, hash, job_id)
  self.owned:set(hash, job_id)
  return { job_id = job_id, is_owner = true }
end

--- dedupe:register_or_join(hash) -> { job_id, is_owner } | nil, err
--
-- One conditional Put of a new pending job:
--   attribute_not_exists(pk) OR #status <> :pending
--   [OR createdAt <= :stale]      (only when job_timeout_ms > 0)
-- Success: we own the job. The third clause takes over a pending job that
-- is already past job_timeout_ms (its owner is gone or too slow): because
-- the check and the write are one atomic step, of two callers taking over
-- the same stale job only one succeeds, and the other's condition fails on
-- the new job, which it then joins. (Node would join the stale job and wait
-- out its timeout; a Node waiter on the old job sees the new one pending
-- and gets its result.) A slow former owner's later complete() still
-- lands, on the new job: same request hash, same answer.
--
-- Condition failure: DynamoDB returns the old item (ALL_OLD), which by the
-- condition is pending and fresh: join its jobId, no second request. If its
-- jobId is our own candidate, an earlier attempt of this same Put (retried
-- by the engine after a lost response) did succeed: we are the owner.
--
-- Retries (at most 3 attempts, like Node) happen only when the answer does
-- not settle it: no old item came back (a DynamoDB without ALL_OLD support)
-- and the fallback read finds the item gone or settled again; or the Put
-- failed ambiguously (ddbkit.ambiguous: a timeout, a lost answer, a 5xx
-- after the retries) and the read-back shows neither our job nor a pending
-- one. Other failures return nil, err.
function _M:register_or_join(hash)
  check_open(self, "register_or_join")
  local tname, key = target(self, hash)
  if not tname then return nil, key end
  local rt = self.runtime
  local last_err
  for _ = 1, MAX_ATTEMPTS do
    local now = rt.now_ms()
    local job_id = uuid()
    local timeout = self.job_timeout_ms
    local cond = "attribute_not_exists(pk) OR #status <> :pending"
    local values = { [":pending"] = PENDING }
    if timeout > 0 then
      cond = cond .. " OR createdAt <= :stale"
      values[":stale"] = now - timeout
    end
    local ok, err = self.client:put_item{
      TableName = tname,
      Item = {
        pk = key.pk, sk = key.sk, jobId = job_id, status = PENDING,
        result = null, error = null, createdAt = now, updatedAt = now,
        ttl = timeout > 0 and floor((now + timeout) / 1000) or 0,
      },
      ConditionExpression = cond,
      ExpressionAttributeNames = { ["#status"] = "status" },
      ExpressionAttributeValues = values,
      ReturnValuesOnConditionCheckFailure = "ALL_OLD",
    }
    if ok then return owner_of(self, hash, job_id) end
    local old
    if is_ccf(err) then
      old = client_mod.item_of(err.item)
    elseif may_have_applied(err) then
      last_err = err   -- ambiguous (lost answer, timeout, 5xx): read back what happened
    else
      return nil, err
    end
    if not old then
      local gerr
      old, gerr = get(self, tname, key)
      if old == nil then return nil, gerr end
    end
    if old and old.jobId == job_id then return owner_of(self, hash, job_id) end
    if old and old.status == PENDING and type(old.jobId) == "string" then
      return { job_id = old.jobId, is_owner = false }
    end
    -- gone or settled since: try again
  end
  return nil, last_err or store.err("Contention", "register_or_join: the job for this hash kept "
    .. "changing; gave up after " .. MAX_ATTEMPTS .. " attempts")
end

--- dedupe:register(hash) -> job_id | nil, err (the job we own or joined)
function _M:register(hash)
  check_open(self, "register")
  local job, err = self:register_or_join(hash)
  if not job then return nil, err end
  return job.job_id
end

-- Settling ----------------------------------------------------------------

-- The job id a settle acts on (see Ownership above): the job given, else
-- the one this store registered for hash, else nil (any pending job).
local function job_of(self, hash, job)
  if job == nil then return self.owned:get(hash) end
  if type(job) == "table" then job = job.job_id end
  if type(job) ~= "string" or job == "" then
    error(NAME .. ": job must be the table register_or_join returned or its job_id", 3)
  end
  return job
end

-- SET the given attributes if the job is still pending (and still job_id,
-- when known). true: we settled it; false: already settled, gone or not
-- ours (not an error, as in Node). `status_to` is the status we set and
-- `mark` (attribute, value) what only our own settle writes: an answer that
-- may hide an applied write is resolved by reading them back.
local function settle(self, hash, job_id, sets, values, names, status_to, mark, mark_value)
  local tname, key = target(self, hash)
  if not tname then return nil, key end
  names["#status"] = "status"
  values[":pending"] = PENDING
  local cond = "attribute_exists(pk) AND #status = :pending"
  if job_id then
    cond = cond .. " AND jobId = :job"
    values[":job"] = job_id
  end
  local outcome, err
  for _ = 1, MAX_ATTEMPTS do
    values[":now"] = self.runtime.now_ms()
    local ok, uerr = self.client:update_item{
      TableName = tname, Key = key,
      UpdateExpression = "SET " .. sets .. ", updatedAt = :now",
      ConditionExpression = cond,
      ExpressionAttributeNames = names,
      ExpressionAttributeValues = values,
      ReturnValuesOnConditionCheckFailure = "ALL_OLD",
    }
    local old
    if ok then
      outcome = true
    elseif is_ccf(uerr) and not may_have_applied(uerr) then
      outcome = false   -- refused outright: settled already, gone or not ours
    elseif is_ccf(uerr) then
      -- An earlier attempt's answer was lost (err.ambiguous) and the
      -- engine's retry failed its condition, maybe on our own write: the
      -- old item (ALL_OLD) shows whether it was ours.
      old = client_mod.item_of(uerr.item) or false
    elseif may_have_applied(uerr) then
      err = uerr
      local gerr
      old, gerr = get(self, tname, key)
      if old == nil then return nil, gerr end
    else
      return nil, uerr
    end
    if old ~= nil then
      if old and old.status == status_to and old[mark] == mark_value
         and (job_id == nil or old.jobId == job_id) then
        outcome = true
      elseif old and old.status == PENDING and (job_id == nil or old.jobId == job_id) then
        outcome = nil   -- the ambiguous write did not apply: try again
      else
        outcome = false
      end
    end
    if outcome ~= nil then break end
  end
  if outcome == nil then return nil, err end
  return outcome
end

--- dedupe:complete(hash, value, job?) -> true (completed it) | false
--- (already settled, gone, or not the caller's job) | nil, err. value: any
--- JSON-encodable value, nil or ddbkit.null (see the encoding above). job:
--- the table register_or_join returned, or its job_id (see Ownership).
--- 1 request.
function _M:complete(hash, value, job)
  check_open(self, "complete")
  local job_id = job_of(self, hash, job)
  local result, err = encode(value)
  if not result then return nil, err end
  return settle(self, hash, job_id, "#status = :completed, #result = :result",
                { [":completed"] = COMPLETED, [":result"] = result }, { ["#result"] = "result" },
                COMPLETED, "result", result)
end

--- dedupe:fail(hash, err?, job?) -> true | false (already settled, gone, or
--- not the caller's job) | nil, err. Stores error = "Job failed" as Node
--- does (the given error is not stored).
function _M:fail(hash, _, job)
  check_open(self, "fail")
  local job_id = job_of(self, hash, job)
  return settle(self, hash, job_id, "#status = :failed, #error = :error",
                { [":failed"] = FAILED, [":error"] = "Job failed" }, { ["#error"] = "error" },
                FAILED, "error", "Job failed")
end

-- Marks the pending job `job_id` failed with "Job timed out". Returns the
-- item as it now is when someone else got there first (ALL_OLD), or nil.
local function time_out(self, tname, key, job_id)
  local ok, err = self.client:update_item{
    TableName = tname, Key = key,
    UpdateExpression = "SET #status = :failed, #error = :error, updatedAt = :now",
    ConditionExpression = "#status = :pending AND jobId = :job",
    ExpressionAttributeNames = { ["#status"] = "status", ["#error"] = "error" },
    ExpressionAttributeValues = { [":failed"] = FAILED, [":error"] = "Job timed out",
                                  [":pending"] = PENDING, [":job"] = job_id or "",
                                  [":now"] = self.runtime.now_ms() },
    ReturnValuesOnConditionCheckFailure = "ALL_OLD",
  }
  if ok then return nil end
  if is_ccf(err) then return client_mod.item_of(err.item) or false end
  return nil, err
end

--- dedupe:wait_for(hash) -> value | nil [, err]
-- missing: nil; completed: the decoded result; failed: nil; pending: poll
-- every poll_interval_ms until settled, or until job_timeout_ms after the
-- job's createdAt (or after this call started, whichever comes first, as
-- Node's local timer does), when it marks that job failed ("Job timed out",
-- only if it is still that pending job) and returns nil. If the job was
-- settled just before, the settled answer is returned instead. A pending
-- job replaced by another (taken over, or re-registered after settling) is
-- followed: the answer is for the same hash.
function _M:wait_for(hash)
  check_open(self, "wait_for")
  local tname, key = target(self, hash)
  if not tname then return nil, key end
  local rt, timeout = self.runtime, self.job_timeout_ms
  local started = rt.mono_ms()
  while true do
    local item, err = get(self, tname, key)
    if item == nil then return nil, err end
    if not item then return nil end
    local status = item.status
    if status == COMPLETED then return decode(item.result) end
    if status ~= PENDING then return nil end   -- failed (or unknown: nothing to wait for)
    local now = rt.now_ms()
    local waited = rt.mono_ms() - started
    if expired(self, item, now) or (timeout > 0 and waited >= timeout) then
      local cur, terr = time_out(self, tname, key, item.jobId)
      if terr then return nil, terr end
      if cur and cur.status == COMPLETED then return decode(cur.result) end
      if not (cur and cur.status == PENDING) then return nil end
      -- else: a new pending job replaced it; follow that one
      started = rt.mono_ms()
    else
      local pause = self.poll_interval_ms
      if timeout > 0 then
        local left = timeout - waited
        if type(item.createdAt) == "number" and item.createdAt + timeout - now < left then
          left = item.createdAt + timeout - now
        end
        if left < pause then pause = left end
      end
      if pause > 0 then rt.sleep(pause) end
    end
  end
end

--- dedupe:is_in_progress(hash) -> boolean | nil, err
-- true only for a pending job younger than job_timeout_ms. A job (of any
-- status) past job_timeout_ms is deleted, as Node does, and reported false;
-- the delete is conditional on its jobId so a newer job is never removed.
function _M:is_in_progress(hash)
  check_open(self, "is_in_progress")
  local tname, key = target(self, hash)
  if not tname then return nil, key end
  local item, err = get(self, tname, key)
  if item == nil then return nil, err end
  if not item then return false end
  if expired(self, item, self.runtime.now_ms()) then
    local ok, derr = self.client:delete_item{
      TableName = tname, Key = key,
      ConditionExpression = "jobId = :job",
      ExpressionAttributeValues = { [":job"] = item.jobId or "" },
    }
    if not ok and not is_ccf(derr) then return nil, derr end
    return false
  end
  return item.status == PENDING
end

--- dedupe:clear() -> true | nil, err
-- Deletes every item whose pk starts with the dedupe prefix: a Scan of the
-- whole table (as Node; DynamoDB has no prefix index on pk) and one
-- BatchWriteItem per 25 keys (the client resends unprocessed items).
function _M:clear()
  check_open(self, "clear")
  local prefix, perr = self.policy.prefix("dedupe")
  if not prefix then return nil, perr end
  local tname, terr = self.policy.table("dedupe", self.table_name)
  if not tname then return nil, terr end
  local batch = {}
  local function flush()
    if #batch == 0 then return true end
    local ok, err = self.client:batch_write_item{ RequestItems = { [tname] = batch } }
    batch = {}
    if not ok then return nil, err end
    return true
  end
  for page, err in self.client:scan_pages{
      TableName = tname, ConsistentRead = true,
      FilterExpression = "begins_with(pk, :prefix)",
      ProjectionExpression = "pk, sk",
      ExpressionAttributeValues = { [":prefix"] = prefix } } do
    if page == false then return nil, err end
    for _, item in ipairs(page.Items or {}) do
      batch[#batch + 1] = { DeleteRequest = { Key = { pk = item.pk, sk = item.sk } } }
      if #batch == 25 then
        local ok, ferr = flush()
        if not ok then return nil, ferr end
      end
    end
  end
  local ok, ferr = flush()
  if not ok then return nil, ferr end
  return true
end

--- dedupe:close(): the store holds nothing but the client, which is the
--- caller's; later calls on this store raise.
function _M:close()
  self.closed = true
end

return _M
