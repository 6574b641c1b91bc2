-- ddbkit.client: the DynamoDB client as Lua sees it. One snake_case method
-- per operation taking the DynamoDB request shape with plain Lua values,
-- pagination iterators, batch helpers that finish what DynamoDB left
-- unprocessed, and stats. The engine (ddbkit.core) marshals, signs, sends
-- and retries; this file only checks options and shapes the API.
local core = require "ddbkit.core"

local type, pairs, ipairs, error, setmetatable, tostring, next =
      type, pairs, ipairs, error, setmetatable, tostring, next
local floor, min, random = math.floor, math.min, math.random

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- Every operation the stores and users need; each becomes a method named in
-- snake_case (GetItem -> get_item).
local OPERATIONS = {
  "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
  "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",
  "CreateTable", "DescribeTable", "DeleteTable", "ListTables", "UpdateTable",
  "UpdateTimeToLive", "DescribeTimeToLive",
}
_M.OPERATIONS = OPERATIONS

local function snake(op)
  return (op:gsub("(%l)(%u)", "%1_%2"):lower())
end

-- Option name -> checker returning an error text or nil.
local function positive(v) if type(v) ~= "number" or v <= 0 then return "a positive number" end end
local function non_negative(v) if type(v) ~= "number" or v < 0 then return "a non-negative number" end end
local function at_least_one(v)
  if type(v) ~= "number" or v < 1 or v ~= floor(v) then return "an integer >= 1" end
end
local function str(v) if type(v) ~= "string" or v == "" then return "a non-empty string" end end
local function bool(v) if type(v) ~= "boolean" then return "a boolean" end end
local function tbl(v) if type(v) ~= "table" then return "a table" end end

-- Runtimes by name (opts.runtime = "openresty").
local RUNTIMES = {
  blocking = "ddbkit.runtime.blocking",
  coroutine = "ddbkit.runtime.coroutine",
  openresty = "ddbkit.runtime.openresty",
}

local OPTIONS = {
  region = str, endpoint = str, profile = str, credentials = tbl,
  timeout_ms = positive, connect_timeout_ms = positive, max_attempts = at_least_one,
  base_delay_ms = non_negative, max_backoff_ms = non_negative, retry_quota = non_negative,
  verify_tls = bool, max_response_bytes = positive, batch_max_attempts = at_least_one,
  runtime = function(v)
    if type(v) == "string" then
      if not RUNTIMES[v] then return '"blocking", "coroutine", "openresty" or a runtime table' end
      return
    end
    if type(v) ~= "table" or type(v.send) ~= "function" or type(v.sleep) ~= "function"
       or type(v.now_ms) ~= "function" or type(v.mono_ms) ~= "function" then
      return "a runtime table with send, sleep, now_ms and mono_ms"
    end
  end,
}

local function check_options(opts)
  if type(opts) ~= "table" then
    error("ddbkit.client: opts must be a table, got " .. type(opts), 3)
  end
  for k, v in pairs(opts) do
    local check = OPTIONS[k]
    if not check then
      error("ddbkit.client: unknown option opts." .. tostring(k), 3)
    end
    local want = check(v)
    if want then
      error("ddbkit.client: opts." .. k .. " must be " .. want .. ", got " .. type(v), 3)
    end
  end
  local c = opts.credentials
  if c then
    for k, v in pairs(c) do
      if k ~= "access_key_id" and k ~= "secret_access_key" and k ~= "session_token" then
        error("ddbkit.client: unknown option opts.credentials." .. tostring(k), 3)
      end
      if type(v) ~= "string" then
        error("ddbkit.client: opts.credentials." .. k .. " must be a string", 3)
      end
    end
    if not c.access_key_id or not c.secret_access_key then
      error("ddbkit.client: opts.credentials needs access_key_id and secret_access_key", 3)
    end
  end
end

-- The runtime of a new client: the one named or given, else OpenResty's
-- cosockets inside nginx (an `ngx` with sockets and phases), else blocking.
local function runtime_of(opts)
  local rt = opts.runtime
  if type(rt) == "table" then return rt end
  if rt == nil then
    local ngx = rawget(_G, "ngx")
    rt = type(ngx) == "table" and ngx.socket and ngx.get_phase and "openresty" or "blocking"
  end
  return require(RUNTIMES[rt])
end

--- ddbkit.client(opts) -> client | nil, err
-- opts.runtime: a runtime table, or "blocking" / "coroutine" / "openresty";
-- default: "openresty" inside nginx, else "blocking".
function _M.new(opts)
  opts = opts or {}
  check_options(opts)
  local runtime = runtime_of(opts)
  local cc, err = core.new_client(opts)
  if not cc then return nil, err end
  -- A runtime doing its own I/O learns the client's timeouts and TLS options.
  if runtime.attach then runtime.attach(cc, opts) end
  return setmetatable({
    core = cc,
    runtime = runtime,
    batch_max_attempts = opts.batch_max_attempts or 10,
    base_delay_ms = opts.base_delay_ms or 50,
    max_backoff_ms = opts.max_backoff_ms or 20000,
  }, mt)
end

local function check_params(name, params)
  if type(params) ~= "table" then
    error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(params) .. ")", 3)
  end
end

--- client:call(op, params) -> result | nil, err: any DynamoDB operation.
function _M:call(op, params)
  if type(op) ~= "string" then
    error("bad argument #1 to 'call' (string expected, got " .. type(op) .. ")", 2)
  end
  check_params("call", params)
  return self.runtime.send(self.core, op, params)
end

-- The per-request path: one type test inline, then straight to the runtime.
for _, op in ipairs(OPERATIONS) do
  local name = snake(op)
  _M[name] = function(self, params)
    if type(params) ~= "table" then check_params(name, params) end
    return self.runtime.send(self.core, op, params)
  end
end

--- client:prepare(op, params, { time = epoch_seconds }?) -> { method, url, headers, body }
function _M:prepare(op, params, opts)
  if type(op) ~= "string" then
    error("bad argument #1 to 'prepare' (string expected, got " .. type(op) .. ")", 2)
  end
  check_params("prepare", params)
  return self.core:prepare(op, params, opts and opts.time)
end

--- client:parse(status, body, request_id?, params?) -> result | nil, err
function _M:parse(status, body, request_id, params)
  return self.core:parse(status, body, request_id, params)
end

function _M:stats() return self.core:stats() end
function _M:reset_stats() return self.core:reset_stats() end
function _M:region() return self.core:region() end
function _M:endpoint() return self.core:endpoint() end
function _M:close() return self.core:close() end

-- Full-jitter backoff for the batch loops, by the engine's formula.
local function backoff(self, attempt)
  local ceiling = min(self.max_backoff_ms, self.base_delay_ms * 2 ^ (attempt - 1))
  self.runtime.sleep(random() * ceiling)
end

local function count_requests(map)
  local n = 0
  for _, reqs in pairs(map or {}) do
    if reqs.Keys then n = n + #reqs.Keys else n = n + #reqs end
  end
  return n
end

local function incomplete(what, left, attempts, field, value)
  local err = setmetatable({
    code = "UnprocessedItems",
    message = left .. " " .. what .. " still unprocessed after " .. attempts .. " attempts",
    status = 0, retryable = true,
  }, core.error_mt)
  err[field] = value
  return err
end

--- client:batch_write_item(params) -> result | nil, err
-- Resends UnprocessedItems with backoff until none are left or
-- batch_max_attempts requests were made; then fails with code
-- "UnprocessedItems" and err.unprocessed_items holding what is left.
function _M:batch_write_item(params)
  check_params("batch_write_item", params)
  local req, attempt = params, 1
  while true do
    local res, err = self.runtime.send(self.core, "BatchWriteItem", req)
    if not res then return nil, err end
    local left = res.UnprocessedItems
    if not left or next(left) == nil then return res end
    if attempt >= self.batch_max_attempts then
      return nil, incomplete("write requests", count_requests(left), attempt,
                             "unprocessed_items", left)
    end
    backoff(self, attempt)
    attempt = attempt + 1
    req = { RequestItems = left, ReturnConsumedCapacity = params.ReturnConsumedCapacity }
  end
end

--- client:batch_get_item(params) -> result | nil, err
-- Like batch_write_item for UnprocessedKeys; Responses of every round are
-- merged, so the result holds every item found.
function _M:batch_get_item(params)
  check_params("batch_get_item", params)
  local req, attempt, merged = params, 1, {}
  while true do
    local res, err = self.runtime.send(self.core, "BatchGetItem", req)
    if not res then return nil, err end
    for tname, items in pairs(res.Responses or {}) do
      local into = merged[tname] or {}
      merged[tname] = into
      for _, item in ipairs(items) do into[#into + 1] = item end
    end
    local left = res.UnprocessedKeys
    if not left or next(left) == nil then
      res.Responses = merged
      return res
    end
    if attempt >= self.batch_max_attempts then
      return nil, incomplete("keys", count_requests(left), attempt, "unprocessed_keys", left)
    end
    backoff(self, attempt)
    attempt = attempt + 1
    req = { RequestItems = left }
  end
end

-- Iterators: `for page, err in client:query_pages(params) do ... end`.
-- On failure the loop body runs once more with page == false and err set,
-- then the loop ends.
local function pager(self, op, params)
  local start, done = params.ExclusiveStartKey, false
  return function()
    if done then return nil end
    local req = {}
    for k, v in pairs(params) do req[k] = v end
    req.ExclusiveStartKey = start
    local page, err = self.runtime.send(self.core, op, req)
    if not page then
      done = true
      return false, err
    end
    start = page.LastEvaluatedKey
    done = start == nil
    return page
  end
end

local function itemizer(self, op, params)
  local pages = pager(self, op, params)
  local items, i = nil, 0
  return function()
    while true do
      if items and i < #items then
        i = i + 1
        return items[i]
      end
      local page, err = pages()
      if page == nil then return nil end
      if page == false then return false, err end
      items, i = page.Items or {}, 0
    end
  end
end

function _M:query_pages(params) check_params("query_pages", params) return pager(self, "Query", params) end
function _M:scan_pages(params) check_params("scan_pages", params) return pager(self, "Scan", params) end
function _M:query_items(params) check_params("query_items", params) return itemizer(self, "Query", params) end
function _M:scan_items(params) check_params("scan_items", params) return itemizer(self, "Scan", params) end

--- client:query_all(params) / client:scan_all(params) -> items | nil, err
local function collect(self, op, params)
  local out = {}
  for item, err in itemizer(self, op, params) do
    if item == false then return nil, err end
    out[#out + 1] = item
  end
  return out
end
function _M:query_all(params) check_params("query_all", params) return collect(self, "Query", params) end
function _M:scan_all(params) check_params("scan_all", params) return collect(self, "Scan", params) end

--- client:wait_for_table(name, timeout_ms?) -> description | nil, err
-- Polls DescribeTable until the table is ACTIVE (default 60 s).
function _M:wait_for_table(name, timeout_ms)
  local deadline = self.runtime.mono_ms() + (timeout_ms or 60000)
  while true do
    local res, err = self:describe_table{ TableName = name }
    if res and res.Table.TableStatus == "ACTIVE" then return res.Table end
    if not res and err.code ~= "ResourceNotFoundException" then return nil, err end
    if self.runtime.mono_ms() >= deadline then
      return nil, setmetatable({ code = "Timeout", status = 0, retryable = false,
        message = "table " .. name .. " not ACTIVE after " .. (timeout_ms or 60000) .. " ms" },
        core.error_mt)
    end
    self.runtime.sleep(200)
  end
end

return _M
