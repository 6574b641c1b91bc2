-- scripts/strategies/adaptive.lua: the four capacity strategies of compat.md
-- A.4 and their trend rules, as a pure function. No server, no clock: the
-- metrics are built by hand, or from lists of timestamps on a fake "now"
-- by thirds() below (A.4's definition of recent / recent3 / prev3).
-- Every expected number is worked out by hand in the test (never by calling
-- the strategy), with the arithmetic in a comment beside it.
local strategy = dofile((debug.getinfo(1, "S").source:match("^@(.*)/tests/spec/[^/]*$") or ".")
                        .. "/scripts/strategies/adaptive.lua")

local NOW = 10000000 -- the fake clock, epoch ms
local W = 900000 -- the default monitoring window

local DEFAULTS = {
  monitoring_window_ms = 900000, high_activity_threshold = 10, moderate_activity_threshold = 3,
  recalculation_interval_ms = 30000, sustained_inactivity_threshold_ms = 1800000,
  background_pause_on_increasing_trend = true, max_user_scaling = 2.0, min_user_reserved = 5,
}

local function config(over)
  local c = {}
  for k, v in pairs(DEFAULTS) do c[k] = v end
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

-- metrics for `recent` user requests with the trend counts r3 / p3 (a user
-- request just now unless told otherwise)
local function metrics(recent, r3, p3, over)
  local m = { recent_user = recent, recent3 = r3 or 0, prev3 = p3 or 0,
              last_user_ms = recent > 0 and NOW or nil, any_user_ever = recent > 0,
              any_background_ever = true, now_ms = NOW }
  for k, v in pairs(over or {}) do m[k] = v end
  return m
end

local function compute(limit, m, over)
  return strategy.compute("api", limit, m, config(over))
end

local function is_int(x) return type(x) == "number" and x == math.floor(x) end

-- user / background / paused, and the shape every answer must have
local function expect(r, user, background, paused)
  assert.is_true(is_int(r.user_reserved), "user_reserved is an integer")
  assert.is_true(is_int(r.background_max), "background_max is an integer")
  assert.are.equal(user, r.user_reserved)
  assert.are.equal(background, r.background_max)
  assert.are.equal(paused, r.background_paused)
  assert.are.equal("string", type(r.reason))
end

-- A.4: recent = user requests within the window; "split the last 2/3 of the
-- window into two thirds": recent3 counts [now - W/3, now], prev3 counts
-- [now - 2W/3, now - W/3). The window's oldest edge (now - W) is inside.
-- Requests after `now` (clock skew) are not counted.
local function thirds(now, window, user_ts, background_ts)
  local third = window / 3
  local m = { recent_user = 0, recent3 = 0, prev3 = 0, now_ms = now,
              any_user_ever = #user_ts > 0, any_background_ever = #(background_ts or {}) > 0 }
  for _, t in ipairs(user_ts) do
    if t <= now then
      if t >= now - window then m.recent_user = m.recent_user + 1 end
      if t >= now - third then
        m.recent3 = m.recent3 + 1
      elseif t >= now - 2 * third then
        m.prev3 = m.prev3 + 1
      end
      if not m.last_user_ms or t > m.last_user_ms then m.last_user_ms = t end
    end
  end
  return m
end

describe("thirds (the test's metrics builder)", function()
  it("puts each boundary on the side A.4 gives it", function()
    local m = thirds(NOW, W, {
      NOW,                -- newest third
      NOW - 300000,       -- newest third, its oldest edge
      NOW - 300001,       -- the third before
      NOW - 600000,       -- the third before, its oldest edge
      NOW - 600001,       -- the oldest third: in the window, in no trend count
      NOW - 900000,       -- the window's oldest edge: in the window
      NOW - 900001,       -- outside the window
      NOW + 5,            -- in the future: ignored
    })
    assert.are.equal(6, m.recent_user)
    assert.are.equal(2, m.recent3)
    assert.are.equal(2, m.prev3)
    assert.are.equal(NOW, m.last_user_ms)
    assert.is_true(m.any_user_ever)
    assert.is_false(m.any_background_ever)
  end)

  it("splits a window that does not divide by 3", function()
    -- W = 1000: a third is 333.33..; newest third [NOW-333.33, NOW],
    -- the one before [NOW-666.67, NOW-333.33)
    local m = thirds(NOW, 1000, { NOW - 333, NOW - 334, NOW - 666, NOW - 667, NOW - 1000 }, { NOW })
    assert.are.equal(5, m.recent_user)
    assert.are.equal(1, m.recent3)
    assert.are.equal(2, m.prev3)
    assert.is_true(m.any_background_ever)
  end)

  it("feeds the strategy: 12 requests rising -> high, paused", function()
    local ts = {}
    for i = 1, 8 do ts[#ts + 1] = NOW - i * 1000 end          -- 8 in the newest third
    for i = 1, 4 do ts[#ts + 1] = NOW - 400000 - i * 1000 end -- 4 in the third before
    local m = thirds(NOW, W, ts, {})
    assert.are.equal(12, m.recent_user)
    -- 8 > 1.5*4 = 6: increasing; user = min(180, floor(100*2)) = 180
    expect(strategy.compute("api", 200, m, config()), 180, 20, true)
  end)

  it("feeds the strategy: an old user request and nothing recent -> background gets all", function()
    local m = thirds(NOW, W, { NOW - 1800001 }, { NOW - 10 })
    assert.are.equal(0, m.recent_user)
    expect(strategy.compute("api", 200, m, config()), 0, 200, false)
  end)
end)

describe("trend", function()
  local cases = {
    { 0, 0, "none" },
    { 1, 0, "increasing" },  -- 1 > 0
    { 0, 1, "decreasing" },  -- 0 < 0.5
    { 4, 2, "increasing" },  -- 4 > 3
    { 3, 2, "stable" },      -- 3 = 1.5*2 exactly: not more
    { 2, 2, "stable" },
    { 1, 2, "stable" },      -- 1 = 0.5*2 exactly: not less
    { 1, 3, "decreasing" },  -- 1 < 1.5
    { 7, 5, "stable" },      -- 7 <= 7.5
    { 8, 5, "increasing" },  -- 8 > 7.5
    { 2, 5, "decreasing" },  -- 2 < 2.5
    { 3, 5, "stable" },
  }
  for _, c in ipairs(cases) do
    it(("recent3 %d, prev3 %d -> %s"):format(c[1], c[2], c[3]), function()
      assert.are.equal(c[3], strategy.trend(c[1], c[2]))
    end)
  end
end)

describe("strategy 1: high activity", function()
  it("starts at recent = high_activity_threshold exactly", function()
    -- min(0.9*200 = 180, floor(0.5*200*2) = 200) = 180; trend none
    local r = compute(200, metrics(10))
    expect(r, 180, 20, false)
    assert.truthy(r.reason:find("high activity", 1, true))
    assert.truthy(r.reason:find("10", 1, true))
  end)

  it("pauses background on an increasing trend", function()
    local r = compute(200, metrics(12, 4, 2)) -- 4 > 3
    expect(r, 180, 20, true)
    assert.truthy(r.reason:find("increasing", 1, true))
  end)

  it("does not pause when background_pause_on_increasing_trend is false", function()
    expect(compute(200, metrics(12, 4, 2), { background_pause_on_increasing_trend = false }),
           180, 20, false)
  end)

  it("does not pause on recent3 exactly 1.5*prev3 (stable)", function()
    expect(compute(200, metrics(12, 3, 2)), 180, 20, false)
  end)

  it("does not pause on a decreasing or no trend", function()
    expect(compute(200, metrics(12, 0, 5)), 180, 20, false)
    expect(compute(200, metrics(12, 0, 0)), 180, 20, false)
  end)

  it("scales with max_user_scaling", function()
    -- 1.0: min(180, floor(100)) = 100
    expect(compute(200, metrics(15), { max_user_scaling = 1.0 }), 100, 100, false)
    -- 1.5, L 10: min(9, floor(7.5) = 7) = 7
    expect(compute(10, metrics(15), { max_user_scaling = 1.5 }), 7, 3, false)
    -- 3: min(180, 300) = 180
    expect(compute(200, metrics(15), { max_user_scaling = 3 }), 180, 20, false)
    -- 0.1: min(180, floor(10)) = 10
    expect(compute(200, metrics(15), { max_user_scaling = 0.1 }), 10, 190, false)
    -- 1.1, L 100: floor(50*1.1 = 55.000000000000007) = 55
    expect(compute(100, metrics(15), { max_user_scaling = 1.1 }), 55, 45, false)
  end)

  it("floors the 0.9L cap (limits 10, 1, 15)", function()
    expect(compute(10, metrics(20)), 9, 1, false)   -- min(9, 10)
    expect(compute(1, metrics(20)), 0, 1, false)    -- min(0.9, 1) -> 0
    expect(compute(15, metrics(20)), 13, 2, false)  -- min(13.5, 15) -> 13
  end)

  it("clamps a negative share to 0", function()
    -- min(180, floor(-100)) = -100 -> 0
    expect(compute(200, metrics(15), { max_user_scaling = -1 }), 0, 200, false)
  end)

  it("follows the configured threshold", function()
    expect(compute(200, metrics(19), { high_activity_threshold = 20, moderate_activity_threshold = 5 }),
           -- moderate: m = min(2, 1 + 19/20) = 1.95; 80*1.95 = 156; min(140, 156) = 140
           140, 60, false)
    expect(compute(200, metrics(20, 9, 2), { high_activity_threshold = 20, moderate_activity_threshold = 5 }),
           180, 20, true)
  end)
end)

describe("strategy 2: moderate activity", function()
  it("starts at recent = moderate_activity_threshold exactly", function()
    -- m = max(1, min(2, 1.3)) = 1.3; floor(80)*1.3 = 104; min(140, 104)
    local r = compute(200, metrics(3))
    expect(r, 104, 96, false)
    assert.truthy(r.reason:find("moderate activity", 1, true))
  end)

  it("ends just below high", function()
    -- recent 9, stable (3 vs 2): m = min(2, 1.9) = 1.9; 80*1.9 = 152 -> cap 140
    expect(compute(200, metrics(9, 3, 2)), 140, 60, false)
  end)

  it("multiplies by 1.2 on an increasing trend and never pauses", function()
    -- recent 5: m = 1.5*1.2 = 1.8; 80*1.8 = 144 -> cap 140
    expect(compute(200, metrics(5, 3, 1)), 140, 60, false)
    -- recent 3: m = 1.3*1.2 = 1.56; 80*1.56 = 124.8 -> 124
    expect(compute(200, metrics(3, 3, 1)), 124, 76, false)
  end)

  it("multiplies by 0.8 on a decreasing trend", function()
    -- recent 5: m = max(1, 1.5*0.8 = 1.2); 80*1.2 = 96
    expect(compute(200, metrics(5, 0, 3)), 96, 104, false)
    -- recent 3: m = max(1, 1.3*0.8 = 1.04); 80*1.04 = 83.2 -> 83
    expect(compute(200, metrics(3, 0, 3)), 83, 117, false)
    -- recent 4: m = 1.4*0.8 = 1.12; 80*1.12 = 89.6 -> 89
    expect(compute(200, metrics(4, 1, 3)), 89, 111, false)
  end)

  it("treats recent3 exactly 1.5*prev3 as stable", function()
    -- stable: m = 1.5; 80*1.5 = 120
    expect(compute(200, metrics(5, 3, 2)), 120, 80, false)
    -- one more in the newest third: increasing, 144 -> cap 140
    expect(compute(200, metrics(5, 4, 2)), 140, 60, false)
    -- recent3 exactly 0.5*prev3: stable as well
    expect(compute(200, metrics(5, 1, 2)), 120, 80, false)
  end)

  it("keeps the multiplier at least 1", function()
    -- max_user_scaling 1, decreasing: min(1, 1.5)*0.8 = 0.8 -> 1; 80
    expect(compute(200, metrics(5, 0, 3), { max_user_scaling = 1 }), 80, 120, false)
    -- max_user_scaling 1, increasing: 1*1.2 = 1.2; 96
    expect(compute(200, metrics(5, 3, 1), { max_user_scaling = 1 }), 96, 104, false)
    -- max_user_scaling 1.2, stable: min(1.2, 1.5) = 1.2; 96
    expect(compute(200, metrics(5, 2, 2), { max_user_scaling = 1.2 }), 96, 104, false)
  end)

  it("works at limits 10 and 1", function()
    -- L 10, recent 3: floor(4)*1.3 = 5.2 -> 5
    expect(compute(10, metrics(3)), 5, 5, false)
    -- L 10, recent 5 increasing: 4*1.8 = 7.2; min(7, 7.2) = 7
    expect(compute(10, metrics(5, 3, 1)), 7, 3, false)
    -- L 1: floor(0.4) = 0 -> 0
    expect(compute(1, metrics(5, 3, 1)), 0, 1, false)
  end)

  it("floors 0.4L before multiplying", function()
    -- L 12, recent 9 stable: floor(4.8) = 4; 4*1.9 = 7.6; min(8.4, 7.6) -> 7
    -- (4.8*1.9 = 9.12 would give the 8.4 cap -> 8)
    expect(compute(12, metrics(9, 3, 2)), 7, 5, false)
  end)

  it("takes the 0.7L cap exactly (0.7*90 is 62.99.. in doubles)", function()
    -- L 90, recent 5 increasing: floor(36)*1.8 = 64.8; min(63, 64.8) = 63
    expect(compute(90, metrics(5, 3, 1)), 63, 27, false)
  end)

  it("does not lose a request to rounding noise (45*1.4 is 62.99.. in doubles)", function()
    -- L 113, recent 4 stable, scaling 1.5: m = min(1.5, 1.4) = 1.4;
    -- floor(45.2) = 45; 45*1.4 = 63; cap 79.1
    expect(compute(113, metrics(4, 2, 2), { max_user_scaling = 1.5 }), 63, 50, false)
  end)
end)

describe("strategy 3: no recent user activity", function()
  local function idle(over)
    local m = { recent_user = 0, recent3 = 0, prev3 = 0, any_user_ever = false,
                any_background_ever = false, now_ms = NOW }
    for k, v in pairs(over or {}) do m[k] = v end
    return m
  end

  it("never any request: max(floor(0.3L), min_user_reserved)", function()
    local r = compute(200, idle())
    expect(r, 60, 140, false)                         -- max(60, 5)
    assert.truthy(r.reason:find("no activity", 1, true))
    expect(compute(10, idle()), 5, 5, false)          -- max(3, 5)
    expect(compute(1, idle()), 1, 0, false)           -- max(0, 5) -> clamped to 1
    expect(compute(200, idle(), { min_user_reserved = 100 }), 100, 100, false)
  end)

  it("only background ever: min_user_reserved", function()
    local r = compute(200, idle{ any_background_ever = true })
    expect(r, 5, 195, false)
    assert.truthy(r.reason:find("background", 1, true))
    expect(compute(10, idle{ any_background_ever = true }), 5, 5, false)
    expect(compute(1, idle{ any_background_ever = true }), 1, 0, false)
    expect(compute(200, idle{ any_background_ever = true }, { min_user_reserved = 0 }), 0, 200, false)
  end)

  it("last user request older than sustained_inactivity_threshold_ms: user 0", function()
    local r = compute(200, idle{ any_user_ever = true, any_background_ever = true,
                                 last_user_ms = NOW - 1800001 })
    expect(r, 0, 200, false)
    assert.truthy(r.reason:find("sustained", 1, true))
    expect(compute(1, idle{ any_user_ever = true, last_user_ms = NOW - 1800001 }), 0, 1, false)
    expect(compute(10, idle{ any_user_ever = true, last_user_ms = NOW - 60001 },
                   { sustained_inactivity_threshold_ms = 60000 }), 0, 10, false)
  end)

  it("exactly at the threshold is not older: min_user_reserved", function()
    expect(compute(200, idle{ any_user_ever = true, last_user_ms = NOW - 1800000 }), 5, 195, false)
  end)

  it("otherwise: min_user_reserved", function()
    local r = compute(200, idle{ any_user_ever = true, any_background_ever = true,
                                 last_user_ms = NOW - 1000000 })
    expect(r, 5, 195, false)
    -- a user was seen but its time is unknown
    expect(compute(200, idle{ any_user_ever = true }), 5, 195, false)
    expect(compute(3, idle{ any_user_ever = true, last_user_ms = NOW - 1000000 }), 3, 0, false)
    expect(compute(200, idle{ any_user_ever = true, last_user_ms = NOW - 1000000 },
                   { min_user_reserved = 12 }), 12, 188, false)
  end)
end)

describe("strategy 4: low activity", function()
  it("max(floor(0.3L), min_user_reserved) below the moderate threshold", function()
    local r = compute(200, metrics(1))
    expect(r, 60, 140, false)                        -- max(60, 5)
    assert.truthy(r.reason:find("low activity", 1, true))
    expect(compute(200, metrics(2, 2, 0)), 60, 140, false) -- increasing, still low, never paused
    expect(compute(10, metrics(2)), 5, 5, false)     -- max(3, 5)
    expect(compute(20, metrics(2)), 6, 14, false)    -- max(6, 5)
    expect(compute(1, metrics(2)), 1, 0, false)      -- max(0, 5) -> 1
  end)

  it("follows min_user_reserved and clamps it to L", function()
    expect(compute(200, metrics(1), { min_user_reserved = 100 }), 100, 100, false)
    expect(compute(200, metrics(1), { min_user_reserved = 300 }), 200, 0, false)
    expect(compute(200, metrics(1), { min_user_reserved = 0 }), 60, 140, false)
  end)

  it("follows the moderate threshold", function()
    -- moderate 5: recent 4 is low
    expect(compute(200, metrics(4), { moderate_activity_threshold = 5 }), 60, 140, false)
  end)
end)

describe("every answer", function()
  it("has integer shares that add up to L, for limits 0..200 and every branch", function()
    local shapes = {
      metrics(0, 0, 0, { any_user_ever = false, any_background_ever = false }),
      metrics(0, 0, 0, { any_user_ever = false }),
      metrics(0, 0, 0, { any_user_ever = true, last_user_ms = NOW - 1900000 }),
      metrics(0, 0, 0, { any_user_ever = true, last_user_ms = NOW - 1000 }),
      metrics(1), metrics(3), metrics(4, 1, 3), metrics(7, 5, 1), metrics(9, 2, 2),
      metrics(10), metrics(30, 20, 3), metrics(1000, 0, 400),
    }
    for _, scaling in ipairs{ 0.5, 1, 1.3, 2, 4 } do
      for limit = 0, 200 do
        for _, m in ipairs(shapes) do
          local r = compute(limit, m, { max_user_scaling = scaling })
          local where = ("limit %d, scaling %s, recent %d"):format(limit, tostring(scaling), m.recent_user)
          assert.is_true(is_int(r.user_reserved), where)
          assert.is_true(r.user_reserved >= 0 and r.user_reserved <= limit, where)
          assert.are.equal(limit - r.user_reserved, r.background_max, where)
          assert.are.equal("boolean", type(r.background_paused), where)
        end
      end
    end
  end)

  it("is the same on a second call (pure) and names itself", function()
    local a = compute(200, metrics(12, 4, 2))
    local b = compute(200, metrics(12, 4, 2))
    assert.are.same(a, b)
    assert.are.equal("string", type(strategy.name))
  end)
end)
