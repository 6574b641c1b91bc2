-- ddbkit.resty: the stores as nginx request handlers (lua-nginx-module).
-- Stores are made once per worker (at module level of your handler file,
-- on a client using the OpenResty runtime, which ddbkit.client picks by
-- itself inside nginx); these helpers run them for the current request.
--
--   access_by_lua_block  { resty.rate_limit{ store = limiter, resource = "api" } }
--   content_by_lua_block { resty.cache_proxy{ cache = cache, location = "/__origin" } }
--   content_by_lua_block { resty.idempotent{ idem = idem, location = "/__origin" } }
--
-- Every helper needs cosockets: access_by_lua*, content_by_lua* (and
-- rewrite_by_lua* for rate_limit).
local type, pairs, ipairs, tostring, tonumber, error, next, pcall, setmetatable =
      type, pairs, ipairs, tostring, tonumber, error, next, pcall, setmetatable
local ceil, max, lower, find, gmatch, match = math.ceil, math.max, string.lower, string.find,
                                             string.gmatch, string.match
local ngx = ngx

local hash = require "ddbkit.hash"
local core = require "ddbkit.core"
local store = require "ddbkit.store"

local binary, is_binary, is_utf8, json_encode = core.binary, core.is_binary, store.is_utf8,
                                                store.json_encode

local _M = { _VERSION = "0.1.0" }

local function check(cond, name, what)
  if not cond then error("ddbkit.resty: " .. name .. " must be " .. what, 3) end
end

local function unknown(opts, allowed, fname)
  for k in pairs(opts) do
    if not allowed[k] then error("ddbkit.resty." .. fname .. ": unknown option opts." .. tostring(k), 3) end
  end
end

-- Headers that belong to one connection, never stored or replayed; and
-- Content-Length, which is recomputed for the body sent.
local HOP = {
  connection = true, ["keep-alive"] = true, ["proxy-authenticate"] = true,
  ["proxy-authorization"] = true, te = true, trailer = true, ["transfer-encoding"] = true,
  upgrade = true, ["content-length"] = true,
}

local function copy_headers(h)
  local out = {}
  for k, v in pairs(h or {}) do
    if type(k) == "string" and not HOP[lower(k)] then out[k] = v end
  end
  return out
end

-- Sends a whole response from a content handler. A HEAD gets the headers
-- only, with the Content-Length of the body a GET would get (`length`
-- when the body is not at hand: a HEAD passed through; false when the
-- upstream did not say, and then none is sent).
-- `mark` / `mark_value`: one more header (X-Cache), when mark is a name.
local function send(status, headers, body, mark, mark_value, length)
  ngx.status = status
  if headers then
    for k, v in pairs(headers) do
      if not HOP[lower(k)] then ngx.header[k] = v end
    end
  end
  if mark then ngx.header[mark] = mark_value end
  body = body or ""
  if length == nil then length = #body end
  ngx.header["Content-Length"] = length or nil
  if body ~= "" and ngx.req.get_method() ~= "HEAD" then ngx.print(body) end
end

-- Raised (as the error value) when Lua would need a request body that
-- nginx spooled to a file; the helpers answer 413 for it.
local SPOOLED = setmetatable({}, { __tostring = function() return "ddbkit.resty: spooled body" end })

-- The request body as a string ("" when none), for a request that needs
-- its bytes in Lua. Reading it (ngx.req.read_body) does not block the
-- worker; a body larger than client_body_buffer_size is in a temp file,
-- and reading a file would (io.* is blocking disk I/O), so that raises
-- SPOOLED instead.
local function request_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  if ngx.req.get_body_file() then error(SPOOLED, 0) end
  return ""
end

-- The 413 for SPOOLED.
local function refuse_spooled()
  ngx.status = 413
  ngx.header["Content-Type"] = "application/json"
  ngx.print(json_encode{ error = "REQUEST_BODY_TOO_LARGE",
    message = "the request body is larger than this location's client_body_buffer_size, so nginx "
              .. "spooled it to a file, which ddbkit.resty does not read (a blocking read); raise "
              .. "client_body_buffer_size above the largest body this location takes" })
  return ngx.exit(413)
end

-- ngx.location.capture of the current request at `location` (a URI prefix
-- put before the request's URI, or a function(uri) -> URI), same method,
-- args and body. The body is forwarded by nginx as it holds it (memory
-- buffers or its temp file, never copied through Lua: always_forward_body);
-- read_body only waits for it, without blocking the worker, and not for a
-- GET or HEAD. -> { status, headers, body, length } | nil, err. A HEAD
-- subrequest always reads as truncated (its response announces a length
-- and carries no body), so for HEAD that is not an error; `length` is then
-- the upstream's Content-Length.
local CAPTURE_OPTS = { always_forward_body = true }
local function capture(location, method)
  local uri = ngx.var.uri
  local target = type(location) == "function" and location(uri) or location .. uri
  local m = ngx["HTTP_" .. method]
  if not m then return nil, "method " .. method .. " cannot be passed to a subrequest" end
  if method ~= "GET" and method ~= "HEAD" then ngx.req.read_body() end
  local o = CAPTURE_OPTS  -- read by capture before it yields: one per worker will do
  o.method, o.args = m, ngx.var.args
  local res = ngx.location.capture(target, o)
  if not res then return nil, "subrequest to " .. target .. " failed" end
  local length
  if method == "HEAD" then
    length = tonumber(res.header and res.header["Content-Length"]) or false
  elseif res.truncated then
    return nil, "subrequest to " .. target .. " was truncated"
  end
  return { status = res.status, headers = copy_headers(res.header), body = res.body or "",
           length = length }
end

-- Rate limiting ----------------------------------------------------------------

local RATE_OPTS = { store = true, resource = true, priority = true, status = true, on_error = true }

--- resty.rate_limit(opts) -> true, or ends the request (does not return).
-- For access_by_lua* (or rewrite_by_lua*). One store:acquire per request:
-- granted, it returns true and the request goes on; refused, it answers
-- opts.status (429) with Retry-After = ceil(store:get_wait_time / 1000)
-- seconds (at least 1; one more Query).
--   opts.store     a ddbkit.ratelimit or ddbkit.adaptive store (required)
--   opts.resource  string, or function() -> string: the limit's resource
--                  (required; e.g. function() return "ip:" .. ngx.var.remote_addr end)
--   opts.priority  adaptive stores only: "user" / "background", or a
--                  function() returning one
--   opts.status    the refusal status (default 429)
--   opts.on_error  "allow" (default: the request goes on, the error is
--                  logged) or "deny" (503) when DynamoDB fails
function _M.rate_limit(opts)
  check(type(opts) == "table", "rate_limit's opts", "a table")
  unknown(opts, RATE_OPTS, "rate_limit")
  local store = opts.store
  check(type(store) == "table" and type(store.acquire) == "function", "opts.store",
        "a ddbkit.ratelimit or ddbkit.adaptive store")
  local resource = opts.resource
  if type(resource) == "function" then resource = resource() end
  check(type(resource) == "string" and resource ~= "", "opts.resource",
        "a non-empty string or a function returning one")
  local priority = opts.priority
  if type(priority) == "function" then priority = priority() end
  local status = opts.status or 429
  check(type(status) == "number" and status >= 400 and status <= 599, "opts.status", "an HTTP error status")
  local on_error = opts.on_error or "allow"
  check(on_error == "allow" or on_error == "deny", "opts.on_error", '"allow" or "deny"')

  local ok, err
  if priority ~= nil then ok, err = store:acquire(resource, priority)
  else ok, err = store:acquire(resource) end
  if ok then return true end
  if ok == nil then
    ngx.log(ngx.ERR, "ddbkit.resty.rate_limit: ", tostring(err))
    if on_error == "allow" then return true end
    return ngx.exit(503)
  end
  local wait, werr
  if priority ~= nil then wait, werr = store:get_wait_time(resource, priority)
  else wait, werr = store:get_wait_time(resource) end
  if not wait then ngx.log(ngx.WARN, "ddbkit.resty.rate_limit: get_wait_time: ", tostring(werr)) end
  ngx.header["Retry-After"] = tostring(max(1, ceil((wait or 1000) / 1000)))
  return ngx.exit(status)
end

-- Response cache ---------------------------------------------------------------

local CACHE_OPTS = { cache = true, location = true, ttl_seconds = true, key = true,
                     methods = true, statuses = true, header = true, tags = true }

-- The set of a list of methods or statuses. Made once per list and worker:
-- the options of a location are the same table on every request when the
-- handler file keeps them at module level (weak keys: a list made per
-- request costs a set per request, as before).
local sets = setmetatable({}, { __mode = "k" })
local function set_of(list)
  local s = sets[list]
  if s then return s end
  s = {}
  for _, v in ipairs(list) do s[type(v) == "string" and v:upper() or v] = true end
  sets[list] = s
  return s
end
local DEFAULT_METHODS = { "GET", "HEAD" }
local DEFAULT_STATUSES = { 200 }

-- Does an Accept-Encoding value accept gzip? Its own entry decides (q=0
-- refuses), else "*"; no header, or neither named, is identity only.
local function accepts_gzip(ae)
  if type(ae) == "table" then ae = table.concat(ae, ",") end
  if type(ae) ~= "string" then return false end
  local gzip, star
  for token in gmatch(lower(ae), "[^,]+") do
    local name = match(token, "^%s*([^;%s]+)")
    local q = tonumber(match(token, ";%s*q%s*=%s*([%d.]+)"))
    local ok = q == nil or q > 0
    if name == "gzip" or name == "x-gzip" then gzip = ok
    elseif name == "*" then star = ok end
  end
  if gzip == nil then return star or false end
  return gzip
end

-- May a response that carries this Vary be stored? Each entry is kept per
-- Accept-Encoding variant already (see cache_proxy); any other request
-- header, or "*", would need a key this helper cannot know, so it is not.
local function vary_ok(v)
  if v == nil then return true end
  if type(v) == "table" then v = table.concat(v, ",") end
  for name in gmatch(lower(tostring(v)), "[^,%s]+") do
    if name ~= "accept-encoding" then return false end
  end
  return true
end

-- May a response be kept for everyone? Not with cookies, nor when the
-- upstream said no-store or private, nor when it varies on what the key
-- does not hold.
local function shareable(headers)
  for k, v in pairs(headers) do
    local name = lower(k)
    if name == "set-cookie" then return false end
    if name == "vary" and not vary_ok(v) then return false end
    if name == "cache-control" then
      local cc = lower(type(v) == "table" and table.concat(v, ",") or tostring(v))
      if find(cc, "no-store", 1, true) or find(cc, "private", 1, true) then return false end
    end
  end
  return true
end

--- resty.cache_proxy(opts) -> true: a response cache in front of an
-- upstream, for content_by_lua*. On a hit the stored status, headers and
-- body are sent (header X-Cache: HIT; 1 GetItem); on a miss the request goes
-- to the internal location by ngx.location.capture, the response is sent
-- (X-Cache: MISS), then stored after the client has it (ngx.eof). Requests
-- whose method is not cached, or that carry Authorization without a custom
-- opts.key, go straight through (X-Cache: BYPASS). A HEAD is answered from
-- the GET's entry (its headers, and the stored body's Content-Length); its
-- miss fetches and stores the GET, as nginx's proxy_cache_convert_head
-- does, so a monitor's HEAD warms the cache for the GETs. A cache error is logged
-- and treated as a miss. Concurrent misses of one key each reach the
-- upstream (no request coalescing here).
--   opts.cache        a ddbkit.cache store (required)
--   opts.location     the internal location: a URI prefix put before the
--                     request's URI ("/__origin" -> /__origin/users/7), or
--                     function(uri) -> URI (required). Example:
--                       location /__origin/ { internal;
--                         rewrite ^/__origin(/.*)$ $1 break; proxy_pass http://backend; }
--   opts.ttl_seconds  how long an entry lives (default 60; 0 = until invalidated)
--   opts.key          function(method, uri, args) -> hash string, or nil to
--                     bypass; default ddbkit.hash_request(method .. " " .. uri, args)
--                     with args from ngx.req.get_uri_args() (method is "GET"
--                     for a HEAD)
--   opts.methods      methods served from the cache (default { "GET", "HEAD" })
--   opts.statuses     statuses stored (default { 200 })
--   opts.header       the hit/miss header's name (default "X-Cache"; false: none)
--   opts.tags         list of tags, or function(method, uri, args) -> list,
--                     stored with set_with_tags (for cache:invalidate_by_tag)
-- Responses with Set-Cookie, or Cache-Control no-store / private, are not
-- stored, nor responses whose Vary names anything but Accept-Encoding
-- (Vary: * included): the key cannot follow other request headers.
-- Accept-Encoding: a cached request reaches the upstream with
-- "Accept-Encoding: gzip" when the client accepts gzip and with none
-- otherwise (the client's header is rewritten before the subrequest), and
-- the two are separate entries (the gzip one's key ends in ":gzip"): a
-- gzip body is only ever served to a client that accepts gzip, and the
-- upstream cannot answer a third encoding the key does not know. Bodies are stored base64-encoded (binary-safe); an entry larger
-- than the cache's max_entry_size_bytes is silently not stored.
function _M.cache_proxy(opts)
  check(type(opts) == "table", "cache_proxy's opts", "a table")
  unknown(opts, CACHE_OPTS, "cache_proxy")
  local cache = opts.cache
  check(type(cache) == "table" and type(cache.get) == "function", "opts.cache", "a ddbkit.cache store")
  local location = opts.location
  check(type(location) == "string" or type(location) == "function", "opts.location",
        "a URI prefix or a function(uri) -> URI")
  local ttl = opts.ttl_seconds or 60
  check(type(ttl) == "number" and ttl >= 0, "opts.ttl_seconds", "a number >= 0")
  check(opts.key == nil or type(opts.key) == "function", "opts.key", "a function")
  check(opts.tags == nil or type(opts.tags) == "table" or type(opts.tags) == "function",
        "opts.tags", "a list or a function")
  local header = opts.header
  if header == nil then header = "X-Cache" end
  check(header == false or type(header) == "string", "opts.header", "a string or false")

  local method = ngx.req.get_method()
  local uri = ngx.var.uri
  local methods = set_of(opts.methods or DEFAULT_METHODS)
  local key, args
  if methods[method] then
    args = ngx.req.get_uri_args()
    local as = method == "HEAD" and "GET" or method  -- the GET's entry; see above
    if opts.key then
      key = opts.key(as, uri, args)
    elseif ngx.var.http_authorization == nil then
      key = hash.hash_request(as .. " " .. uri, args)
    end
    if key then
      -- Two variants only, gzip or identity; the subrequest inherits this.
      if accepts_gzip(ngx.var.http_accept_encoding) then
        key = key .. ":gzip"
        ngx.req.set_header("Accept-Encoding", "gzip")
      else
        ngx.req.clear_header("Accept-Encoding")
      end
    end
  end

  if not key then
    local res, err = capture(location, method)
    if not res then
      ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: ", err)
      return ngx.exit(502)
    end
    send(res.status, res.headers, res.body, header, "BYPASS", res.length)
    return true
  end

  local hit, gerr = cache:get(key)
  if gerr then ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: get: ", tostring(gerr)) end
  if type(hit) == "table" and type(hit.status) == "number" and type(hit.body) == "string" then
    local body = hit.b64 and ngx.decode_base64(hit.body) or hit.body
    if body then
      send(hit.status, hit.headers, body, header, "HIT")
      return true
    end
  end

  if method == "HEAD" then method = "GET" end
  local res, err = capture(location, method)
  if not res then
    ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: ", err)
    return ngx.exit(502)
  end
  send(res.status, res.headers, res.body, header, "MISS")
  if not set_of(opts.statuses or DEFAULT_STATUSES)[res.status] or not shareable(res.headers) then
    return true
  end
  ngx.eof()  -- the client has its answer; storing is our time, not theirs
  local value = { status = res.status, headers = res.headers, body = ngx.encode_base64(res.body),
                  b64 = true }
  if next(value.headers) == nil then value.headers = nil end
  local tags = opts.tags
  if type(tags) == "function" then tags = tags(method, uri, args) end
  local ok, serr
  if tags and #tags > 0 then
    ok, serr = cache:set_with_tags(key, value, ttl, tags)
  else
    ok, serr = cache:set(key, value, ttl)
  end
  if not ok then ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: set: ", tostring(serr)) end
  return true
end

-- Idempotency ----------------------------------------------------------------

local IDEM_OPTS = { idem = true, location = true, handler = true }

-- req.body, read when first used: idem:handle uses it only for a request
-- that is the store's (its bytes are part of the key).
local LAZY_BODY = { __index = function(t, k)
  if k ~= "body" then return nil end
  local body = request_body()
  rawset(t, "body", body)
  return body
end }

-- DynamoDB's item limit is 400 KB, key and bookkeeping attributes included.
local MAX_STORED_BYTES = 350 * 1024
_M.MAX_STORED_BYTES = MAX_STORED_BYTES

-- A value as it can be stored: UTF-8 text as is, other bytes as binary.
local function storable(v)
  if type(v) == "string" and not is_utf8(v) then return binary(v) end
  return v
end

-- A stored value back as bytes.
local function bytes(v)
  if is_binary(v) then return v.value end
  return v
end

-- The response as the idempotency store keeps it: binary where it is not
-- text; or, when it cannot fit an item, the stand-in (see idempotent).
local function to_stored(res)
  local size = #res.body
  local headers = {}
  for k, v in pairs(res.headers or {}) do
    if type(v) == "table" then
      local list = {}
      for i = 1, #v do
        list[i] = storable(v[i])
        size = size + #k + #v[i]
      end
      v = list
    else
      v = storable(v)
      size = size + #k + #tostring(v)
    end
    headers[k] = v
  end
  if size > MAX_STORED_BYTES then
    return { status = 500, headers = { ["Content-Type"] = "application/json" },
             body = json_encode{ error = "RESPONSE_NOT_STORED", status = res.status, bytes = size,
               message = "the request with this key ran, but its response was too large to store ("
                         .. size .. " bytes of body and headers, at most " .. MAX_STORED_BYTES
                         .. "); it is not run again" } }
  end
  return { status = res.status, headers = headers, body = storable(res.body) }
end

--- resty.idempotent(opts) -> true: idempotent request handling for
-- content_by_lua* (idem:handle with this request). A request whose method
-- is one of the store's methods (POST, PUT, PATCH) and that carries the
-- key header (Idempotency-Key) runs the handler once per key and request
-- across every worker and machine; every other request with that key gets
-- the first one's status, headers and body back (plus Idempotent-Replayed:
-- true), also while the first one still runs (it waits, up to the store's
-- lock_timeout_ms). Other requests go straight to the handler. Failures
-- are JSON error responses with the store's statuses (400, 409, 500, 503).
--   opts.idem      a ddbkit.idempotency store (required)
--   opts.location  the internal location that does the work, reached by
--                  ngx.location.capture with the same method, args and body:
--                  a URI prefix put before the request's URI, or
--                  function(uri) -> URI
--   opts.handler   instead of location: function(req) -> { status,
--                  headers, body } | nil, err, with req = { method, path,
--                  headers, body }
-- The request body is read only when the request is the store's (method
-- and key header): its bytes are part of the key. A body nginx spooled to
-- a file (larger than client_body_buffer_size) is not read (a blocking
-- read): such a request gets 413 REQUEST_BODY_TOO_LARGE, and nothing ran.
-- Raise client_body_buffer_size above the largest body the location takes.
-- A bypassed request's body reaches opts.location as nginx holds it,
-- unread; opts.handler gets req.body on first use, with the same 413 for
-- a spooled one.
--
-- Any response body can be replayed: UTF-8 text is stored as a string (as
-- the Node toolkit stores it), other bytes (a gzip or image body) as
-- DynamoDB binary, and replayed byte for byte with the same headers. The
-- work's subrequest goes out WITHOUT the client's Accept-Encoding (it is
-- put back for the client's own response after it), so an upstream that
-- honours it answers identity, which every client replaying the key can
-- read; compress toward clients with nginx's gzip on this location. An
-- upstream that compresses anyway is stored and replayed as it answered.
-- A response too large for a DynamoDB item (over MAX_STORED_BYTES of body
-- and headers) goes to this client as it is, and what is stored for the
-- key is a stand-in: 500 {"error":"RESPONSE_NOT_STORED",...}. A retry
-- then gets the stand-in and never runs the work again.
function _M.idempotent(opts)
  check(type(opts) == "table", "idempotent's opts", "a table")
  unknown(opts, IDEM_OPTS, "idempotent")
  local idem = opts.idem
  check(type(idem) == "table" and type(idem.handle) == "function", "opts.idem",
        "a ddbkit.idempotency store")
  local location, handler = opts.location, opts.handler
  check((location == nil) ~= (handler == nil), "opts.location or opts.handler", "given (one of them)")
  check(location == nil or type(location) == "string" or type(location) == "function",
        "opts.location", "a URI prefix or a function(uri) -> URI")
  check(handler == nil or type(handler) == "function", "opts.handler", "a function")

  local req = setmetatable({
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    headers = ngx.req.get_headers(),
  }, LAZY_BODY)
  local fresh, stored  -- this run's response, and what was stored for it
  local function work(r)
    local res, err
    if handler then
      res, err = handler(r)
    else
      local ae = ngx.var.http_accept_encoding
      if ae then ngx.req.clear_header("Accept-Encoding") end
      res, err = capture(location, r.method)
      if ae then ngx.req.set_header("Accept-Encoding", ae) end
      if not res then err = { name = "UpstreamError", message = err, status = 502 } end
    end
    if type(res) ~= "table" or type(res.status) ~= "number" then return res, err end
    res.body = bytes(res.body) or ""
    fresh, stored = res, to_stored(res)
    return stored
  end
  local done, resp = pcall(idem.handle, idem, req, work)
  if not done then
    if resp == SPOOLED then return refuse_spooled() end
    error(resp, 0)
  end
  if stored and not resp.replayed and resp.status == stored.status and resp.body == stored.body then
    resp = fresh  -- this request ran the work (and stored it): its client gets it as it came
  end
  local headers = resp.headers
  if headers then
    for k, v in pairs(headers) do
      if type(v) == "table" and not is_binary(v) then
        for i = 1, #v do v[i] = bytes(v[i]) end
      else
        headers[k] = bytes(v)
      end
    end
  end
  send(resp.status, headers, bytes(resp.body))
  return true
end

return _M
