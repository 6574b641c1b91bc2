-- ddbkit.credentials: the Lua side of a client's credentials. The engine
-- resolves the chain and, in the blocking and coroutine runtimes, fetches
-- and refreshes by itself (ddbk_call, the event loop). Two cases need Lua:
--
--   * a host provider, `credentials = function() ... end`: the function is
--     called when the credentials are due (and may yield in a task or an
--     nginx request), what it returns is checked and installed with
--     core.cred_set; a failure keeps the old credentials while they last and
--     tries again after a backoff (1 s doubling to 60 s, jittered), and
--     meanwhile calls with none usable fail at once with the last error;
--   * the OpenResty runtime with a chain provider that fetches (IMDS,
--     container, STS, SSO, credential_process): the engine's machine is run
--     here with cosockets (runtime.request, runtime.exec, runtime.sleep),
--     one fetch per rotation per nginx through a lua_shared_dict
--     (credentials_dict), else one per worker.
--
-- Both are hooked in one place: client.lua wraps the client's runtime so
-- that its send and call_raw (every store's I/O, the lock machine's and the
-- keepers' calls included) first call ensure(cc). The check on the hot
-- path is one clock read against one cached number (next_ms: when the state
-- must be looked at again).
--
-- Known limits: a blocking lock keeper (an engine thread) cannot call a Lua
-- host function: it signs with what the host last set, so a host function's
-- credentials must outlive a lease period (they do when the function hands
-- out credentials of minutes or more). The shared dict holds the
-- credentials in nginx's shared memory (as lua-resty-aws does): readable by
-- any Lua code of that nginx, never written to a log.
local core = require "ddbkit.core"

local type, pairs, tostring, setmetatable, pcall, tonumber =
      type, pairs, tostring, setmetatable, pcall, tonumber
local find, sub, match, concat = string.find, string.sub, string.match, table.concat
local random, floor, huge = math.random, math.floor, math.huge
local cred_state, cred_info, cred_set = core.cred_state, core.cred_info, core.cred_set
local error_mt = core.error_mt

local _M = { _VERSION = "0.1.0" }

local BACKOFF_FIRST_MS = 1000
local BACKOFF_MAX_MS = 60000
local RECHECK_MS = 50        -- refresh_at is in seconds: look again this often in its last second
local WAIT_POLL_MS = 20      -- a caller with expired credentials waits for another's fetch
local WAIT_MAX_MS = 10000    -- ... at most this long (also the shared dict lock's ttl)
local MAX_ACTIONS = 200      -- a bound on one fetch's actions (the machine has its own)

local function cred_error(message)
  return setmetatable({ code = "CredentialsError", message = message, status = 0,
                        retryable = false }, error_mt)
end

-- What a host function may return, field by field.
local FIELDS = { access_key_id = true, secret_access_key = true, session_token = true,
                 expiration = true }

--- validate(t) -> t | nil, message: checks what a credentials function
-- returned. The message names the field that is wrong, never its value.
function _M.validate(t)
  if type(t) ~= "table" then
    return nil, "returned " .. type(t) .. " instead of a table"
  end
  for k in pairs(t) do
    if not FIELDS[k] then
      return nil, "returned an unknown field " .. (type(k) == "string" and k:gsub("%c", "?") or type(k))
    end
  end
  for _, k in pairs{ "access_key_id", "secret_access_key", "session_token" } do
    local v = t[k]
    if v ~= nil or k ~= "session_token" then
      if type(v) ~= "string" or v == "" then
        return nil, "returned no " .. k .. " (a non-empty string)"
      end
      if find(v, "%c") then
        return nil, "returned a " .. k .. " with a control character"
      end
    end
  end
  local e = t.expiration
  if e ~= nil and (type(e) ~= "number" or e ~= e or e <= 0 or e >= 1e11) then
    return nil, "returned an expiration that is not epoch seconds"
  end
  return t
end

-- When to look at the cell again after it said "fresh": its refresh time
-- (seconds, so within its last second every RECHECK_MS), never when the
-- credentials do not expire.
local function next_check(cc, now)
  local at = cred_info(cc).refresh_at
  if not at then return huge end
  at = at * 1000
  if at <= now then return now + RECHECK_MS end
  return at
end

local function backoff(st, now)
  st.backoff_ms = st.backoff_ms > 0 and st.backoff_ms * 2 or BACKOFF_FIRST_MS
  if st.backoff_ms > BACKOFF_MAX_MS then st.backoff_ms = BACKOFF_MAX_MS end
  st.retry_ms = now + st.backoff_ms / 2 + random() * st.backoff_ms / 2
end

-- Host provider ---------------------------------------------------------------

-- One call of the host function: installs what it returned, or records the
-- failure. Returns nil, or an error when nothing usable is left.
local function host_refresh(st, cc, now, state)
  st.busy = true
  local ok, t, ferr = pcall(st.fn)
  st.busy = false
  local msg
  if not ok then
    msg = "the credentials function raised: " .. tostring(t)
  elseif t == nil then
    msg = "the credentials function failed: " .. tostring(ferr)
  else
    local good, why = _M.validate(t)
    if not good then
      msg = "the credentials function " .. why
    else
      local set, serr = cred_set(cc, t)
      if set then
        st.backoff_ms, st.retry_ms = 0, 0
        st.next_ms = next_check(cc, now)
        return nil
      end
      msg = "the credentials function's credentials were refused: " .. tostring(serr.message)
    end
  end
  st.failures = st.failures + 1
  st.last_error = "CredentialsError: host: " .. sub(msg, 1, 240)
  backoff(st, now)
  if state == "expired" or cred_state(cc) == "expired" then
    -- Nothing usable: every call looks again (and fails at once with this
    -- error until the backoff ends).
    st.next_ms = 0
    return cred_error("host: " .. msg)
  end
  st.next_ms = st.retry_ms
end

--- host(fn, runtime) -> ensure(cc) for a client whose credentials come
-- from fn; ensure returns nil, or an error value when the call must not go
-- on (no usable credentials and the function failed or is in backoff).
function _M.host(fn, runtime)
  local st = { fn = fn, next_ms = 0, retry_ms = 0, backoff_ms = 0, failures = 0,
               busy = false }
  local now_ms, sleep = runtime.now_ms, runtime.sleep
  local function ensure(cc)
    local now = now_ms()
    if now < st.next_ms then return nil end
    local state = cred_state(cc)
    if state == "fresh" then
      st.next_ms = next_check(cc, now)
      return nil
    end
    if st.busy then
      -- Another task of this client is in the function (it yields). With
      -- usable credentials go on; else wait for it, bounded.
      if state == "expired" then
        local waited = 0
        while st.busy and waited < WAIT_MAX_MS do
          sleep(WAIT_POLL_MS)
          waited = waited + WAIT_POLL_MS
        end
      end
      return nil
    end
    if now < st.retry_ms then
      if state == "expired" then
        return cred_error(sub(st.last_error or "host: no credentials", 19)
                          .. " (retried after a backoff)")
      end
      return nil
    end
    return host_refresh(st, cc, now, state)
  end
  return ensure, st
end

-- The engine's machine, driven from Lua (OpenResty) -----------------------------

--- drive(fetch, runtime, verify) -> true (done) | false (failed): runs a
-- fetch to its end with the runtime's request, exec and sleep.
function _M.drive(f, runtime, verify)
  for _ = 1, MAX_ACTIONS do
    local a = f:next()
    local kind = a.kind
    if kind == "http" then
      local status, body = runtime.request(a, verify)
      if status then
        f:feed_http(status, body)
      else
        f:feed_http(0, nil, body.code == "Timeout", body.message)
      end
    elseif kind == "exec" then
      local code, out, what = runtime.exec(a.argv, a.timeout_ms, a.max_bytes)
      f:feed_exec(code, out, what)
    elseif kind == "sleep" then
      runtime.sleep(a.ms)
    else
      return kind == "done"
    end
  end
  return false
end

-- A shared dict entry: expiration, key id, secret, token, one a line (none
-- holds a control character: the parsers and the cell refuse them).
local function encode(t)
  return concat({ t.expiration or 0, t.access_key_id, t.secret_access_key,
                  t.session_token or "" }, "\n")
end

local function decode(v)
  if type(v) ~= "string" then return nil end
  local e, ak, sk, tok = match(v, "^(%d+)\n([^\n]+)\n([^\n]+)\n([^\n]*)$")
  if not e then return nil end
  e = tonumber(e)
  return { expiration = e > 0 and e or nil, access_key_id = ak, secret_access_key = sk,
           session_token = tok ~= "" and tok or nil }
end

-- Installs the dict's credentials when they are newer than the cell's and
-- leave it fresh. true when the call can go on with them.
local function from_dict(st, cc)
  local t = decode(st.dict:get(st.key))
  if not t then return false end
  local have = cred_info(cc).expires_at or 0
  if (t.expiration or 0) <= have then return false end
  if not cred_set(cc, t) then return false end
  st.installs = st.installs + 1
  return cred_state(cc) == "fresh"
end

-- This worker fetches: begin, drive, share, end. Nothing returned: the
-- call then signs with what the cell holds, or fails with its error.
local function fetch_here(st, cc, runtime)
  local f = core.cred_begin(cc)
  if not f then return f end   -- false: a fetch of this worker runs; nil: not due / backoff
  st.fetching = true
  local dok, done = pcall(_M.drive, f, runtime, st.verify)
  st.fetching = false
  if not dok then error(done, 0) end   -- f, collected, gives the claim back
  local t
  if done and st.dict then
    local ok, got = pcall(f.take, f)
    if ok and got then t = got end
  end
  local ok = core.cred_end(cc, f)
  if ok and t then
    local ttl = 0
    if t.expiration then ttl = t.expiration - floor(core.now_ms() / 1000) end
    if ttl >= 0 then st.dict:set(st.key, encode(t), ttl > 0 and ttl or 1) end
  end
  return true
end

-- Waits (bounded, yielding) until cond() is true.
local function wait(runtime, cond)
  local waited = 0
  while waited < WAIT_MAX_MS do
    if cond() then return true end
    runtime.sleep(WAIT_POLL_MS)
    waited = waited + WAIT_POLL_MS
  end
  return cond()
end

--- engine(cc, runtime, opts) -> ensure(cc), st for a client whose chain
-- provider fetches and whose runtime does its own I/O (OpenResty).
-- opts.dict: a shared dict (ngx.shared[name]) or nil; opts.verify: TLS
-- verification of the credential endpoints; opts.pid: this worker's id.
function _M.engine(cc, runtime, opts)
  local st = { next_ms = 0, dict = opts.dict, verify = opts.verify, installs = 0,
               key = "ddbkit:creds:" .. core.cred_id(cc), pid = opts.pid or 0 }
  local lock_key = st.key .. ":lock"
  local now_ms = runtime.now_ms
  local function ensure(c)
    local now = now_ms()
    if now < st.next_ms then return nil end
    local state = cred_state(c)
    if state == "fresh" then
      st.next_ms = next_check(c, now)
      return nil
    end
    local dict = st.dict
    if not dict then
      -- Per worker: the cell's claim is the single flight; a caller that
      -- finds it taken and nothing usable waits for that fetch.
      local mine = fetch_here(st, c, runtime)
      if mine == false and state == "expired" then
        wait(runtime, function() return not st.fetching or cred_state(c) ~= "expired" end)
      end
      return nil
    end
    if from_dict(st, c) then return nil end
    if dict:add(lock_key, st.pid, WAIT_MAX_MS / 1000) then
      -- Released however the fetch ends: a raise inside would otherwise
      -- leave the others waiting out the lock's ttl.
      local ok, err = pcall(fetch_here, st, c, runtime)
      dict:delete(lock_key)
      if not ok then error(err, 0) end
      return nil
    end
    if state == "expired" then
      wait(runtime, function()
        return from_dict(st, c) or not dict:get(lock_key) or cred_state(c) ~= "expired"
      end)
    end
    -- A refresh another worker runs: go on with the credentials held.
    return nil
  end
  return ensure, st
end

--- wrap(runtime, ensure) -> a runtime whose send and call_raw call
-- ensure(cc) first; everything else is the runtime's own.
function _M.wrap(runtime, ensure)
  local send, call_raw = runtime.send, runtime.call_raw or core.call_raw
  local w = setmetatable({}, { __index = runtime })
  w.send = function(cc, op, params)
    local err = ensure(cc)
    if err then return nil, err end
    return send(cc, op, params)
  end
  w.call_raw = function(cc, op, json)
    local err = ensure(cc)
    if err then return nil, err, nil end
    return call_raw(cc, op, json)
  end
  w.unwrapped = runtime
  return w
end

--- info(cc, st?) -> what client:credentials() shows: the cell's figures,
-- with a host provider's failures (counted here) added. Never a secret.
function _M.info(cc, st)
  local info = cred_info(cc)
  if st and st.fn then
    info.failures = info.failures + st.failures
    info.last_error = st.last_error or info.last_error
  end
  return info
end

return _M
