-- Swapping the adaptive strategy: store.load_script finds the default
-- strategy and the example one by module name, by file path and as a table,
-- the example answers differently from the default on the same input, and a
-- missing or broken script raises an error naming it. No server needed.
local store = require "ddbkit.store"

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or "."
local WHAT = "adaptive strategy"
local DEFAULT = "strategies.adaptive"

local CONFIG = {
  monitoring_window_ms = 900000, high_activity_threshold = 10, moderate_activity_threshold = 3,
  recalculation_interval_ms = 30000, sustained_inactivity_threshold_ms = 1800000,
  background_pause_on_increasing_trend = true, max_user_scaling = 2.0, min_user_reserved = 5,
}

local NOW = 10000000
-- 12 recent user requests, rising (8 in the newest third, 4 in the one before)
local BUSY = { recent_user = 12, recent3 = 8, prev3 = 4, last_user_ms = NOW, any_user_ever = true,
               any_background_ever = true, now_ms = NOW }
-- nothing recent, the last user request long ago
local IDLE = { recent_user = 0, recent3 = 0, prev3 = 0, last_user_ms = NOW - 3600000,
               any_user_ever = true, any_background_ever = true, now_ms = NOW }

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function error_text(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return tostring(err)
end

describe("loading the default strategy", function()
  it("by nil (the default), by module name and by file path gives the same answers", function()
    local by_default, name1 = store.load_script(nil, DEFAULT, WHAT)
    local by_module, name2 = store.load_script("strategies.adaptive", DEFAULT, WHAT)
    local by_path, name3 = store.load_script(ROOT .. "/scripts/strategies/adaptive.lua", DEFAULT, WHAT)
    assert.are.equal("strategies.adaptive", name1)
    assert.are.equal("strategies.adaptive", name2)
    assert.are.equal(ROOT .. "/scripts/strategies/adaptive.lua", name3)
    for _, s in ipairs{ by_default, by_module, by_path } do
      assert.are.equal("function", type(s.compute))
      local busy = s.compute("api", 200, BUSY, CONFIG)
      -- high activity, 8 > 1.5*4: min(180, 200) = 180, paused
      assert.are.equal(180, busy.user_reserved)
      assert.are.equal(20, busy.background_max)
      assert.is_true(busy.background_paused)
      local idle = s.compute("api", 200, IDLE, CONFIG)
      -- last user request 3600000 ms ago > 1800000: user 0
      assert.are.equal(0, idle.user_reserved)
      assert.are.equal(200, idle.background_max)
      assert.is_false(idle.background_paused)
    end
  end)

  it("afresh on each load (a reload picks up edits)", function()
    local a = store.load_script(DEFAULT, DEFAULT, WHAT)
    local b = store.load_script(DEFAULT, DEFAULT, WHAT)
    assert.are_not.equal(a, b)
  end)
end)

describe("swapping in the example strategy", function()
  local function check_steady(s)
    assert.truthy(s.name:find("steady", 1, true))
    -- floor(200*0.5) = 100 whatever the activity, never paused
    for _, m in ipairs{ BUSY, IDLE } do
      local r = s.compute("api", 200, m, CONFIG)
      assert.are.equal(100, r.user_reserved)
      assert.are.equal(100, r.background_max)
      assert.is_false(r.background_paused)
      assert.are.equal("string", type(r.reason))
    end
    -- floor(7*0.5) = 3, 4 for background
    local r = s.compute("api", 7, BUSY, CONFIG)
    assert.are.equal(3, r.user_reserved)
    assert.are.equal(4, r.background_max)
  end

  it("by module name", function()
    local s, name = store.load_script("examples.steady_strategy", DEFAULT, WHAT)
    assert.are.equal("examples.steady_strategy", name)
    check_steady(s)
  end)

  it("by file path", function()
    check_steady((store.load_script(ROOT .. "/scripts/examples/steady_strategy.lua", DEFAULT, WHAT)))
  end)

  it("as a table, with its own share", function()
    local base = store.load_script("examples.steady_strategy", DEFAULT, WHAT)
    local quarter = base.with{ user_share = 0.25 }
    local s, name = store.load_script(quarter, DEFAULT, WHAT)
    assert.are.equal(quarter, s)
    assert.are.equal(quarter.name, name)
    assert.truthy(name:find("25%", 1, true))
    local r = s.compute("api", 200, BUSY, CONFIG) -- floor(50)
    assert.are.equal(50, r.user_reserved)
    assert.are.equal(150, r.background_max)
    r = s.compute("api", 10, BUSY, CONFIG) -- floor(2.5)
    assert.are.equal(2, r.user_reserved)
    assert.are.equal(8, r.background_max)
    assert.truthy(error_text(function() base.with{ user_share = 1.5 } end):find("user_share", 1, true))
    assert.truthy(error_text(function() base.with{} end):find("user_share", 1, true))
  end)

  it("answers differently from the default on the same input", function()
    local default = store.load_script(DEFAULT, DEFAULT, WHAT)
    local steady = store.load_script("examples.steady_strategy", DEFAULT, WHAT)
    local a = default.compute("api", 200, BUSY, CONFIG)
    local b = steady.compute("api", 200, BUSY, CONFIG)
    assert.are_not.equal(a.user_reserved, b.user_reserved) -- 180 vs 100
    assert.are_not.equal(a.background_paused, b.background_paused) -- true vs false
    assert.are_not.equal(default.name, steady.name)
  end)

  it("a user's own table with only a compute function", function()
    local mine = { compute = function(_, limit)
      return { user_reserved = limit, background_max = 0, background_paused = true, reason = "users only" }
    end }
    local s, name = store.load_script(mine, DEFAULT, WHAT)
    assert.are.equal(mine, s)
    assert.are.equal("(adaptive strategy table)", name)
    assert.are.equal(200, s.compute("api", 200, IDLE, CONFIG).user_reserved)
  end)

  it("a file written elsewhere, by path", function()
    local path = tmpfile([[
      return { name = "fixed-3", compute = function(_, limit)
        local u = math.min(3, limit)
        return { user_reserved = u, background_max = limit - u, background_paused = false, reason = "fixed" }
      end }]])
    local s, name = store.load_script(path, DEFAULT, WHAT)
    os.remove(path)
    assert.are.equal(path, name)
    assert.are.equal("fixed-3", s.name)
    assert.are.equal(3, s.compute("api", 200, BUSY, CONFIG).user_reserved)
    assert.are.equal(197, s.compute("api", 200, BUSY, CONFIG).background_max)
  end)
end)

describe("a strategy that cannot be loaded", function()
  it("a missing file raises naming it", function()
    local path = ROOT .. "/scripts/examples/no_such_strategy.lua"
    local err = error_text(function() store.load_script(path, DEFAULT, WHAT) end)
    assert.truthy(err:find("adaptive strategy", 1, true), err)
    assert.truthy(err:find(path, 1, true), err)
  end)

  it("a missing module raises naming it", function()
    local err = error_text(function() store.load_script("strategies.no_such_one", DEFAULT, WHAT) end)
    assert.truthy(err:find("cannot find adaptive strategy strategies.no_such_one", 1, true), err)
  end)

  it("a file with a syntax error raises naming it", function()
    local path = tmpfile("return { name = ")
    local err = error_text(function() store.load_script(path, DEFAULT, WHAT) end)
    os.remove(path)
    assert.truthy(err:find("cannot load adaptive strategy " .. path, 1, true), err)
  end)

  it("a file that returns no table raises naming it", function()
    local path = tmpfile("return 42")
    local err = error_text(function() store.load_script(path, DEFAULT, WHAT) end)
    os.remove(path)
    assert.truthy(err:find(path .. " did not return a table", 1, true), err)
  end)

  it("a spec of the wrong type raises", function()
    local err = error_text(function() store.load_script(42, DEFAULT, WHAT) end)
    assert.truthy(err:find("adaptive strategy must be a module name, a file path or a table", 1, true), err)
  end)
end)
