-- ddbkit.client: the DynamoDB client as Lua sees it. One snake_case method
-- per operation taking the DynamoDB request shape with plain Lua values,
-- pagination iterators, batch helpers that finish what DynamoDB left
-- unprocessed, and stats. The engine (ddbkit.core) marshals, signs, sends
-- and retries; this file only checks options and shapes the API.
local core = require "ddbkit.core"
local credentials = require "ddbkit.credentials"

local type, pairs, ipairs, error, setmetatable, tostring, next =
      type, pairs, ipairs, error, setmetatable, tostring, next
local floor, min, random = math.floor, math.min, math.random
local format, sort, concat = string.format, table.sort, table.concat
local null, is_array = core.null, core.is_array

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
  region = str, endpoint = str, profile = str,
  credentials = function(v)
    if type(v) ~= "table" and type(v) ~= "function" then return "a table or a function" end
  end,
  ca_file = str, use_fips_endpoint = bool, use_dualstack_endpoint = bool,
  credentials_dict = str,
  timeout_ms = positive, connect_timeout_ms = positive, max_attempts = at_least_one,
  base_delay_ms = non_negative, max_backoff_ms = non_negative, retry_quota = non_negative,
  verify_tls = bool, max_response_bytes = positive, batch_max_attempts = at_least_one,
  max_pages = at_least_one,
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
  if type(c) == "table" then
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
-- opts.max_pages: the most pages one paging walk reads (default MAX_PAGES,
-- see Paging below); opts.batch_max_attempts: see batch_write_item.
-- Credentials: opts.credentials = { access_key_id, secret_access_key,
-- session_token? } (static), or a function returning such a table plus
-- expiration? (epoch seconds), or nil, err: called when the credentials
-- are due, in the calling task (it may yield in the coroutine and OpenResty
-- runtimes); a failure keeps the old ones while they last. Without it the
-- AWS chain applies (environment, web identity, profiles, SSO,
-- credential_process, container, IMDS). opts.credentials_dict (OpenResty
-- only): the name of a lua_shared_dict the workers share, so that one
-- worker fetches each rotation for the whole nginx.
-- TLS and endpoints: opts.ca_file (a PEM bundle; else AWS_CA_BUNDLE; in
-- OpenResty cosockets trust nginx's lua_ssl_trusted_certificate instead,
-- which must name the same bundle: ca_file cannot be applied per socket
-- there), opts.use_fips_endpoint, opts.use_dualstack_endpoint (else
-- AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT = "true").
function _M.new(opts)
  opts = opts or {}
  check_options(opts)
  local runtime = runtime_of(opts)
  if opts.credentials_dict and runtime.name ~= "openresty" then
    error("ddbkit.client: opts.credentials_dict is for the openresty runtime", 2)
  end
  local cc, err = core.new_client(opts)
  if not cc then return nil, err end
  -- A runtime doing its own I/O learns the client's timeouts and TLS options.
  if runtime.attach then runtime.attach(cc, opts) end
  -- Credentials Lua fetches (a host function; the chain in a runtime doing
  -- its own I/O) are looked at before every send: wrapping the runtime is
  -- the one place every call of the client and its stores and locks passes.
  local ensure, cred_st
  if type(opts.credentials) == "function" then
    ensure, cred_st = credentials.host(opts.credentials, runtime)
  elseif runtime.credentials then
    ensure, cred_st = runtime.credentials(cc, opts)
  end
  if ensure then runtime = credentials.wrap(runtime, ensure) end
  return setmetatable({
    core = cc,
    cred_state = cred_st,
    runtime = runtime,
    batch_max_attempts = opts.batch_max_attempts or 10,
    max_pages = opts.max_pages or _M.MAX_PAGES,
    base_delay_ms = opts.base_delay_ms or 50,
    max_backoff_ms = opts.max_backoff_ms or 20000,
  }, mt)
end

local function check_params(name, params)
  if type(params) ~= "table" then
    error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(params) .. ")", 3)
  end
end

-- Result shapes --------------------------------------------------------
-- A 200 from a broken or hostile server may carry any JSON: `5`, `null`,
-- `{"Item":true}`. The engine's decoder (bindings/core/decode.c) refuses a
-- body that is not an object and every wrong-shaped field that holds
-- items (Item, Items, Attributes, LastEvaluatedKey, Responses, Keys), so
-- those are not checked again here; the few other fields some code here or
-- in a store reads are, once, for every operation: a wrong shape is
-- MalformedResponse, never a raise in a store.

--- client.malformed(message) -> an error value with code MalformedResponse
function _M.malformed(message)
  return setmetatable({ code = "MalformedResponse", message = message, status = 0,
                        retryable = false }, core.error_mt)
end
local malformed = _M.malformed

local function is_map(v) return type(v) == "table" and v ~= null and not is_array(v) end
local is_item = is_map
local function map_of(check)
  return function(v)
    if not is_map(v) then return false end
    for k, x in pairs(v) do
      if type(k) ~= "string" or not check(x) then return false end
    end
    return true
  end
end
local function number(v) return type(v) == "number" end

-- Result field -> its checker: the fields the decoder takes as plain JSON.
local SHAPE = {
  Count = number, ScannedCount = number,
  UnprocessedItems = map_of(function(x) return type(x) == "table" and x ~= null end),
  UnprocessedKeys = map_of(function(x) return is_map(x) and type(x.Keys) == "table" end),
  Table = is_map, TableDescription = is_map,
  TableNames = function(v) return type(v) == "table" and v ~= null end,
}

--- client.check_result(op, res) -> res | nil, err (MalformedResponse)
-- res must be a JSON object whose known fields have their DynamoDB types.
-- Cost: one lookup per result field; nothing per returned item.
function _M.check_result(op, res)
  if not is_map(res) then
    local what = res == null and "null" or type(res)
    if type(res) == "table" and res ~= null then what = "a list" end
    return nil, malformed(op .. ": the response is " .. what .. ", not a JSON object")
  end
  for k, v in pairs(res) do
    local check = SHAPE[k]
    if type(k) ~= "string" then   -- a JSON array ([1,2]) decodes to a table too
      return nil, malformed(op .. ": the response is a list, not a JSON object")
    end
    if check and not check(v) then
      return nil, malformed(op .. ": the response's " .. tostring(k)
                            .. " has the wrong type (" .. type(v) .. ")")
    end
  end
  return res
end
local check_result = _M.check_result

-- An error's details (err.item, err.cancellation_reasons) come from the
-- same untrusted body; stores read them through these two.

--- client.item_of(v) -> v when it is an item (a map), else nil
function _M.item_of(v) if is_item(v) then return v end end

--- client.reason_of(err, i) -> the i-th cancellation reason (a map), or nil
function _M.reason_of(err, i)
  local reasons = type(err) == "table" and err.cancellation_reasons
  if type(reasons) ~= "table" then return nil end
  local r = reasons[i]
  if is_map(r) then return r end
end

-- Every request of this file goes through here: send, then check the shape.
local function send(self, op, params)
  local res, err = self.runtime.send(self.core, op, params)
  if res == nil then return nil, err end
  return check_result(op, res)
end

--- client:call(op, params) -> result | nil, err: any DynamoDB operation.
function _M:call(op, params)
  if type(op) ~= "string" then
    error("bad argument #1 to 'call' (string expected, got " .. type(op) .. ")", 2)
  end
  check_params("call", params)
  return send(self, op, params)
end

-- The per-request path: one type test inline, then straight to the runtime.
for _, op in ipairs(OPERATIONS) do
  local name = snake(op)
  _M[name] = function(self, params)
    if type(params) ~= "table" then check_params(name, params) end
    return send(self, op, params)
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
  local res, err = self.core:parse(status, body, request_id, params)
  if res == nil then return nil, err end
  return check_result("parse", res)
end

function _M:stats() return self.core:stats() end
function _M:reset_stats() return self.core:reset_stats() end
function _M:region() return self.core:region() end
function _M:endpoint() return self.core:endpoint() end
function _M:close() return self.core:close() end

--- client:credentials() -> { provider, profile?, expires_at?, refresh_at?,
-- fetches, failures, last_error? }: which credentials the client signs
-- with and when they expire (epoch seconds); never the secret.
function _M:credentials() return credentials.info(self.core, self.cred_state) end

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
    local res, err = send(self, "BatchWriteItem", req)
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
    local res, err = send(self, "BatchGetItem", req)
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

-- Paging -------------------------------------------------------------------
-- Every paging loop of ddbkit (these iterators and the stores' own loops)
-- follows LastEvaluatedKey through one cursor, so none can run forever: a
-- server that answers the key it was just given (or any key seen before
-- in the walk, e.g. two keys in turn) ends the walk with MalformedResponse,
-- and a walk stops after client.max_pages pages (default MAX_PAGES) with
-- code "TooManyPages". 10,000 pages is 10 GB at DynamoDB's 1 MB per page:
-- more than a store ever reads; a caller walking a larger table raises it.
_M.MAX_PAGES = 10000

-- A key's canonical text: equal keys give equal texts whatever the table
-- identity or pairs() order (attribute names sorted; values tagged by type,
-- strings length-prefixed so no two keys share a text).
local function canonical(v, out, depth)
  if depth > 32 then out[#out + 1] = "?" return end
  local t = type(v)
  if t == "string" then
    out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "number" then
    out[#out + 1] = format("n%.17g", v)
  elseif t == "boolean" then
    out[#out + 1] = v and "T" or "F"
  elseif t == "table" then
    if v == null then out[#out + 1] = "0" return end
    local names = {}
    for k in pairs(v) do names[#names + 1] = k end
    sort(names, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "string" or ta == "number" then return a < b end
      return false
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(names) do
      canonical(k, out, depth + 1)
      out[#out + 1] = "="
      canonical(v[k], out, depth + 1)
    end
    out[#out + 1] = "}"
  else
    out[#out + 1] = t
  end
end

local function key_text(key)
  local out = {}
  canonical(key, out, 0)
  return concat(out)
end

--- client:cursor(op, start_key?) -> cursor: the paging state of one walk.
-- cursor:next(page) -> key | nil (the walk is done) | false, err: the
-- ExclusiveStartKey of the next request, after checking the page's
-- LastEvaluatedKey is new and the page bound is not reached.
local Cursor = {}
Cursor.__index = Cursor

function _M:cursor(op, start)
  local c = setmetatable({ op = op, pages = 0, max = self.max_pages or _M.MAX_PAGES,
                           seen = {} }, Cursor)
  if start ~= nil then c.seen[key_text(start)] = true end
  return c
end

function Cursor:next(page)
  self.pages = self.pages + 1
  local key = page.LastEvaluatedKey
  if key == nil then return nil end
  local text = key_text(key)
  if self.seen[text] then
    return false, malformed(self.op .. ": the server repeated LastEvaluatedKey (page "
                            .. self.pages .. "), which would page forever")
  end
  if self.pages >= self.max then
    return false, setmetatable({ code = "TooManyPages", status = 0, retryable = false,
      message = self.op .. ": stopped after " .. self.pages .. " pages (client option "
                .. "max_pages) with more to read" }, core.error_mt)
  end
  self.seen[text] = true
  return key
end

-- Iterators: `for page, err in client:query_pages(params) do ... end`.
-- On failure the loop body runs once more with page == false and err set,
-- then the loop ends.
local function pager(self, op, params)
  local cursor, start, done = self:cursor(op, params.ExclusiveStartKey), params.ExclusiveStartKey, false
  return function()
    if done then return nil end
    local req = {}
    for k, v in pairs(params) do req[k] = v end
    req.ExclusiveStartKey = start
    local page, err = send(self, op, req)
    if page then start, err = cursor:next(page) end
    if not page or start == false then
      done = true
      return false, err
    end
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
    if res and not is_map(res.Table) then
      return nil, malformed("DescribeTable: the response has no Table")
    end
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
