-- ddbkit.resty.idempotent: an idempotency store in front of an internal
-- location or a handler (content_by_lua*); see ddbkit.resty.
local type, pairs, tostring, error, pcall, setmetatable, rawset =
      type, pairs, tostring, error, pcall, setmetatable, rawset
local ngx = ngx

local http = require "ddbkit.resty.http"
local core = require "ddbkit.core"
local store = require "ddbkit.store"

local binary, is_binary, is_utf8, json_encode = core.binary, core.is_binary, store.is_utf8,
                                                store.json_encode

local IDEM_OPTS = { idem = true, location = true, handler = true }

-- req.body, read when first used: idem:handle uses it only for a request
-- that is the store's (its bytes are part of the key).
local LAZY_BODY = { __index = function(t, k)
  if k ~= "body" then return nil end
  local body = http.request_body()
  rawset(t, "body", body)
  return body
end }

-- DynamoDB's item limit is 400 KB, key and bookkeeping attributes included.
local MAX_STORED_BYTES = 350 * 1024

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
      size = size + #k + #tostring(v)
      v = storable(v)
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
--                  headers, body }: path as the client sent it (not
--                  percent-decoded, no query; ngx.var.uri is nginx's
--                  normalized one), headers as ngx.req.get_headers() gives
--                  them (lowercase names), body the raw bytes
-- The request is keyed as the Node middleware's Express integration keys
-- the same request (idem:handle): the method, the path as sent (Express's
-- req.path), the key and vary header values as Node reads their bytes,
-- the raw body (hashed as text, or as express.json() parses it with the
-- store's json_bodies), so a Node service on the same table replays what
-- this location stored and the other way round.
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
local function idempotent(opts)
  http.check(type(opts) == "table", "idempotent's opts", "a table")
  http.unknown(opts, IDEM_OPTS, "idempotent")
  local idem = opts.idem
  http.check(type(idem) == "table" and type(idem.handle) == "function", "opts.idem",
             "a ddbkit.idempotency store")
  local location, handler = opts.location, opts.handler
  http.check((location == nil) ~= (handler == nil), "opts.location or opts.handler", "given (one of them)")
  http.check(location == nil or type(location) == "string" or type(location) == "function",
             "opts.location", "a URI prefix or a function(uri) -> URI")
  http.check(handler == nil or type(handler) == "function", "opts.handler", "a function")

  local req = setmetatable({
    method = ngx.req.get_method(),
    -- What Express's req.path is: the request line's path, undecoded (an
    -- internal redirect does not change it).
    path = ngx.var.request_uri:match("^[^?]*"),
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
      res, err = http.capture(location, r.method)
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
    if resp == http.SPOOLED then return http.refuse_spooled() end
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
  http.send(resp.status, headers, bytes(resp.body))
  return true
end

return idempotent
