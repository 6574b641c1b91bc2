-- A game server's policy script, run by a host with its own fixed-rate
-- loop (tests/gamehost/gamehost.c is one). Every player action is a ddbkit
-- task on the coroutine runtime: a per-player rate limit, then the player's
-- state read from and written back to the cache. Nothing here blocks: each
-- DynamoDB call yields its task, and the host moves them all forward with
-- ddbkit.step(0) between its ticks.
--
-- The host calls, in order:
--   game.start{ endpoint, table_name, players, actions, in_flight, per_tick? }
--   game.tick(n) -> true while work remains (once per tick)
--   game.report() -> a table of counters
local ddbkit = require "ddbkit"

local game = {}

local S = {}   -- the whole state of this script

local function credentials()
  return { access_key_id = os.getenv("AWS_ACCESS_KEY_ID") or "ddbkitgame",
           secret_access_key = os.getenv("AWS_SECRET_ACCESS_KEY") or "ddbkitgame" }
end

function game.start(opts)
  local client = assert(ddbkit.client{
    region = "us-east-1", endpoint = opts.endpoint, credentials = credentials(),
    runtime = require "ddbkit.runtime.coroutine",
    -- DynamoDB Local answers 200 concurrent transactions slowly: the point
    -- here is that waiting never blocks the loop, so waits may be long.
    timeout_ms = 30000, connect_timeout_ms = 10000,
  })
  S.client = client
  S.players, S.actions, S.in_flight = opts.players, opts.actions, opts.in_flight
  S.per_tick = opts.per_tick or 50
  S.run = require("ddbkit.core").uuid()   -- a fresh key space per run
  S.limiter = ddbkit.ratelimit.new{ client = client, table_name = opts.table_name,
                                    -- generous: the limit is checked, not hit
                                    default_config = { limit = 1000, window_ms = 60000 } }
  S.cache = ddbkit.cache.new{ client = client, table_name = opts.table_name }
  S.started, S.done, S.ok, S.failed, S.live, S.peak = 0, 0, 0, 0, 0, 0
  S.failures, S.busy, S.turn = {}, {}, 0
end

-- One player action: rate-limit, read the state, move, write it back, and
-- read it again to check what came back is what was written.
local function action(player, seq)
  local key = "game:" .. S.run .. ":player:" .. player
  local allowed, err = S.limiter:acquire("player:" .. S.run .. ":" .. player)
  if allowed == nil then return false, "rate limit: " .. tostring(err) end
  if not allowed then return false, "rate limited" end
  local state, gerr = S.cache:get(key)
  if gerr then return false, "get: " .. tostring(gerr) end
  state = state or { x = 0, moves = 0 }
  state.x, state.moves = state.x + 1, state.moves + 1
  state.last = seq
  local ok, serr = S.cache:set(key, state, 600)
  if not ok then return false, "set: " .. tostring(serr) end
  local back = S.cache:get(key)
  if not back or back.last ~= seq then return false, "read back a different state" end
  return true
end

local function finish(ok, why)
  S.live = S.live - 1
  S.done = S.done + 1
  if ok then
    S.ok = S.ok + 1
  else
    S.failed = S.failed + 1
    if #S.failures < 5 then S.failures[#S.failures + 1] = tostring(why) end
  end
end

-- Players take turns: the next one, round-robin, without an action running.
local function next_free_player()
  for _ = 1, S.players do
    S.turn = S.turn % S.players + 1
    if not S.busy[S.turn] then return S.turn end
  end
end

-- Starts actions until `in_flight` are running (one per player at a time,
-- so a player's state is never written twice at once), then lets every task
-- whose call finished move on.
function game.tick()
  -- A tick has a budget like any game loop: at most `per_tick` new actions
  -- (each runs until its first DynamoDB call), so a burst of work never
  -- makes the tick late; in flight still climbs to `in_flight` in a few ticks.
  local budget = S.per_tick
  while S.live < S.in_flight and S.started < S.actions and budget > 0 do
    budget = budget - 1
    local player = next_free_player()
    if not player then break end
    S.started = S.started + 1
    local seq = S.started
    S.busy[player] = true
    S.live = S.live + 1
    ddbkit.spawn(function()
      local ok, res, why = pcall(action, player, seq)
      S.busy[player] = nil
      if not ok then finish(false, res) else finish(res, why) end
    end)
  end
  if S.live > S.peak then S.peak = S.live end
  local _, err = ddbkit.step(0)
  if err then error("ddbkit.step: " .. tostring(err)) end  -- the host reports it and stops
  return S.done < S.actions
end

function game.report()
  return { started = S.started, done = S.done, ok = S.ok, failed = S.failed,
           peak_in_flight = S.peak, requests = S.client:stats().requests,
           failures = table.concat(S.failures, "; ") }
end

return game
