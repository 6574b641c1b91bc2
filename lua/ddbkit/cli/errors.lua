-- ddbkit.cli.errors: the errors the `ddbkit` command reports, shared by
-- ddbkit.cli and the modules it runs (configuration, tables), which raise
-- them where the trouble is found, however deep.
--
-- cli.main reports these as one line: usage errors (status 2) and failures
-- of the world (status 1). Anything else raised is a bug or a script's own
-- error, reported with its message (and traceback with --debug).
local type, error, setmetatable, getmetatable, tostring =
      type, error, setmetatable, getmetatable, tostring

local escape = require("ddbkit.pretty").escape

local _M = { _VERSION = "0.1.0" }

-- The metatables that mark the two kinds, for cli.main to tell them apart.
local Usage, Failure = {}, {}
_M.Usage, _M.Failure = Usage, Failure

--- errors.usage(cmd, what): raises a usage error; cmd names the help to
-- read (nil: the main help).
function _M.usage(cmd, what)
  error(setmetatable({ cmd = cmd, message = what }, Usage), 0)
end

--- errors.fail(code, message): raises a failure, "ddbkit: code: message".
function _M.fail(code, message)
  error(setmetatable({ code = code, message = message }, Failure), 0)
end

-- The text of an error value, as it came.
local function raw_text(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  if type(e) == "table" and type(e.message) == "string" then
    return (e.code and tostring(e.code) .. ": " or "") .. e.message
  end
  return "(error object is a " .. type(e) .. " value)"
end

--- errors.text(e): the text of any error value, ready for a terminal:
-- ddbkit's error tables print "code: message". A server's code and message
-- (and a script's error) may hold escape sequences; they are escaped
-- (pretty.escape), newlines included, so the error stays one line.
function _M.text(e)
  return escape(raw_text(e))
end

--- errors.is_interrupt(e): whether e is the error the hook
-- le.interruptible installs raises, "interrupted" (a position may be
-- prepended when it comes from luaL_error).
function _M.is_interrupt(e)
  return type(e) == "string" and (e == "interrupted" or e:match("^[^\n]*: interrupted$") ~= nil)
end

--- errors.without_position(e): the text of e without "file:line: ", for
-- messages about scripts the user named (their own position is in the text).
function _M.without_position(e)
  return (_M.text(e):gsub("^[^\n:]+:%d+: ", ""):gsub("^ddbkit: ", ""))
end

return _M
