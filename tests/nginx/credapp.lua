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

-- /host: a client whose credentials come from a function of the host,
-- which yields (ngx.sleep, as a call to a vault would) and hands out keys
-- of 4 s named ngxhost<pid>x<n>e<expiration> (DynamoDB Local takes letters
-- and digits), so the spec can tell from the signer log who gave which.
local host_client
local host_n = 0
function _M.host()
  if not host_client then
    host_client = assert(ddbkit.client{
      region = "us-east-1",
      endpoint = os.getenv("DDBKIT_TEST_PROXY"),
      credentials = function()
        ngx.sleep(0.01)
        host_n = host_n + 1
        local exp = math.floor(ngx.now()) + 4
        return { access_key_id = "ngxhost" .. ngx.worker.pid() .. "x" .. host_n .. "e" .. exp,
                 secret_access_key = "ngxhostsecret" .. host_n, expiration = exp }
      end,
    })
  end
  local res, err = host_client:list_tables{ Limit = 1 }
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
