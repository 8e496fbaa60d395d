import { randomUUID } from 'node:crypto';
import { AgentPolicyError, type RateLimitStore, type RateLimitTake } from '@agentpolicy/core';
import { clockOffset, RedisScript, ScriptRunner, UNREADABLE_LUA, type RedisStoreOptions } from './redis-client.js';

/**
 * A sliding log in one sorted set per key (member: slot id, score: when it was taken, on the server's clock). With a
 * window, slots older than it are dropped first and the key expires with its last slot; without one, slots stay
 * until given back. A slot given back that is not held (a take whose client gave up waiting and that has not run
 * yet) is marked in a second set, same hash tag, kept a day: a take that arrives later with that slot id is refused.
 * KEYS: 1 the slots, 2 the slots given back before they were taken. ARGV: 1 op (take | give), 2 max, 3 window ms
 * (-1: none), 4 slot id (take), 5 clock offset ms, 6… slot ids to give back first (a give gives back these only).
 * Returns { 1, 0 } when taken, { 0, reset at ms (-1: none) } when full, { 2, 0 } when the slot was given back
 * before it arrived, { 1, 0 } for a give-back. A take run twice (its reply lost, the command sent again) holds one
 * slot and answers "taken" both times; a give-back run twice frees that one slot. A key of another type fails the
 * script, naming the key.
 */
const LIMIT_SCRIPT = new RedisScript(`${UNREADABLE_LUA}
for i = 6, #ARGV do
  if rc('a sorted set', 'ZREM', KEYS[1], ARGV[i]) == 0 then
    rc('a set', 'SADD', KEYS[2], ARGV[i])
    redis.call('PEXPIRE', KEYS[2], 86400000)
  end
end
if ARGV[1] == 'give' then return { 1, 0 } end
if rc('a set', 'SISMEMBER', KEYS[2], ARGV[4]) == 1 then return { 2, 0 } end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[5])
local max, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if window >= 0 then rc('a sorted set', 'ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window)) end
if rc('a sorted set', 'ZCARD', KEYS[1]) >= max then
  -- This very take ran before (its reply was lost and it was sent again): the slot it holds is its answer.
  if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return { 1, 0 } end
  if window < 0 then return { 0, -1 } end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return { 0, string.format('%.0f', tonumber(oldest[2]) + window) }
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
if window >= 0 then redis.call('PEXPIRE', KEYS[1], math.max(1, window)) end
return { 1, 0 }
`);

/** Slots owed back to Redis (give-backs that failed) kept per store at most; past it the oldest are forgotten. */
const OWED_KEPT = 10_000;

/** Options of {@link createRedisRateLimitStore}. */
export interface RedisRateLimitStoreOptions extends RedisStoreOptions {
  /** Added to the server's clock; for tests only. Default 0. */
  clockOffsetMs?: number;
}

/** Rate-limit slots on Redis, shared by every process: one script per take, on the server's clock. */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly runner: ScriptRunner;
  private readonly offset: string;
  /** Per limit key, the slots whose give-back (or the cancel of a take that timed out) has not reached Redis yet:
   *  sent again with the next take of that key, so they are freed before it counts. */
  private readonly owed = new Map<string, Set<string>>();
  private owedCount = 0;

  constructor(options: RedisRateLimitStoreOptions) {
    this.runner = new ScriptRunner(options, 'createRedisRateLimitStore', 'delete the key (its slots are then all free)');
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
    const keys = this.keys(key);
    const slot = randomUUID();
    const owed = this.owed.get(key);
    const giving = owed === undefined ? [] : [...owed];
    let reply: unknown;
    try {
      reply = await this.runner.run(LIMIT_SCRIPT, keys, ['take', String(max), windowMs === null ? '-1' : String(windowMs), slot, this.offset, ...giving]);
    } catch (error) {
      // The take may still reach Redis after this check was denied (a slow server, a reply lost): give its slot back
      // by id, so it is freed if it ran and refused if it runs later, instead of lowering the limit for good.
      this.owe(key, slot);
      this.give(key, [slot]).catch(() => undefined);
      throw error;
    }
    this.paid(key, giving);
    if (!Array.isArray(reply) || reply.length !== 2) throw new AgentPolicyError('STORE_UNAVAILABLE', 'Redis answered the limit script with something unexpected');
    if (Number(reply[0]) === 1) return { ok: true, slot };
    const reset = Number(reply[1]);
    return { ok: false, resetAtMs: Number(reply[0]) === 0 && reset >= 0 ? reset : null };
  }

  async giveBack(key: string, slot: string): Promise<void> {
    if (typeof slot !== 'string' || slot === '') return;
    this.key(key); // a key that is not one throws before anything is owed under it
    this.owe(key, slot);
    await this.give(key, [slot]);
  }

  /** Slots owed back to Redis now (give-backs that have not reached it yet; each is sent again with the next take of its key). */
  get owedSlots(): number {
    return this.owedCount;
  }

  private keys(key: string): [string, string] {
    const slots = this.key(key);
    return [slots, `${slots}:given`];
  }

  private async give(key: string, slots: string[]): Promise<void> {
    await this.runner.run(LIMIT_SCRIPT, this.keys(key), ['give', '0', '-1', '', this.offset, ...slots]);
    this.paid(key, slots);
  }

  private owe(key: string, slot: string): void {
    let owed = this.owed.get(key);
    if (owed === undefined) {
      owed = new Set();
      this.owed.set(key, owed);
    }
    if (owed.has(slot)) return;
    if (this.owedCount >= OWED_KEPT) this.forgetOldest();
    owed.add(slot);
    this.owedCount++;
  }

  private paid(key: string, slots: readonly string[]): void {
    const owed = this.owed.get(key);
    if (owed === undefined) return;
    for (const slot of slots) if (owed.delete(slot)) this.owedCount--;
    if (owed.size === 0) this.owed.delete(key);
  }

  private forgetOldest(): void {
    for (const [key, owed] of this.owed) {
      for (const slot of owed) {
        owed.delete(slot);
        this.owedCount--;
        if (owed.size === 0) this.owed.delete(key);
        return;
      }
    }
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
