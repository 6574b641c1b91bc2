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
--
-- One file per helper, each documenting its options: ddbkit/resty/
-- rate_limit.lua, cache_proxy.lua and idempotent.lua; what they share
-- about the request and its response is ddbkit/resty/http.lua.
return {
  _VERSION = "0.1.0",
  rate_limit = require "ddbkit.resty.rate_limit",
  cache_proxy = require "ddbkit.resty.cache_proxy",
  idempotent = require "ddbkit.resty.idempotent",
}
