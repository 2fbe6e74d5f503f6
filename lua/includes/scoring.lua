--[[
  scoring: the score of src/domain/scoring.rs, operation for operation, so both stores agree bit
  for bit. load_factor, AVAILABILITY, PRIOR_SUCCESSES and PRIOR_WEIGHT come from the prelude
  generated from src/domain/rules.rs.
]]

-- weights: {capability, load, availability, performance}.
local function score_of(capability, load, availability, performance, weights)
  return 100.0 * capability * weights[1] + 100.0 * load * weights[2]
    + 100.0 * availability * weights[3] + 100.0 * performance * weights[4]
end

-- (successes + prior successes) / (outcomes + prior weight) over the window.
local function rule_performance(window_successes, window_outcomes)
  return (window_successes + PRIOR_SUCCESSES) / (window_outcomes + PRIOR_WEIGHT)
end

local function clamp_unit(value)
  if value < 0.0 then return 0.0 end
  if value > 1.0 then return 1.0 end
  return value
end
