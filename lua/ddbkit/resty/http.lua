-- ddbkit.resty.http: what the ddbkit.resty helpers share about the
-- current request and its response: option checks, the response sent from
-- a content handler, the request body (never read from a file: that would
-- block the worker) and the subrequest to an internal location.
local type, pairs, tostring, tonumber, error, setmetatable =
      type, pairs, tostring, tonumber, error, setmetatable
local lower = string.lower
local ngx = ngx

local json_encode = require("ddbkit.store").json_encode

local _M = { _VERSION = "0.1.0" }

function _M.check(cond, name, what)
  if not cond then error("ddbkit.resty: " .. name .. " must be " .. what, 3) end
end

function _M.unknown(opts, allowed, fname)
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

function _M.copy_headers(h)
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
function _M.send(status, headers, body, mark, mark_value, length)
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
_M.SPOOLED = setmetatable({}, { __tostring = function() return "ddbkit.resty: spooled body" end })

-- The request body as a string ("" when none), for a request that needs
-- its bytes in Lua. Reading it (ngx.req.read_body) does not block the
-- worker; a body larger than client_body_buffer_size is in a temp file,
-- and reading a file would (io.* is blocking disk I/O), so that raises
-- SPOOLED instead.
function _M.request_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  if ngx.req.get_body_file() then error(_M.SPOOLED, 0) end
  return ""
end

-- The 413 for SPOOLED: sends it and ends the request.
function _M.refuse_spooled()
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
function _M.capture(location, method)
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
  return { status = res.status, headers = _M.copy_headers(res.header), body = res.body or "",
           length = length }
end

return _M
