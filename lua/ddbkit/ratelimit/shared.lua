-- ddbkit.ratelimit.shared: one lease per machine. The native layout's
-- lease state (lua/ddbkit/ratelimit/native.lua) kept in a lua_shared_dict,
-- so that all workers of an nginx spend the grants of one lease and one
-- worker at a time takes the next: one write per lease for the machine,
-- not one per worker. Chosen with
--   ddbkit.ratelimit.new{ ..., layout = "native", shared_dict = "ddbkit_rl" }
-- (and the same for ddbkit.adaptive), with `lua_shared_dict ddbkit_rl 1m;`
-- in nginx.conf. The item, the rule at take time, the give-back and the
-- exactness argument are native.lua's; this file changes only where a
-- lease lives and who spends it.
--
-- Keys, per (table, item key, priority tag) prefix P:
--   P.."l"       the current lease: "id:n:until:take_now:take_mono:e", id
--                a fresh uuid (until and take_mono on the monotonic clock,
--                which all processes of a Linux machine share)
--   P.."c"..id   the lease's counter: every spend attempt incr's it by 1
--   P.."z"..id   the monotonic time read after the n-th increment
--   P.."r"..id   "retired": added by the one worker that gives it back
--   P.."b"       a give-back a take could not write yet: "id:e:n:spent:last"
--   P.."t"       the taker's flag (add: one worker takes at a time)
--   P.."f"       the monotonic time the window is known full until
--   P.."s"       when it was last found full (the next lease's size)
--   P.."q"       decisions made with no live lease (the next lease's size)
--   P.."m"       the last take's monotonic time
--   P.."i"       the item as last seen: "v\0w\0b" (a stale one only costs a
--                lost race: writes are conditioned on the version)
--
-- Spending: incr the lease's counter, THEN read the clock; the grant is
-- the increment (the dict's lock orders them) and holds only if it
-- returned at most n and the clock read after it is still before the
-- lease's end. So every grant is an increment that happened before the
-- end and among the first n, whichever worker made it.
-- Giving back: a worker gives a lease back only when it is exhausted (its
-- counter >= n: no later increment can grant) or past its end read BEFORE
-- reading the counter (a later increment reads a later clock: refused);
-- so spent <= min(counter, n) and every grant happened before the time
-- in P.."z" (read after the last granting increment) or the lease's end.
-- The add of P.."r"..id makes the give-back happen once even when two
-- workers take at once (a flag that expired under a slow take).
-- What that gives native.lua's argument: each lease's grants are at most
-- its n and no later than its recorded end, as for a process's own lease.
--
-- Waiting: while one worker takes, the others' calls that find no live
-- lease sleep (runtime.sleep: ngx.sleep yields, the worker serves other
-- requests) and look again, at most FLAG_TTL; then they take themselves
-- (safe: the writes are conditional and the give-back is claimed once).
-- Nothing here blocks a worker.
--
-- Size: a resource in use keeps seven keys (one holding the item, under
-- 1 KB) for a window after its last take, three per lease (its record,
-- counter and last spend) for up to a minute after the lease's end, and a
-- claim per give-back for 6 s. Writes use set and add, so a
-- full dict drops its least recently used keys (other resources' idle
-- ones first), and a dict that drops keys costs capacity, never
-- exactness: a lease whose counter is gone is not spent again and is
-- given back as wholly spent, a dropped lease or give-back is not given
-- back, a dropped flag lets a second worker take (writes stay
-- conditional, give-backs are claimed once).
local min, max, tonumber, tostring, concat = math.min, math.max, tonumber, tostring,
      table.concat
local uuid = require("ddbkit.core").uuid

local _M = {}
local mt = { __index = _M }

local FLAG_TTL_S = 5         -- a take longer than this lets another worker take too
local POLL_MAX_MS = 8        -- waiting for a take: 1, 2, 4, 8, 8, ... ms
local KEEP_S = 1             -- keys outlive what they describe by this much
-- A lease's keys (l, c, z) last until its end plus this (at most): its
-- give-back is still worth making that long after it ended (it frees
-- capacity until the end + window_ms), and a resource taking a lease a
-- second must not keep an hour of them in the dict.
local RETIRE_MAX_S = 60
-- A claim only has to outlive the moment between its add and the delete
-- of what it claims, and a second taker whose flag wait ran out.
local CLAIM_S = FLAG_TTL_S + KEEP_S
local MAX_PARSED = 1024      -- leases parsed and kept per worker (then all dropped)

--- shared.new(dict, take) -> the machine's lease store on one dict; take
--- is native.lua's take(self, st, tbl, pk, cfg, tag).
function _M.new(dict, take)
  return setmetatable({ dict = dict, take = take, parsed = {}, nparsed = 0 }, mt)
end

-- The number at key k, or nil (absent, or something else: the dict may
-- be shared with other code).
local function num(dict, k)
  local v = dict:get(k)
  return type(v) == "number" and v or nil
end

-- "id:a:b:..." -> { id, then n numbers }; nil when the dict holds
-- anything else (it holds only what publish wrote, unless shared with
-- other code).
local function fields(s, n)
  if type(s) ~= "string" then return nil end
  local out, k, pos = {}, 0, 1
  while true do
    local stop = s:find(":", pos, true)
    local f = s:sub(pos, (stop or 0) - 1)
    k = k + 1
    local v = k == 1 and f or tonumber(f)
    if v == nil or v == "" or k > n + 1 then return nil end
    out[k] = v
    if not stop then break end
    pos = stop + 1
  end
  if k ~= n + 1 then return nil end
  return out
end

-- The lease at P, parsed once per worker per lease.
function _M:lease(P)
  local s = self.dict:get(P .. "l")
  if s == nil then return nil end
  local c = self.parsed[P]
  if c and c.s == s then return c end
  local f = fields(s, 5)
  if not f then return nil end
  c = { s = s, id = f[1], n = f[2], until_ = f[3], take_now = f[4], take_mono = f[5], e = f[6] }
  if self.nparsed >= MAX_PARSED then self.parsed, self.nparsed = {}, 0 end
  if not self.parsed[P] then self.nparsed = self.nparsed + 1 end
  self.parsed[P] = c
  return c
end

--- sh:left(P, mono) -> unspent grants of the live lease (0 when none).
function _M:left(P, mono)
  local l = self:lease(P)
  if not l or mono >= l.until_ then return 0 end
  return max(0, l.n - (num(self.dict, P .. "c" .. l.id) or l.n))
end

--- sh:full_until(P) -> the monotonic time the window is known full until, or nil.
function _M:full_until(P)
  return num(self.dict, P .. "f")
end

-- How long after its end a lease's keys stay (window w, ms).
local function retire_s(w) return min(w / 1000, RETIRE_MAX_S) + KEEP_S end

-- One grant from the live lease: true, or false when there is none left.
local function from_lease(self, rt, P, mono, w)
  local l = self:lease(P)
  if not l or mono >= l.until_ then return false, l end
  local dict = self.dict
  -- no init: a counter the dict lost must not count from 0 again
  local c = dict:incr(P .. "c" .. l.id, 1)
  if not c or c > l.n then return false, l end
  local at = rt.mono_ms()
  if at >= l.until_ then return false, l end
  if c == l.n then dict:set(P .. "z" .. l.id, at, (l.until_ - at) / 1000 + retire_s(w)) end
  return true, l
end

-- The item a take starts from ({ v, w, ends, sums } as native.lua keeps it), or nil.
local function item_of(dict, P, decode)
  local s = dict:get(P .. "i")
  if type(s) ~= "string" then return nil end
  local v, w, b = s:match("^([^%z]*)%z([^%z]*)%z(.*)$")
  v = tonumber(v)
  local ends, sums = decode(b)
  if not v or not ends then return nil end
  return { v = v, w = w ~= "" and w or nil, ends = ends, sums = sums }
end

-- Claims the give-back of lease (or pending give-back) id; true once.
local function claim(dict, P, id)
  return dict:add(P .. "r" .. id, true, CLAIM_S) == true
end

-- The local state a take starts from: what the dict says of the last
-- lease and the item; nil when a lease installed meanwhile is live (the
-- caller spends from it instead).
local function load(self, P, mono, w, decode)
  local dict = self.dict
  local st = { left = 0, calls = 0, item = item_of(dict, P, decode) }
  st.full_seen = num(dict, P .. "s")
  st.calls = num(dict, P .. "q") or 0
  st.take_mono = num(dict, P .. "m")
  local l = self:lease(P)
  if l then
    local c = num(dict, P .. "c" .. l.id)
    if c and c < l.n and mono < l.until_ then return nil end
    -- exhausted, its end passed before the counter was read, or its
    -- counter lost: no more grants
    if claim(dict, P, l.id) then
      local spent = min(c or l.n, l.n)
      local last = (c and c >= l.n and num(dict, P .. "z" .. l.id)) or l.until_
      st.back = { e = l.e, n = l.n, spent = spent, last = l.take_now + (last - l.take_mono) }
      st.calls = st.calls + (c or 0)
    end
    dict:delete(P .. "l")
  else
    local b = dict:get(P .. "b")
    local bf = fields(b, 4)
    if bf and claim(dict, P, bf[1]) then
      st.back = { e = bf[2], n = bf[3], spent = bf[4], last = bf[5] }
    end
    if b then dict:delete(P .. "b") end
  end
  return st
end

-- What a take left in st, for every worker.
local function publish(self, P, st, w, encode)
  local dict = self.dict
  local keep = w / 1000 + KEEP_S
  if st.item then
    dict:set(P .. "i", concat({ tostring(st.item.v), st.item.w or "", encode(st.item.ends, st.item.sums) }, "\0"), keep)
  else
    dict:delete(P .. "i")
  end
  if st.full_until then
    dict:set(P .. "f", st.full_until, keep)
    dict:set(P .. "s", st.full_seen, keep)
  elseif st.n then
    dict:delete(P .. "f")
  end
  if st.n then
    -- a lease (maybe already exhausted or past its end: published anyway,
    -- so that the next take gives it back)
    local id = uuid()
    local ttl = (st.until_mono - st.take_mono) / 1000 + retire_s(w)
    if dict:set(P .. "c" .. id, st.spent, ttl) then
      if st.spent >= st.n then dict:set(P .. "z" .. id, st.last_mono, ttl) end
      dict:set(P .. "l", concat({ id, st.n, st.until_mono, st.take_now, st.take_mono, st.e }, ":"), ttl)
    end
    dict:set(P .. "q", 0, keep)
    dict:set(P .. "m", st.take_mono, keep)
  elseif st.back then
    -- not written (the window full): the next take may still give it back
    local b = st.back
    dict:set(P .. "b", concat({ uuid(), b.e, b.n, b.spent, b.last }, ":"), keep)
  end
end

--- sh:spend(store, P, tbl, pk, cfg, tag, codec) -> true | false | nil, err:
--- one decision from the machine's lease (native.lua's spend, shared).
function _M:spend(store, P, tbl, pk, cfg, tag, codec)
  local rt, dict = store.runtime, self.dict
  local waited, poll = 0, 1
  while true do
    local mono = rt.mono_ms()
    local ok, l = from_lease(self, rt, P, mono, cfg.window_ms)
    if ok then return true end
    if not l or mono >= l.until_ then dict:incr(P .. "q", 1, 0, cfg.window_ms / 1000 + KEEP_S) end
    local full = self:full_until(P)
    if full and mono < full then return false end
    local flag = uuid()
    if waited >= FLAG_TTL_S * 1000 or dict:add(P .. "t", flag, FLAG_TTL_S) then
      local st = load(self, P, mono, cfg.window_ms, codec.decode)
      if st then
        local done, res, err = pcall(self.take, store, st, tbl, pk, cfg, tag)
        if done then publish(self, P, st, cfg.window_ms, codec.encode) end
        if dict:get(P .. "t") == flag then dict:delete(P .. "t") end
        if not done then error(res, 0) end
        return res, err
      end
      if dict:get(P .. "t") == flag then dict:delete(P .. "t") end
    else
      -- another worker takes: its lease (or its finding the window full)
      -- will be in the dict when its flag goes
      rt.sleep(poll)
      waited = waited + poll
      poll = min(poll * 2, POLL_MAX_MS)
    end
  end
end

-- For the fuzz target (tests/fuzz/fuzz_rl_shared.c): the readers of what
-- the dict holds.
_M.item_of, _M.load = item_of, load

--- sh:forget(P): drops the machine's lease and state at P (reset, a new config).
function _M:forget(P)
  local dict = self.dict
  for _, k in ipairs({ "l", "f", "s", "i", "b", "q", "m" }) do dict:delete(P .. k) end
  if self.parsed[P] then self.parsed[P], self.nparsed = nil, self.nparsed - 1 end
end

return _M
