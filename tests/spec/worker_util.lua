-- What the worker scripts (tests/spec/*_worker.lua) share. They run as OS
-- processes of their own, outside busted, and talk to their spec through
-- files in a directory both know.
local W = {}

--- W.exists(path) -> whether a file is there (a signal from the spec).
function W.exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

--- W.my_pid() -> this interpreter's pid, as a string. /proc/self is the
-- process that opens it, so no shell in between can be mistaken for it.
function W.my_pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("*l")
  f:close()
  return assert(s:match("^(%d+)"))
end

--- W.publish(path, text) -> true | nil, err: writes text to path by
-- renaming a whole temporary file onto it, so a reader never sees it half
-- written.
function W.publish(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return os.rename(tmp, path)
end

return W
