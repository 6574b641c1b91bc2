-- An example adaptive strategy: a steady split that ignores activity.
-- Users always get floor(L * user_share) of a resource's limit L (half by
-- default), background gets the rest and is never paused. Useful when
-- background work must have a predictable budget, and as the smallest
-- proof that the strategy can be swapped:
--
--   ddbkit.adaptive.new{ client = c, strategy = "examples.steady_strategy" }
--   ddbkit.adaptive.new{ client = c, strategy = "/path/to/steady_strategy.lua" }
--   ddbkit.adaptive.new{ client = c,
--     strategy = require("ddbkit.store").load_script("examples.steady_strategy",
--                  nil, "adaptive strategy").with{ user_share = 0.25 } }
--
-- Same contract as scripts/strategies/adaptive.lua: name, and
-- compute(resource, total_limit, metrics, config) -> { user_reserved,
-- background_max, background_paused, reason }. metrics and config are not
-- used. Pure: same answers on Lua 5.4 and LuaJIT.
local floor, type, error, format = math.floor, type, error, string.format

local function new(user_share)
  local s = {}
  s.name = format("steady-split(%d%% user)", floor(user_share * 100 + 0.5))

  function s.compute(_, limit)
    local user = floor(limit * user_share)
    if user < 0 then user = 0 elseif user > limit then user = limit end
    return { user_reserved = user, background_max = limit - user, background_paused = false,
             reason = format("steady split: %d user, %d background of %d", user, limit - user, limit) }
  end

  --- with{ user_share = 0..1 } -> another steady strategy
  function s.with(opts)
    local share = type(opts) == "table" and opts.user_share
    if type(share) ~= "number" or share ~= share or share < 0 or share > 1 then
      error("steady strategy: opts.user_share must be a number from 0 to 1", 2)
    end
    return new(share)
  end

  return s
end

return new(0.5)
