-- One rate-limit decision on a token bucket shared through Redis, atomic (GCRA).
-- The contract, the variant and the reasoning are in global.rs; this is the arithmetic.
--
-- KEYS[1]  the bucket: a string holding its theoretical arrival time (TAT), unix µs
-- ARGV[1]  rate, tokens per second (> 0, may be fractional)
-- ARGV[2]  burst b (>= 1): the tokens a full bucket holds
-- ARGV[3]  cost (>= 1)
-- ARGV[4]  "check": take `cost` only if it fits, else change nothing;
--          "charge": take `cost` regardless, possibly leaving the bucket in debt
-- Returns  {allowed 0/1, remaining tokens, retry_after_ms, reset_after_ms}

-- Before Redis 7 a script is replicated as its source unless told otherwise, and one that
-- reads TIME and then writes must be replicated as its effects. From 7 on this is a no-op.
if redis.replicate_commands then
  redis.replicate_commands()
end

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
if not rate or rate <= 0 or not burst or burst < 1 or not cost or cost < 1 then
  return redis.error_reply('ERR gcra: rate must be > 0, burst and cost >= 1')
end
if mode ~= 'check' and mode ~= 'charge' then
  return redis.error_reply('ERR gcra: mode must be check or charge')
end

-- Redis's clock, not the gateways': every gateway then sees one time.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Whole microseconds: unix time in µs is about 2^51, and doubles hold integers exactly up
-- to 2^53, so every sum below is exact and no boundary is lost to rounding.
local interval = math.max(1, math.floor(1000000 / rate + 0.5))
local capacity = burst * interval

local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
  tat = now
end
local new_tat = tat + cost * interval
-- Tokens left = (capacity - (TAT - now)) / interval, so `cost` fits iff this holds.
local fits = new_tat - now <= capacity

local after = tat
if fits or mode == 'charge' then
  after = new_tat
  -- The key lives until its bucket is full again; then it is the same as no key.
  local ttl = math.max(1, math.ceil((after - now) / 1000000))
  redis.call('SET', KEYS[1], string.format('%.0f', after), 'EX', ttl)
end

local allowed = 0
local retry_us = 0
if fits then
  allowed = 1
elseif mode == 'check' then
  -- When `cost` fits: TAT + cost·T - capacity.
  retry_us = new_tat - capacity - now
else
  -- A charge in debt: when the debt is paid and one token is back.
  retry_us = after + interval - capacity - now
end

local remaining = math.max(0, math.floor((capacity - (after - now)) / interval))
return {allowed, remaining, math.ceil(retry_us / 1000), math.ceil((after - now) / 1000)}
