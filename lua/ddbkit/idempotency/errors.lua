-- ddbkit.idempotency.errors: the store's error codes and HTTP statuses, and
-- a handler's error as the Node middleware stores it (the tagged object
-- {"@@idempotency/error": true, name, message, extras?}), both ways.
local store = require "ddbkit.store"

local type, pairs, tostring, floor = type, pairs, tostring, math.floor

local _M = {}

local ERROR_TAG = "@@idempotency/error"

-- BODY_NOT_JSON is ddbkit's: a body given as JSON text (ctx.body_json, or
-- an application/json request with json_bodies) that does not parse, where
-- Node's JSON.parse (express.json()) would have refused it.
_M.STATUS = {
  KEY_REQUIRED = 400, LOCK_TIMEOUT = 409, CONFLICT = 409,
  STORAGE_ERROR = 503, SERIALIZATION_ERROR = 500, LOST = 500, BODY_NOT_JSON = 400,
}

--- errors.fail(code, message, fields?) -> err with err.status (500 for a
-- code not in STATUS) and the given fields.
function _M.fail(code, message, fields)
  local e = store.err(code, message)
  e.status = _M.STATUS[code] or 500
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end
local fail = _M.fail

--- errors.storage(cause, what) -> STORAGE_ERROR for a DynamoDB failure.
function _M.storage(cause, what)
  return fail("STORAGE_ERROR", what .. ": " .. tostring(cause), { cause = cause, retryable = true })
end

--- errors.serialization(cause, result) -> SERIALIZATION_ERROR for a result
-- DynamoDB would refuse (not encodable, too large), the handler's result
-- kept on the error so it is not lost.
function _M.serialization(cause, result)
  return fail("SERIALIZATION_ERROR", "the result cannot be stored: " .. tostring(cause and cause.message),
              { cause = cause, result = result })
end

--- errors.refused_value(err) -> whether a write was refused for what the
-- value is (not encodable here: status 0; too large for an item: DynamoDB's
-- size message), not for how it was asked.
function _M.refused_value(err)
  return err.code == "ValidationException"
     and (err.status == 0 or (err.message or ""):lower():find("size", 1, true) ~= nil)
end

--- errors.tag(e) -> a handler's error as the Node tagged object: name and
-- message, and the other plain fields of an error table as extras (so code
-- and status survive a replay).
function _M.tag(e)
  if type(e) ~= "table" then
    return { [ERROR_TAG] = true, name = "Error", message = tostring(e) }
  end
  local extras
  for k, v in pairs(e) do
    local tv = type(v)
    if type(k) == "string" and k ~= "name" and k ~= "message" and k ~= "extras"
       and (tv == "string" or tv == "number" or tv == "boolean") then
      extras = extras or {}
      extras[k] = v
    end
  end
  if type(e.extras) == "table" then
    for k, v in pairs(e.extras) do extras = extras or {}; extras[k] = v end
  end
  local name = e.name or e.code
  return { [ERROR_TAG] = true, name = type(name) == "string" and name or "Error",
           message = type(e.message) == "string" and e.message or tostring(e), extras = extras }
end

--- errors.is_tagged(v) -> whether a stored response is a tagged error.
function _M.is_tagged(v)
  return type(v) == "table" and v[ERROR_TAG] == true
end

--- errors.of_tagged(t) -> the error value every caller gets for a stored
-- (tagged) error.
function _M.of_tagged(t)
  local extras = type(t.extras) == "table" and t.extras or nil
  -- Only an HTTP error status is one to answer with: a ddbkit error's
  -- status (0 when nothing was sent, DynamoDB's 400 for its own faults) is
  -- not the web request's.
  local s = extras and extras.status
  local status = type(s) == "number" and s >= 400 and s <= 599 and s == floor(s) and s or 500
  local name = type(t.name) == "string" and t.name or "Error"
  local message = type(t.message) == "string" and t.message or ""
  return fail(name, message, { name = name, status = status, extras = extras, handler_error = true })
end

return _M
