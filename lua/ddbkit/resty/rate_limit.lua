-- ddbkit.resty.rate_limit: a rate limit store in front of a location
-- (access_by_lua*); see ddbkit.resty.
local type, tostring = type, tostring
local ceil, max = math.ceil, math.max
local ngx = ngx

local http = require "ddbkit.resty.http"

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
local function rate_limit(opts)
  http.check(type(opts) == "table", "rate_limit's opts", "a table")
  http.unknown(opts, RATE_OPTS, "rate_limit")
  local store = opts.store
  http.check(type(store) == "table" and type(store.acquire) == "function", "opts.store",
             "a ddbkit.ratelimit or ddbkit.adaptive store")
  local resource = opts.resource
  if type(resource) == "function" then resource = resource() end
  http.check(type(resource) == "string" and resource ~= "", "opts.resource",
             "a non-empty string or a function returning one")
  local priority = opts.priority
  if type(priority) == "function" then priority = priority() end
  local status = opts.status or 429
  http.check(type(status) == "number" and status >= 400 and status <= 599, "opts.status", "an HTTP error status")
  local on_error = opts.on_error or "allow"
  http.check(on_error == "allow" or on_error == "deny", "opts.on_error", '"allow" or "deny"')

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

return rate_limit
