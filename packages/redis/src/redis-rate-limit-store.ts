import { randomUUID } from 'node:crypto';
import { AgentPolicyError, type RateLimitStore, type RateLimitTake } from '@agentpolicy/core';
import { clockOffset, RedisScript, ScriptRunner, type RedisStoreOptions } from './redis-client.js';

/**
 * A sliding log in one sorted set per key (member: slot id, score: when it was taken, on the server's clock). With a
 * window, slots older than it are dropped first and the key expires with its last slot; without one, slots stay
 * until given back.
 * KEYS: 1 the slots. ARGV: 1 op (take | give), 2 max, 3 window ms (-1: none), 4 slot id, 5 clock offset ms.
 * Returns { 1, 0 } when taken, { 0, reset at ms (-1: none) } when full, { 1, 0 } for a give-back.
 */
const LIMIT_SCRIPT = new RedisScript(`
if ARGV[1] == 'give' then
  redis.call('ZREM', KEYS[1], ARGV[4])
  return { 1, 0 }
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[5])
local max, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if window >= 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window)) end
if redis.call('ZCARD', KEYS[1]) >= max then
  if window < 0 then return { 0, -1 } end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return { 0, string.format('%.0f', tonumber(oldest[2]) + window) }
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
if window >= 0 then redis.call('PEXPIRE', KEYS[1], math.max(1, window)) end
return { 1, 0 }
`);

/** Options of {@link createRedisRateLimitStore}. */
export interface RedisRateLimitStoreOptions extends RedisStoreOptions {
  /** Added to the server's clock; for tests only. Default 0. */
  clockOffsetMs?: number;
}

/** Rate-limit slots on Redis, shared by every process: one script per take, on the server's clock. */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly runner: ScriptRunner;
  private readonly offset: string;

  constructor(options: RedisRateLimitStoreOptions) {
    this.runner = new ScriptRunner(options, 'createRedisRateLimitStore');
    this.offset = clockOffset(options);
  }

  /** The sorted set of a limit key (its own hash tag). */
  key(key: string): string {
    if (typeof key !== 'string' || key === '') throw new AgentPolicyError('INVALID_ARGUMENT', 'a limit key must be a non-empty string');
    return this.runner.tagged('limit', key);
  }

  async take(key: string, max: number, windowMs: number | null): Promise<RateLimitTake> {
    if (!(Number.isSafeInteger(max) && max >= 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `max must be a whole number ≥ 0, got ${String(max)}`);
    if (windowMs !== null && !(Number.isSafeInteger(windowMs) && windowMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `windowMs must be a whole number of ms > 0 or null, got ${String(windowMs)}`);
    const slot = randomUUID();
    const reply = await this.runner.run(LIMIT_SCRIPT, [this.key(key)], ['take', String(max), windowMs === null ? '-1' : String(windowMs), slot, this.offset]);
    if (!Array.isArray(reply) || reply.length !== 2) throw new AgentPolicyError('STORE_UNAVAILABLE', 'Redis answered the limit script with something unexpected');
    if (Number(reply[0]) === 1) return { ok: true, slot };
    const reset = Number(reply[1]);
    return { ok: false, resetAtMs: reset < 0 ? null : reset };
  }

  async giveBack(key: string, slot: string): Promise<void> {
    if (typeof slot !== 'string' || slot === '') return;
    await this.runner.run(LIMIT_SCRIPT, [this.key(key)], ['give', '0', '-1', slot, this.offset]);
  }
}

/**
 * A {@link RateLimitStore} on Redis ≥ 7 (node-redis 5/6 or ioredis 5/6, single node or cluster), so a `limits:`
 * entry counts calls across every process.
 *
 * @example
 * ```ts
 * const session = policy.session({ store: createRedisBudgetStore({ client }), limitStore: createRedisRateLimitStore({ client }) });
 * ```
 */
export function createRedisRateLimitStore(options: RedisRateLimitStoreOptions): RedisRateLimitStore {
  return new RedisRateLimitStore(options);
}
