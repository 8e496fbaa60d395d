import { RAN_KEPT_MS, RedisScript, UNREADABLE_LUA } from './redis-client.js';

/**
 * Every budget operation, in one script so each check is one EVALSHA. Amounts are integer nano-dollars (exact in
 * Lua's doubles up to 2^53, written back with %.0f); time is the server's `TIME`, plus a clock offset that only
 * tests set.
 *
 * KEYS: 1 state hash (w window start, s spent, r reserved, pw/ps previous window, xc/xn expired leases), 2 lease
 * expiry zset, 3 lease amounts hash, 4 expired-lease amounts hash (for a late commit; kept a day), which also marks
 * leases cancelled before their reserve arrived (`cancelled`), 5 the markers of recent refunds, a hash by operation
 * id that expires five minutes after it was created: a refund sent again after its reply was lost (ioredis re-sends
 * on reconnect) finds its marker and gives nothing back twice. Every lease operation is idempotent by its lease id
 * already. A charge is not marked (a marker costs every check a write): one sent again counts twice, on the side of
 * spending less.
 * ARGV: 1 op (reserve | charge | refund | commit | release | cancel | read), 2 period, 3 clock offset ms, 4 amount,
 * 5 limit (-1: none), 6 lease ttl ms, 7 lease id (reserve, commit, release, cancel) or operation id (refund), 8
 * retention ms after a calendar window ends (0: keep).
 * Returns { ok, outcome (0 unknown, 1 settled, 2 late), spent, reserved, window start, previous window start (-1:
 * none), previous spent, expired count, expired nanos }.
 * A field or lease amount that is present but is not what this script writes (a whole number in range, a window
 * start of this period, `cancelled`), or a key of another type, fails the script (AGENTPOLICY_UNREADABLE, naming the
 * key and field) instead of reading as zero: absent is the only empty. It fails before it writes anything, or after
 * writing back the expired leases it already settled.
 */
export const BUDGET_SCRIPT = new RedisScript(`
${UNREADABLE_LUA}
local MAX = 9007199254740991
local HOUR, DAY = 3600000, 86400000
local RAN_KEPT = ${RAN_KEPT_MS}
local NANOS = 'a whole number of nano-dollars'
local function fmt(n) return string.format('%.0f', n) end
-- A lease amount: a whole number 0..MAX, nil when absent; anything else fails the script.
local function whole(value, key, field, expected)
  if not value then return nil end
  local n = tonumber(value)
  if n and n >= 0 and n <= MAX and n % 1 == 0 then return n end
  unreadable(key, field, value, expected)
end
local op, period = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])

local st = rc('a hash', 'HMGET', KEYS[1], 'w', 's', 'r', 'pw', 'ps', 'xc', 'xn', 'nx')
-- Each field present is a whole number 0..MAX (pw may be -1: no previous window), checked inline: this runs on every
-- check. A string Lua reads as such a number in another notation (' 9', '1e2') is read as that number.
for i = 1, 8 do
  local value = st[i]
  if value then
    local n = tonumber(value)
    if n and n >= 0 and n <= MAX and n % 1 == 0 then
      st[i] = n
    elseif i == 4 and n == -1 then
      st[i] = -1
    else
      local what = (i == 1 or i == 4) and 'a window start in ms' or i == 6 and 'a whole number' or i == 8 and 'a time in ms' or NANOS
      unreadable(KEYS[1], ({ 'w', 's', 'r', 'pw', 'ps', 'xc', 'xn', 'nx' })[i], value, what)
    end
  end
end
local w, spent, reserved, pw, ps, xc, xn = st[1] or nil, st[2] or 0, st[3] or 0, st[4] or -1, st[5] or 0, st[6] or 0, st[7] or 0
-- nx: no lease expires before it (absent: no lease is open), so most operations skip the sweep.
local nx = st[8] or nil

local start, stop = 0, -1
-- A window start other than this one must still be one of this period's (checked only when the window changes).
local other = w ~= nil and w ~= 0
if period == 'hour' then
  start = math.floor(now / HOUR) * HOUR; stop = start + HOUR
  if other and w ~= start and w % HOUR ~= 0 then other = nil end
elseif period == 'day' then
  start = math.floor(now / DAY) * DAY; stop = start + DAY
  if other and w ~= start and w % DAY ~= 0 then other = nil end
elseif period == 'week' then
  local days = math.floor(now / DAY)
  start = (days - ((days + 3) % 7)) * DAY; stop = start + 7 * DAY
  if other and w ~= start and (w % DAY ~= 0 or (w / DAY + 3) % 7 ~= 0) then other = nil end
elseif period == 'month' then
  -- Civil-calendar arithmetic (days since the epoch to year/month and back), defined only where it is needed.
  local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
  end
  local function civil_from_days(z)
    z = z + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m
  end
  local y, m = civil_from_days(math.floor(now / DAY))
  start = days_from_civil(y, m, 1) * DAY
  if m == 12 then stop = days_from_civil(y + 1, 1, 1) * DAY else stop = days_from_civil(y, m + 1, 1) * DAY end
  if other and w ~= start then
    local wy, wm = civil_from_days(math.floor(w / DAY))
    if days_from_civil(wy, wm, 1) * DAY ~= w then other = nil end
  end
else
  -- a session budget has one window, which starts at 0
  if other then other = nil end
end
if other == nil then unreadable(KEYS[1], 'w', fmt(w), 'the start of a ' .. period .. ' window') end

-- dirty: 1 only spent/reserved changed, 2 everything is written
local dirty = 0
if w ~= start then
  if w ~= nil then pw = w; ps = spent end
  spent = 0; w = start; dirty = 2
end

-- Leases past their TTL are charged at their amount (the estimate): never silently given back.
local due = {}
if nx and nx <= now then
  due = rc('a sorted set', 'ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 512)
end
-- Every amount is read before the first lease is settled: one that cannot be read settles none. Past this point,
-- the one write that can fail on a value it meets comes before anything else the script writes for that step, and
-- a failure first writes back the leases already settled (only here: a check that settles nothing writes nothing
-- before it could fail, and makes no closure for it).
local amounts = #due > 0 and rc('a hash', 'HMGET', KEYS[3], unpack(due)) or due
for i, id in ipairs(due) do
  amounts[i] = whole(amounts[i], KEYS[3], id, 'a lease amount in nano-dollars') or 0
end
if #due > 0 then
  settle_before_error = function()
    redis.call('HSET', KEYS[1], 'w', fmt(w), 's', fmt(spent), 'r', fmt(reserved), 'pw', fmt(pw), 'ps', fmt(ps), 'xc', fmt(xc), 'xn', fmt(xn))
  end
end
for i, id in ipairs(due) do
  local amount = amounts[i]
  rc('a hash', 'HSET', KEYS[4], id, fmt(amount))
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  reserved = reserved - amount
  spent = math.min(spent + amount, MAX)
  xc = xc + 1; xn = xn + amount
  dirty = 2
end
if #due > 0 then redis.call('PEXPIRE', KEYS[4], DAY) end
if nx and nx <= now then
  local first = rc('a sorted set', 'ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  nx = tonumber(first[2])
  if nx then redis.call('HSET', KEYS[1], 'nx', fmt(nx)) else redis.call('HDEL', KEYS[1], 'nx') end
end

local ok, outcome = 1, 0
local amount, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
if op == 'reserve' then
  local id = ARGV[7]
  if rc('a hash', 'HEXISTS', KEYS[3], id) == 1 then
    outcome = 1
  elseif rc('a hash', 'HEXISTS', KEYS[4], id) == 1 then
    -- cancelled before it arrived (its client gave up waiting): never held
    ok = 0
  elseif (limit >= 0 and spent + reserved + amount > limit) or spent + reserved + amount > MAX then
    ok = 0
  else
    local expires = now + tonumber(ARGV[6])
    rc('a sorted set', 'ZADD', KEYS[2], fmt(expires), id)
    redis.call('HSET', KEYS[3], id, fmt(amount))
    if not nx or expires < nx then nx = expires; redis.call('HSET', KEYS[1], 'nx', fmt(nx)) end
    reserved = reserved + amount; dirty = math.max(dirty, 1); outcome = 1
  end
elseif op == 'charge' then
  if limit >= 0 and spent + reserved + amount > limit then
    ok = 0
  else
    spent = math.min(spent + amount, MAX); dirty = math.max(dirty, 1)
  end
elseif op == 'refund' then
  -- Gives back once: the same refund sent again (its reply lost) finds its marker and changes nothing.
  if rc('a hash', 'HSETNX', KEYS[5], ARGV[7], '1') == 1 then
    redis.call('PEXPIRE', KEYS[5], RAN_KEPT, 'NX')
    spent = math.max(0, spent - amount); dirty = math.max(dirty, 1)
  end
elseif op == 'commit' or op == 'release' or op == 'cancel' then
  local id = ARGV[7]
  local held = whole(rc('a hash', 'HGET', KEYS[3], id), KEYS[3], id, 'a lease amount in nano-dollars')
  if held then
    if op == 'cancel' then
      -- Given back; the same reserve sent again later (its reply was lost) is refused too.
      rc('a hash', 'HSET', KEYS[4], id, 'cancelled')
      redis.call('PEXPIRE', KEYS[4], DAY)
    end
    rc('a sorted set', 'ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    reserved = reserved - held
    if op == 'commit' then spent = math.min(spent + amount, MAX) end
    dirty = math.max(dirty, 1); outcome = 1
  elseif op == 'cancel' then
    -- A reserve whose client timed out has not arrived (yet): mark it so it is refused if it does.
    if not rc('a hash', 'HGET', KEYS[4], id) then
      redis.call('HSET', KEYS[4], id, 'cancelled')
      redis.call('PEXPIRE', KEYS[4], DAY)
    end
  else
    local mark = rc('a hash', 'HGET', KEYS[4], id)
    local lapsed = mark ~= 'cancelled' and whole(mark, KEYS[4], id, 'an expired lease amount in nano-dollars or cancelled') or nil
    if lapsed then
      redis.call('HDEL', KEYS[4], id)
      if op == 'commit' and amount > lapsed then spent = math.min(spent + amount - lapsed, MAX); dirty = math.max(dirty, 1) end
      outcome = 2
    end
  end
end

if dirty == 1 then
  redis.call('HSET', KEYS[1], 's', fmt(spent), 'r', fmt(reserved))
elseif dirty == 2 then
  redis.call('HSET', KEYS[1], 'w', fmt(w), 's', fmt(spent), 'r', fmt(reserved), 'pw', fmt(pw), 'ps', fmt(ps), 'xc', fmt(xc), 'xn', fmt(xn))
end
if dirty > 0 then
  local retention = tonumber(ARGV[8])
  if stop > 0 and retention > 0 then
    local at = fmt(stop + retention - tonumber(ARGV[3]))
    redis.call('PEXPIREAT', KEYS[1], at)
    redis.call('PEXPIREAT', KEYS[2], at)
    redis.call('PEXPIREAT', KEYS[3], at)
  end
end
return { ok, outcome, spent, reserved, w, pw, ps, xc, xn }
`);
