-- The handlers of tests/nginx/credentials.conf.in: clients whose
-- credentials come from the chain (the container endpoint the fake plays),
-- made once per worker. Answers JSON: the worker's pid, whether the call
-- worked, and the error's code and message when not (never a secret: the
-- spec greps the answers for the fake's secrets).
local ddbkit = require "ddbkit"
local cjson = require "cjson.safe"

local ngx = ngx
local _M = {}

local clients = {}

local function client(shared, profile)
  local key = (shared and "dict" or "worker") .. ":" .. (profile or "")
  if not clients[key] then
    clients[key] = assert(ddbkit.client{
      endpoint = os.getenv("DDBKIT_TEST_PROXY"),
      credentials_dict = shared and "ddbkit_creds" or nil,
      profile = profile,
    })
  end
  return clients[key]
end

local function json(v)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(v))
end

function _M.call()
  local c = client(ngx.var.arg_dict == "1", ngx.var.arg_profile)
  local res, err = c:list_tables{ Limit = 1 }
  json{ pid = ngx.worker.pid(), ok = res ~= nil,
        code = err and err.code, message = err and err.message }
end

function _M.info()
  local c = client(ngx.var.arg_dict == "1", ngx.var.arg_profile)
  local info = c:credentials()
  info.pid = ngx.worker.pid()
  json(info)
end

return _M
