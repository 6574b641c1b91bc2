-- ddbkit.resty.cache_proxy: a response cache in DynamoDB in front of an
-- internal location (content_by_lua*); see ddbkit.resty.
local type, pairs, ipairs, tostring, tonumber, next, setmetatable =
      type, pairs, ipairs, tostring, tonumber, next, setmetatable
local lower, find, gmatch, match, concat = string.lower, string.find, string.gmatch,
                                           string.match, table.concat
local ngx = ngx

local http = require "ddbkit.resty.http"
local hash = require "ddbkit.hash"

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
  if type(ae) == "table" then ae = concat(ae, ",") end
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
  if type(v) == "table" then v = concat(v, ",") end
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
      local cc = lower(type(v) == "table" and concat(v, ",") or tostring(v))
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
-- does, so a monitor's HEAD warms the cache for the GETs. A cache error is
-- logged and treated as a miss. Concurrent misses of one key each reach
-- the upstream (no request coalescing here).
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
--                     (each list is read once, on its first use: keep it
--                     at module level, and make a new list to change it)
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
-- upstream cannot answer a third encoding the key does not know. Bodies
-- are stored base64-encoded (binary-safe); an entry larger than the
-- cache's max_entry_size_bytes is silently not stored.
local function cache_proxy(opts)
  http.check(type(opts) == "table", "cache_proxy's opts", "a table")
  http.unknown(opts, CACHE_OPTS, "cache_proxy")
  local cache = opts.cache
  http.check(type(cache) == "table" and type(cache.get) == "function", "opts.cache", "a ddbkit.cache store")
  local location = opts.location
  http.check(type(location) == "string" or type(location) == "function", "opts.location",
             "a URI prefix or a function(uri) -> URI")
  local ttl = opts.ttl_seconds or 60
  http.check(type(ttl) == "number" and ttl >= 0, "opts.ttl_seconds", "a number >= 0")
  http.check(opts.key == nil or type(opts.key) == "function", "opts.key", "a function")
  http.check(opts.tags == nil or type(opts.tags) == "table" or type(opts.tags) == "function",
             "opts.tags", "a list or a function")
  local header = opts.header
  if header == nil then header = "X-Cache" end
  http.check(header == false or type(header) == "string", "opts.header", "a string or false")

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
    local res, err = http.capture(location, method)
    if not res then
      ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: ", err)
      return ngx.exit(502)
    end
    http.send(res.status, res.headers, res.body, header, "BYPASS", res.length)
    return true
  end

  local hit, gerr = cache:get(key)
  if gerr then ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: get: ", tostring(gerr)) end
  if type(hit) == "table" and type(hit.status) == "number" and type(hit.body) == "string" then
    local body = hit.b64 and ngx.decode_base64(hit.body) or hit.body
    if body then
      http.send(hit.status, hit.headers, body, header, "HIT")
      return true
    end
  end

  if method == "HEAD" then method = "GET" end
  local res, err = http.capture(location, method)
  if not res then
    ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: ", err)
    return ngx.exit(502)
  end
  http.send(res.status, res.headers, res.body, header, "MISS")
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
  if ok == false then      -- too large for an entry: not stored, not an error
    ngx.log(ngx.INFO, "ddbkit.resty.cache_proxy: ", serr)
  elseif not ok then
    ngx.log(ngx.ERR, "ddbkit.resty.cache_proxy: set: ", tostring(serr))
  end
  return true
end

return cache_proxy
