-- The default adaptive strategy: the four capacity strategies of the Node
-- package (compat.md A.4), first match wins, so a Node service and ddbkit
-- sharing one table split a resource's limit between "user" and
-- "background" requests the same way.
--
-- Contract (what a replacement must provide; ddbkit.adaptive calls it):
--   strategy.name                    a string used in messages
--   strategy.compute(resource, total_limit, metrics, config) -> result
--     resource     the resource name (a string; this strategy ignores it)
--     total_limit  the resource's limit L, a non-negative integer
--     metrics = {
--       recent_user         user requests within config.monitoring_window_ms
--       recent3, prev3      user requests in the newest third of the window
--                           and in the third before it (A.4: "split the last
--                           2/3 of the monitoring window into two thirds").
--                           With W the window: recent_user counts
--                           [now - W, now], recent3 [now - W/3, now],
--                           prev3 [now - 2W/3, now - W/3).
--       last_user_ms        epoch ms of the last user request, or nil
--       any_user_ever       boolean: a user request was ever seen
--       any_background_ever boolean: a background request was ever seen
--       now_ms              epoch ms of this computation
--     }
--     config = the adaptive config in snake_case, defaults filled:
--       monitoring_window_ms 900000, high_activity_threshold 10,
--       moderate_activity_threshold 3, recalculation_interval_ms 30000,
--       sustained_inactivity_threshold_ms 1800000,
--       background_pause_on_increasing_trend true, max_user_scaling 2.0,
--       min_user_reserved 5
--     result = {
--       user_reserved     integer, 0 <= user_reserved <= total_limit
--       background_max    integer, at most total_limit - user_reserved
--       background_paused boolean
--       reason            a short string for get_status and logs
--     }
--   compute must be pure (no I/O, no clock: the time is metrics.now_ms).
--   The store validates the result; a raise or a bad shape becomes a
--   PolicyError naming this script, and the store keeps nothing from it.
--
-- The strategies (L = total_limit, recent = metrics.recent_user):
--   trend: none if recent3 = prev3 = 0; increasing if recent3 > 1.5*prev3;
--          decreasing if recent3 < 0.5*prev3; else stable.
--   1. high (recent >= high_activity_threshold):
--      user = min(0.9L, floor(0.5L * max_user_scaling));
--      background paused iff background_pause_on_increasing_trend and the
--      trend is increasing.
--   2. moderate (recent >= moderate_activity_threshold):
--      m = max(1, min(max_user_scaling, 1 + recent/high) * k), k = 1.2 when
--      increasing, 0.8 when decreasing, else 1;
--      user = min(0.7L, floor(0.4L) * m).
--   3. zero recent activity:
--      no request ever                    -> user = max(floor(0.3L), min_user_reserved)
--      background requests, never a user  -> user = min_user_reserved
--      last user request older than sustained_inactivity_threshold_ms
--      (now_ms - last_user_ms > threshold) -> user = 0, background gets all
--      otherwise                          -> user = min_user_reserved
--   4. low (anything else): user = max(floor(0.3L), min_user_reserved).
--   background = L - user in every branch; paused only in branch 1.
--
-- Rounding (the one place this differs in form from the Node code): the
-- Node package leaves min(0.9L, ...) and min(0.7L, floor(0.4L)*m)
-- fractional, which lets a priority's "count < share" test admit a request
-- past the split (user 4.5 + background 5.5 of L = 10 admit 5 + 6), and its
-- acquire, numbering slots (start + offset) % share ("SLOT#0.5"), admits
-- up to 2*ceil(share) - 1 per priority (what ddbkit does with those slots,
-- and the bound a mixed fleet keeps: lua/ddbkit/adaptive.lua, "Mixed
-- fleet"). The store needs counts, so user is floored after the min:
--   high:     user = floor(min(9L/10, floor(0.5L * s)))
--   moderate: user = floor(min(7L/10, floor(0.4L) * m))
-- keeping user <= 90% (70%) of L as the text says and user + background
-- = L exactly. That outer floor is taken on the exact value: the caps are
-- computed as L*9/10 and L*7/10 (in doubles 0.7*90 is 62.999...), and the
-- floor forgives rounding noise of the product (see clamp below), so
-- where the exact share is an integer ddbkit admits exactly what the Node
-- package admits. Where the text itself says floor (floor(0.5L*s),
-- floor(0.4L), floor(0.3L)) the same double operations as the Node code
-- are used, so those values match it bit for bit. Finally user is clamped
-- to [0, L] (min_user_reserved may exceed a small L; max_user_scaling < 0
-- would go below 0). A consequence to know: with L = 1 the high branch
-- gives user 0 (floor(0.9)) and the moderate one floor(0.4)*m = 0, so
-- background gets the single slot; Node's fractional shares would admit
-- one of each.
--
-- Pure Lua with math.floor only: the same answers on Lua 5.4 and LuaJIT.
local floor, min, max, abs, type, format =
      math.floor, math.min, math.max, math.abs, type, string.format

local _M = { _VERSION = "0.1.0", name = "node-adaptive" }

--- trend(recent3, prev3) -> "none" | "increasing" | "decreasing" | "stable"
function _M.trend(recent3, prev3)
  if recent3 == 0 and prev3 == 0 then return "none" end
  if recent3 > 1.5 * prev3 then return "increasing" end
  if recent3 < 0.5 * prev3 then return "decreasing" end
  return "stable"
end

-- The final floor forgives double rounding noise: 45 * 1.4 is computed as
-- 62.999999999999993 (and 1.5 * 1.2 as 1.7999999999999998), which a bare
-- floor would turn into 62 where the value is 63 and the Node share admits
-- 63. The slack (1e-12 relative) is far below any real fraction here.
local function clamp(user, limit)
  user = floor(user + (abs(user) + 1) * 1e-12)
  if user < 0 then return 0 end
  if user > limit then return limit end
  return user
end

local function result(limit, user, paused, reason)
  user = clamp(user, limit)
  return { user_reserved = user, background_max = limit - user,
           background_paused = paused and true or false, reason = reason }
end

-- "1.5" not "1.5000": a multiplier for messages, the same text on 5.4 and
-- LuaJIT (%g, never the interpreter's own number formatting).
local function num(x) return format("%.4g", x) end

--- compute(resource, total_limit, metrics, config) -> result (see above)
function _M.compute(resource, limit, m, c)
  local recent = m.recent_user
  local high, moderate = c.high_activity_threshold, c.moderate_activity_threshold
  local scaling, min_user = c.max_user_scaling, c.min_user_reserved
  local trend = _M.trend(m.recent3, m.prev3)

  if recent >= high then
    local user = min(limit * 9 / 10, floor(limit * 0.5 * scaling))
    return result(limit, user, c.background_pause_on_increasing_trend and trend == "increasing",
      format("high activity (%d recent user requests, trend %s)", floor(recent), trend))
  end

  if recent >= moderate then
    local k = (trend == "increasing" and 1.2) or (trend == "decreasing" and 0.8) or 1
    local mult = max(1, min(scaling, 1 + recent / high) * k)
    local user = min(limit * 7 / 10, floor(0.4 * limit) * mult)
    return result(limit, user, false,
      format("moderate activity (%d recent user requests, trend %s, user x%s)",
             floor(recent), trend, num(mult)))
  end

  if recent == 0 then
    if not m.any_user_ever and not m.any_background_ever then
      return result(limit, max(floor(0.3 * limit), min_user), false, "no activity yet (default split)")
    end
    if not m.any_user_ever then
      return result(limit, min_user, false, "no user activity ever, background active")
    end
    local last = m.last_user_ms
    if type(last) == "number" and m.now_ms - last > c.sustained_inactivity_threshold_ms then
      return result(limit, 0, false,
        format("sustained user inactivity (last user request %d ms ago): background gets all",
             floor(m.now_ms - last)))
    end
    return result(limit, min_user, false, "no recent user activity (minimum user reserve)")
  end

  return result(limit, max(floor(0.3 * limit), min_user), false,
    format("low activity (%d recent user requests, trend %s)", floor(recent), trend))
end

return _M
