-- The OpenResty runtime: inside nginx (lua-nginx-module, LuaJIT) a call
-- must never block the worker, so the engine only prepares (builds and
-- signs) requests and parses responses, and this file does the I/O with
-- cosockets (ngx.socket.tcp): HTTP/1.1, TLS with SNI and verification,
-- keep-alive through the cosocket pool, retries with ngx.sleep backoff.
-- While a call waits on DynamoDB, the worker serves other requests.
--
--   local client = ddbkit.client{ region = "eu-west-1" }   -- chosen by itself inside nginx
--   local client = ddbkit.client{ runtime = "openresty" }  -- or by name
--
-- Cosockets exist only in some phases (rewrite, access, content, timers,
-- some ssl_* phases). A call from anywhere else (init, init_worker, set,
-- header_filter, body_filter, log, balancer) raises
--   "ddbkit: cosockets are not available in the <phase> phase; run this
--    from a timer: ngx.timer.at(0, fn)".
--
-- What it needs from nginx.conf: a `resolver` for a DynamoDB host name
-- (cosockets do not read /etc/resolv.conf), and `lua_ssl_trusted_certificate`
-- for https endpoints (verification is on unless the client says
-- verify_tls = false). The CA bundle is nginx's, one per worker: a cosocket
-- cannot take a CA of its own, so a client's ca_file (or AWS_CA_BUNDLE)
-- does not apply here; lua_ssl_trusted_certificate must name that bundle
-- (it is not detectable from Lua whether it does).
--
-- Credentials: the engine resolves the chain; fetches (IMDS, container,
-- STS, SSO, credential_process) run here, with cosockets (request below),
-- ngx.sleep and ngx.pipe (exec below), never blocking the worker; see
-- ddbkit.credentials. With the client option credentials_dict (a
-- lua_shared_dict) one worker fetches per rotation for the whole nginx;
-- without it, one per worker. The variables the chain reads must reach the
-- workers: nginx clears the environment but for `env NAME;` lines.
--
-- One attempt, as the engine's transport does it: connect (or take a
-- pooled connection), send the request with Content-Length, read the status
-- line, the headers and a Content-Length or chunked body (or up to the close
-- when there is neither), then return the connection to the pool when the
-- response allows it. An attempt sends its request once: when the
-- connection dies after the request went out (a pooled one the server
-- closed, or a server that applied the request and lost its answer), the
-- attempt fails with err.ambiguous = true and the engine's retry policy
-- decides (max_attempts, the quota, a backoff), as for the engine's own
-- transport; nothing is resent unseen, since whether DynamoDB carried the
-- request out cannot be known from here.
-- Stats go to the engine's counters (client:record per attempt,
-- client:record_call per call), so client:stats() reads the same as with the
-- blocking runtime.
local core = require "ddbkit.core"

local type, pairs, tonumber, tostring, error, setmetatable, select, pcall =
      type, pairs, tonumber, tostring, error, setmetatable, select, pcall
local lower, find, match, sub, fmt = string.lower, string.find, string.match, string.sub, string.format
local byte = string.byte
local concat = table.concat
local unpack = table.unpack or unpack
local mono_ms = core.mono_ms
local error_mt = core.error_mt

local _M = { _VERSION = "0.1.0", name = "openresty" }

local DEFAULT_CONNECT_MS = 1000     -- the engine's defaults
local DEFAULT_TIMEOUT_MS = 3000
local DEFAULT_MAX_BODY = 64 * 1024 * 1024
local POOL_IDLE_MS = 60000          -- how long an idle connection stays pooled
local POOL_SIZE = 64                -- connections kept per endpoint and worker

-- Phases whose handlers may use cosockets and ngx.sleep (lua-nginx-module's
-- ngx.socket.tcp context list).
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- Per-client settings, from the options ddbkit.client was given (attach).
-- Weak keys: a closed and collected client takes its entry with it.
local settings = setmetatable({}, { __mode = "k" })
local DEFAULTS = { connect_ms = DEFAULT_CONNECT_MS, timeout_ms = DEFAULT_TIMEOUT_MS,
                   max_body = DEFAULT_MAX_BODY, verify = true }

--- attach(core_client, opts): called by ddbkit.client.new with the client's
-- options; keeps the ones the I/O needs (timeout_ms, connect_timeout_ms,
-- verify_tls, max_response_bytes). A core client never attached gets the
-- engine's defaults.
function _M.attach(cc, opts)
  settings[cc] = {
    connect_ms = opts.connect_timeout_ms or DEFAULT_CONNECT_MS,
    timeout_ms = opts.timeout_ms or DEFAULT_TIMEOUT_MS,
    max_body = opts.max_response_bytes or DEFAULT_MAX_BODY,
    verify = opts.verify_tls ~= false,
  }
end

local function phase_error(level)
  local ngx = ngx
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then
    error("ddbkit: the openresty runtime runs only inside OpenResty (lua-nginx-module)", level + 1)
  end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    error("ddbkit: cosockets are not available in the " .. tostring(phase)
          .. " phase; run this from a timer: ngx.timer.at(0, fn)", level + 1)
  end
  return ngx
end

local function fail(code, message, retryable, status)
  return setmetatable({ code = code, message = message, status = status or 0,
                        retryable = retryable and true or false }, error_mt)
end

-- URLs ---------------------------------------------------------------------

-- scheme://host[:port]/path -> { https, host, port, path, pools }; the engine
-- hands out the same few URLs again and again, so they are parsed once.
local urls = {}
local nurls = 0

local function parse_url(url)
  local u = urls[url]
  if u then return u end
  local scheme, rest = match(url, "^(https?)://(.*)$")
  if not scheme then return nil, "unsupported URL " .. url end
  local hostport, path = match(rest, "^([^/]*)(.*)$")
  local host, port
  if sub(hostport, 1, 1) == "[" then
    host, port = match(hostport, "^(%[[^%]]+%]):?(%d*)$")
  else
    host, port = match(hostport, "^([^:]+):?(%d*)$")
  end
  if not host then return nil, "unsupported URL " .. url end
  u = {
    https = scheme == "https",
    host = host,
    port = tonumber(port) or (scheme == "https" and 443 or 80),
    path = path ~= "" and path or "/",
  }
  -- The cosocket pool is per worker, shared by every client: a connection
  -- is handed only to a client with the same TLS settings (the server name
  -- sent and verified, and whether it was verified at all), or a client
  -- that verifies would reuse one an unverified client opened. The trusted
  -- CAs are nginx's lua_ssl_trusted_certificate, one per worker.
  if u.https then
    u.pools = { [true] = fmt("ddbkit:https:%s:%d:sni=%s:verify", host, u.port, host),
                [false] = fmt("ddbkit:https:%s:%d:sni=%s:noverify", host, u.port, host) }
  else
    local pool = fmt("ddbkit:http:%s:%d", host, u.port)
    u.pools = { [true] = pool, [false] = pool }
  end
  if nurls >= 64 then urls, nurls = {}, 0 end  -- a bound, not a cache policy
  nurls = nurls + 1
  urls[url] = u
  return u
end

--- pool_name(url, verify) -> the cosocket pool a connection to url goes to
-- for a client with verify_tls = verify (nil, err for a URL it cannot use).
function _M.pool_name(url, verify)
  local u, err = parse_url(url)
  if not u then return nil, err end
  return u.pools[verify ~= false]
end

-- One HTTP exchange ----------------------------------------------------------

-- sent: the request had (maybe partly) gone out, so DynamoDB may have
-- carried it out: the failure is ambiguous.
local function transport_error(err, what, sent)
  local e
  if err == "timeout" then
    e = fail("Timeout", what .. ": timed out", true)
  else
    e = fail("ConnectionError", what .. ": " .. tostring(err), true)
  end
  if sent then
    e.message = e.message .. " (the request was sent: it may have been applied)"
    e.ambiguous = true
  end
  return e
end

-- The time left until deadline, at least 1 ms (0 would mean "no timeout").
local function left(deadline)
  local ms = deadline - mono_ms()
  if ms < 1 then return 1 end
  return ms
end

-- A cosocket's read timeout is an idle timeout: every byte that arrives
-- starts it again, so one receive(n) or receive("*l") from a server that
-- trickles its answer a byte at a time lasts as long as the server likes,
-- far past timeout_ms. The blocking runtime (libcurl) bounds the whole
-- exchange; so do the reads below: everything is read as what has arrived
-- (receiveany, which waits at most the time left), with the deadline
-- checked between reads. What has arrived is buf, read from pos on; each
-- reader hands back the buf and pos the next one starts from (per
-- exchange: concurrent requests of a worker never share them). Each gives
-- value, buf, pos; or nil, err.

local READ_MAX = 16384      -- one receiveany
local LINE_MAX = 8192       -- a status or header line, or a chunk size line

-- buf without what was read, plus more bytes (at most want); nil, err.
local function more(sock, deadline, buf, pos, want)
  if mono_ms() > deadline then return nil, "timeout" end
  sock:settimeout(left(deadline))
  local data, err = sock:receiveany(want)
  if not data then return nil, err end
  if pos > #buf then return data end
  return sub(buf, pos) .. data
end

-- One line, without its CRLF (or a bare LF).
local function receive_line(sock, deadline, buf, pos)
  while true do
    local i = find(buf, "\n", pos, true)
    if i then
      local j = i - 1
      if byte(buf, j) == 13 then j = j - 1 end
      return sub(buf, pos, j), buf, i + 1
    end
    if #buf - pos + 1 > LINE_MAX then return nil, "line too long" end
    local err
    buf, err = more(sock, deadline, buf, pos, READ_MAX)
    if not buf then return nil, err end
    pos = 1
  end
end

-- Exactly n bytes (n > 0), reading no further than n. The pieces are
-- joined once at the end: appending each to what came before would copy a
-- large body once per piece.
local function receive_bytes(sock, deadline, n, buf, pos)
  local have = #buf - pos + 1
  if have >= n then
    if pos == 1 and #buf == n then return buf, buf, n + 1 end
    return sub(buf, pos, pos + n - 1), buf, pos + n
  end
  local parts, k, got = { sub(buf, pos) }, 1, have
  while got < n do
    if mono_ms() > deadline then return nil, "timeout" end
    sock:settimeout(left(deadline))
    local data, err = sock:receiveany(n - got)
    if not data then return nil, err end
    k = k + 1
    parts[k] = data
    got = got + #data
  end
  return concat(parts, "", 1, k), "", 1
end

-- Everything up to the close, at most max bytes ("too large" past max).
local function receive_to_close(sock, deadline, max, buf, pos)
  local parts, k, got = { sub(buf, pos) }, 1, #buf - pos + 1
  while got <= max do
    if mono_ms() > deadline then return nil, "timeout" end
    sock:settimeout(left(deadline))
    local data, err = sock:receiveany(max + 1 - got)
    if not data then
      if err == "closed" then return concat(parts, "", 1, k), "", 1 end
      return nil, err
    end
    k = k + 1
    parts[k] = data
    got = got + #data
  end
  return nil, "too large"
end

-- A chunked body.
local function read_chunked(sock, deadline, max, buf, pos)
  local parts, n, total = {}, 0, 0
  while true do
    local line
    line, buf, pos = receive_line(sock, deadline, buf, pos)
    if not line then return nil, buf, "reading a chunk size" end
    local hex = match(line, "^%s*(%x+)")
    local size = hex and tonumber(hex, 16)
    if not size then return nil, "bad chunk size line", "reading the body" end
    if size == 0 then
      repeat  -- trailers, up to the empty line
        line, buf, pos = receive_line(sock, deadline, buf, pos)
        if not line then return nil, buf, "reading the trailers" end
      until line == ""
      return concat(parts, "", 1, n), buf, pos
    end
    total = total + size
    if total > max then return nil, "too large", "reading the body" end
    local data
    data, buf, pos = receive_bytes(sock, deadline, size, buf, pos)
    if not data then return nil, buf, "reading the body" end
    n = n + 1
    parts[n] = data
    line, buf, pos = receive_line(sock, deadline, buf, pos)   -- the CRLF after the chunk
    if not line then return nil, buf, "reading the body" end
  end
end

-- Per-worker scratch tables, filled right before the call that reads them:
-- sock:connect reads its options and sock:send copies its pieces into
-- nginx's buffer before either yields, so no other request's attempt can
-- change them while they are read (the OpenResty libraries do the same).
local CONNECT_OPTS = { pool_size = POOL_SIZE }
local LINES, nlines = {}, 0

-- The request as the list of pieces sock:send writes in one go, in LINES;
-- read it before anything yields, then clear_lines().
local function request_lines(u, req)
  local lines = LINES
  lines[1], lines[2], lines[3], lines[4] = req.method or "POST", " ", u.path, " HTTP/1.1\r\n"
  local n = 4
  for name, value in pairs(req.headers) do
    lines[n + 1], lines[n + 2], lines[n + 3], lines[n + 4] = name, ": ", value, "\r\n"
    n = n + 4
  end
  lines[n + 1] = "Content-Length: "
  lines[n + 2] = tostring(#req.body)
  lines[n + 3] = "\r\n\r\n"
  lines[n + 4] = req.body
  nlines = n + 4
  return lines
end

-- Drops the pieces once sent: the worker keeps the table, not the last
-- request's body.
local function clear_lines()
  for i = 1, nlines do LINES[i] = nil end
  nlines = 0
end

-- Sends req on a connection to u and reads the response. Returns status,
-- body, request_id; or nil, err (err.ambiguous once the request went out).
local function exchange(ngx, conf, u, req)
  local deadline = mono_ms() + conf.timeout_ms
  local sock = ngx.socket.tcp()
  local connect_ms = conf.connect_ms
  if connect_ms > conf.timeout_ms then connect_ms = conf.timeout_ms end
  sock:settimeouts(connect_ms, left(deadline), left(deadline))
  CONNECT_OPTS.pool = u.pools[conf.verify]
  local ok, err = sock:connect(u.host, u.port, CONNECT_OPTS)
  if not ok then return nil, transport_error(err, "connecting to " .. u.host) end
  local reused = sock:getreusedtimes() > 0
  if u.https and not reused then
    ok, err = sock:sslhandshake(false, u.host, conf.verify)
    if not ok then
      sock:close()
      return nil, transport_error(err, "TLS handshake with " .. u.host)
    end
  end
  sock:settimeout(left(deadline))
  ok, err = sock:send(request_lines(u, req))
  clear_lines()
  if not ok then
    sock:close()
    return nil, transport_error(err, "sending the request", true)
  end

  local line, buf, pos
  line, buf, pos = receive_line(sock, deadline, "", 1)
  if not line then
    sock:close()
    return nil, transport_error(buf, "reading the status line", true)
  end
  local version, status = match(line, "^HTTP/(%d%.%d) (%d%d%d)")
  status = tonumber(status)
  if not status then
    sock:close()
    local e = fail("ConnectionError", "not an HTTP response: " .. sub(line, 1, 80), true)
    e.ambiguous = true
    return nil, e
  end

  local length, chunked, rid
  local keep = version == "1.1"
  while true do
    line, buf, pos = receive_line(sock, deadline, buf, pos)
    if not line then
      sock:close()
      return nil, transport_error(buf, "reading the response headers", true)
    end
    if line == "" then break end
    local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      name = lower(name)
      if name == "content-length" then
        length = tonumber(value)
      elseif name == "transfer-encoding" then
        chunked = find(lower(value), "chunked", 1, true) ~= nil
      elseif name == "connection" then
        local v = lower(value)
        if find(v, "close", 1, true) then keep = false
        elseif find(v, "keep-alive", 1, true) then keep = true end
      elseif name == "x-amzn-requestid" then
        rid = match(value, "^[^%c]*")  -- up to a control byte: it reaches errors and logs
      end
    end
  end

  local body, what
  if chunked then
    body, buf, pos = read_chunked(sock, deadline, conf.max_body, buf, pos)
    if not body then err, what = buf, pos end
  elseif length then
    if length > conf.max_body then
      err, what = "too large", "reading the body"
    elseif length < 0 or length % 1 ~= 0 then
      err, what = "a Content-Length that is no length", "reading the body"
    elseif length == 0 then
      body = ""
    else
      body, buf, pos = receive_bytes(sock, deadline, length, buf, pos)
      err, what = buf, "reading the body"
    end
  else
    -- No length: the body runs to the close (never from DynamoDB, but legal).
    keep = false
    body, buf, pos = receive_to_close(sock, deadline, conf.max_body, buf, pos)
    err, what = buf, "reading the body"
  end
  if not body then
    sock:close()
    if err == "too large" then
      local e = fail("ResponseTooLarge", "response exceeds max_response_bytes ("
                     .. conf.max_body .. ")", false)
      e.ambiguous = true  -- answered, but the answer is not known
      return nil, e
    end
    return nil, transport_error(err, what, true)
  end
  -- Bytes past the answer are no answer to our next request: not pooled.
  if keep and pos > #buf then
    sock:setkeepalive(POOL_IDLE_MS)
  else
    sock:close()
  end
  return status, body, rid
end

-- One attempt, one send: returns status, body, request_id or nil, err.
local function attempt(ngx, cc, op, req)
  local u, uerr = parse_url(req.url)
  if not u then return nil, fail("InvalidArgument", uerr, false) end
  local conf = settings[cc] or DEFAULTS
  local t0 = mono_ms()
  local status, body, rid = exchange(ngx, conf, u, req)
  cc:record(op, #req.body, status and #body or 0, (mono_ms() - t0) * 1000)
  if not status then return nil, body end
  return status, body, rid
end

-- The call loop shared by send and call_raw. `params` is the Lua table
-- (send) or the JSON text (call_raw); finish(status, body, rid) turns a
-- response into result | nil, err, err_body.
local function run(cc, op, params, finish)
  local ngx = phase_error(3)
  local retries, last_timeout, ambiguous = 0, false, false
  local attempt_no = 1
  while true do
    -- Signed afresh each attempt: a long backoff must not outlive the
    -- signature's five-minute validity.
    local req, perr = cc:prepare(op, params)
    if not req then
      if ambiguous then perr.ambiguous = true end
      return nil, perr
    end
    local status, body, rid = attempt(ngx, cc, op, req)
    local res, err, err_body
    if status then
      res, err, err_body = finish(cc, status, body, rid, params)
    else
      err = body
    end
    if res ~= nil then
      cc:retry_success(retries > 0, last_timeout)
      cc:record_call(op, retries)
      return res
    end
    if err.ambiguous then ambiguous = true end
    local delay = cc:retry_delay(err, attempt_no)
    if not delay then
      -- As the engine says it: a later answer does not undo an earlier
      -- lost one (a failed condition may be this call's own first write).
      if ambiguous then err.ambiguous = true end
      cc:record_call(op, retries, err)
      return nil, err, err_body
    end
    last_timeout = err.code == "Timeout"
    retries = retries + 1
    attempt_no = attempt_no + 1
    if delay > 0 then ngx.sleep(delay / 1000) end
  end
end

local function finish_decoded(cc, status, body, rid, params)
  return cc:parse(status, body, rid, params)
end

local function finish_raw(cc, status, body, rid)
  if status >= 200 and status < 300 then return body end
  local _, err = cc:parse(status, body, rid)
  return nil, err, body
end

--- send(core_client, op, params) -> result | nil, err: one DynamoDB call
-- over cosockets, retried by the engine's policy (standard mode, quota).
-- Raises outside the phases where cosockets work.
function _M.send(cc, op, params)
  return run(cc, op, params, finish_decoded)
end

--- call_raw(core_client, op, json) -> body | nil, err, err_body: the same
-- with a JSON request body and the raw JSON response (for the lock
-- machine).
function _M.call_raw(cc, op, json)
  if type(json) ~= "string" then
    error("bad argument #3 to 'call_raw' (string expected, got " .. type(json) .. ")", 2)
  end
  return run(cc, op, json, finish_raw)
end

-- Credential fetches --------------------------------------------------------

--- request(req, verify?) -> status, body | nil, err: one HTTP exchange for
-- the credential machine (req: method, url, headers, body,
-- connect_timeout_ms, timeout_ms, max_bytes), over the same bounded reader
-- as DynamoDB's; no retries (the machine retries what the SDKs retry).
function _M.request(req, verify)
  local ngx = phase_error(2)
  local u, uerr = parse_url(req.url)
  if not u then return nil, fail("InvalidArgument", uerr, false) end
  local headers = {}
  for k, v in pairs(req.headers or {}) do headers[k] = v end
  if not headers.Host and not headers.host then
    local default = u.https and 443 or 80
    headers.Host = u.port == default and u.host or (u.host .. ":" .. u.port)
  end
  local conf = {
    connect_ms = req.connect_timeout_ms or DEFAULT_CONNECT_MS,
    timeout_ms = req.timeout_ms or DEFAULT_TIMEOUT_MS,
    max_body = req.max_bytes or DEFAULT_MAX_BODY,
    verify = verify ~= false,
  }
  local status, body = exchange(ngx, conf, u,
                                { method = req.method, headers = headers, body = req.body or "" })
  if not status then return nil, body end
  return status, body
end

--- exec(argv, timeout_ms, max_bytes) -> code, out | -1, out, what: runs a
-- credential_process with ngx.pipe (no shell; the worker is not blocked).
-- Without ngx.pipe (OpenResty before 1.15.8.1) it fails with a message
-- saying so.
function _M.exec(argv, timeout_ms, max_bytes)
  phase_error(2)
  local okp, pipe = pcall(require, "ngx.pipe")
  if not okp then
    return -1, "", "credential_process needs ngx.pipe (OpenResty 1.15.8.1 or later): "
                   .. sub(match(tostring(pipe), "^[^\n]*"), 1, 160)
  end
  local proc, err = pipe.spawn(argv, { merge_stderr = false })
  if not proc then return -1, "", "could not start: " .. tostring(err) end
  local deadline = mono_ms() + timeout_ms
  local parts, n, got = {}, 0, 0
  while true do
    local ms = deadline - mono_ms()
    if ms < 1 then
      proc:kill(9)
      return -1, "", "timed out after " .. timeout_ms .. " ms"
    end
    proc:set_timeouts(nil, ms, nil, ms)
    local data, rerr = proc:stdout_read_any(max_bytes + 1 - got)
    if not data then
      if rerr == "closed" then break end
      proc:kill(9)
      if rerr == "timeout" then return -1, "", "timed out after " .. timeout_ms .. " ms" end
      return -1, "", "reading its output: " .. tostring(rerr)
    end
    n = n + 1
    parts[n] = data
    got = got + #data
    if got > max_bytes then
      proc:kill(9)
      return -1, "", "wrote more than " .. max_bytes .. " bytes"
    end
  end
  proc:set_timeouts(nil, nil, nil, left(deadline))
  local ok, reason, status = proc:wait()
  local out = concat(parts, "", 1, n)
  if reason == "exit" then return status, out end
  if not ok and reason == "timeout" then proc:kill(9) end
  return -1, out, "ended by " .. tostring(reason) .. " " .. tostring(status)
end

-- Providers whose credentials are known at creation: nothing to fetch.
local STATIC = { config = true, environment = true, profile = true }

--- credentials(core_client, opts) -> ensure, state | nil: called by
-- ddbkit.client for a client without a host function; for a chain
-- provider that fetches, the hook that fetches with cosockets.
function _M.credentials(cc, opts)
  if STATIC[core.cred_info(cc).provider] then return nil end
  local dict
  if opts.credentials_dict then
    local shared = type(ngx) == "table" and ngx.shared
    dict = shared and shared[opts.credentials_dict]
    if not dict then
      error("ddbkit.client: opts.credentials_dict: no lua_shared_dict named "
            .. opts.credentials_dict .. " in nginx.conf", 4)
    end
  end
  local pid = type(ngx) == "table" and ngx.worker and ngx.worker.pid and ngx.worker.pid() or 0
  return require("ddbkit.credentials").engine(cc, _M, { dict = dict, pid = pid,
                                                        verify = opts.verify_tls ~= false })
end

--- sleep(ms): ngx.sleep; the worker serves others meanwhile.
function _M.sleep(ms)
  local ngx = phase_error(2)
  if ms > 0 then ngx.sleep(ms / 1000) end
end

-- Clocks: the engine's, not ngx.now() (cached per event-loop turn, and
-- only millisecond-rounded wall time).
_M.now_ms = core.now_ms
_M.mono_ms = core.mono_ms

-- Tasks (keepers) ------------------------------------------------------------

local task = {}
local task_mt = { __index = task }

--- spawn(fn, ...) -> task: fn runs in an ngx light thread of the current
-- request (or timer). nginx does not finish the request while one runs:
-- cancel it (task:cancel()) when it is no longer needed. Only the
-- coroutine that spawned a task may cancel it (an ngx.thread rule).
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
  end
  local ngx = phase_error(2)
  local t = setmetatable({ finished = false }, task_mt)
  local function body(...)
    local out = { n = 0 }
    local function keep(ok, ...)
      out.n = select("#", ...) + 1
      out[1] = ok
      for i = 2, out.n do out[i] = (select(i - 1, ...)) end
    end
    keep(pcall(fn, ...))
    t.finished, t.out = true, out
    if not out[1] then
      ngx.log(ngx.ERR, "ddbkit: task failed: ", tostring(out[2]))
    end
  end
  local co, err = ngx.thread.spawn(body, ...)
  if not co then return nil, err end
  t.co = co
  return t
end

--- task:done() -> bool
function task:done() return self.finished or self.cancelled or false end

--- task:result() -> ok, ...: the function's returns (true, ...) or false, err;
-- nil, "running" while it runs, false, "cancelled" after cancel.
function task:result()
  if self.cancelled then return false, "cancelled" end
  if not self.finished then return nil, "running" end
  return unpack(self.out, 1, self.out.n)
end

--- task:cancel() -> true: stops the light thread (if still running), even
-- while it waits inside a DynamoDB call (lua-nginx-module cleans up the
-- pending cosocket; an outcome DynamoDB may already have applied is the
-- caller's to resolve, as for any lost response).
function task:cancel()
  if self.finished or self.cancelled then return true end
  self.cancelled = true
  ngx.thread.kill(self.co)
  return true
end

return _M
