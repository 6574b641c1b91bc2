-- The example game-server host (tests/gamehost/gamehost.c, built as
-- build/gamehost) running scripts/examples/game_server.lua against DynamoDB
-- Local: a 50 ms tick, 200 actions in flight at once (per-player rate limit,
-- then the player's cached state read, written and read back), 2000 in all.
-- The host's own loop polls ddbkit's descriptors between ticks; it exits 0
-- only when every action finished correctly and no tick started more than
-- one tick period late -- the issue's requirement, so the host checks it and
-- this spec checks the host's verdict and its counters.
--
-- The host embeds Lua 5.4, so it always loads the plain Lua 5.4 build of
-- ddbkit.core, whichever interpreter runs busted.
local H = require "test_helper"

local PLAYERS, ACTIONS, IN_FLIGHT, TICK_MS = 200, 2000, 200, 50

describe("a game server's loop on the coroutine runtime", function()
  local admin, T, root

  setup(function()
    admin = H.client()
    T = H.store_table(admin, "game")
    root = H.spec_dir() .. "/../.."
  end)

  teardown(function()
    admin:delete_table{ TableName = T }
    admin:close()
  end)

  it("keeps its tick with 200 operations in flight and finishes them all correctly", function()
    local env = string.format("LUA_PATH=%s LUA_CPATH=%s",
      H.shell_quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/scripts/?.lua;;"),
      H.shell_quote(root .. "/build/lua54/?.so;;"))
    local cmd = H.bounded(string.format("env -u LD_PRELOAD %s %s %s %s %s %d %d %d %d",
      env, H.shell_quote(root .. "/build/gamehost"),
      H.shell_quote(root .. "/scripts/examples/game_server.lua"), H.shell_quote(H.endpoint),
      H.shell_quote(T), PLAYERS, ACTIONS, IN_FLIGHT, TICK_MS), 300)
    local p = assert(io.popen(cmd .. " 2>&1; echo EXIT:$?"))
    local out = p:read("*a")
    p:close()
    local result = out:match("RESULT ([^\n]*)")
    assert.is_truthy(result, "no RESULT line:\n" .. out)
    local f = {}
    for k, v in result:gmatch("(%S+)=(%S+)") do f[k] = tonumber(v) end
    assert.are.equal(ACTIONS, f.ok, out)
    assert.are.equal(0, f.failed, out)
    assert.are.equal(IN_FLIGHT, f.peak_in_flight, out)
    assert.is_true(f.max_late_ms <= TICK_MS, "a tick was late by more than a period: " .. out)
    -- 4 requests an action: the rate limit's transaction (a limit of 1000
    -- reads no slots), GetItem, PutItem, GetItem; plus, for a grant whose
    -- transaction took over 50 ms, a second stamp (on a loaded machine,
    -- most of them), and now and then a transaction lost to a busy slot.
    -- No hidden retries or extra reads: never under 4, never much over 5.
    assert.is_true(f.requests >= 4 * ACTIONS and f.requests <= 5 * ACTIONS + ACTIONS / 20,
                   "requests: " .. out)
    assert.are.equal("0", out:match("EXIT:(%d+)"), out)
  end)
end)
