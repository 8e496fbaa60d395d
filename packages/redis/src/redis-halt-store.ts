import { randomUUID } from 'node:crypto';
import { AgentPolicyError, type HaltState, type HaltStore } from '@agentpolicy/core';
import { RAN_KEPT_MS, RedisScript, ScriptRunner, UNREADABLE_LUA, type RedisStoreOptions } from './redis-client.js';

/**
 * Every halt in one hash (one hash tag, so one slot on a cluster): field `*` halts everything, `k:<budget key>` one key.
 * KEYS: 1 the hash, 2 (del) this resume's marker. ARGV: 1 op (get | set | del | all), 2 field (get: the key's field),
 * 3 value (set). A set sent twice writes the same value.
 * get returns the halt of everything, else the key's, else nil; del returns 1 when a halt was lifted; all returns
 * every value.
 */
const HALT_SCRIPT = new RedisScript(`${UNREADABLE_LUA}
local op = ARGV[1]
if op == 'get' then
  local all = rc('a hash', 'HGET', KEYS[1], '*')
  if all then return all end
  return redis.call('HGET', KEYS[1], ARGV[2])
elseif op == 'set' then
  rc('a hash', 'HSET', KEYS[1], ARGV[2], ARGV[3])
  return 1
elseif op == 'del' then
  -- KEYS[2] marks this very resume as the one that lifted the halt, for five minutes: sent again (its reply lost,
  -- ioredis re-sends on reconnect), it still says so.
  if rc('a hash', 'HDEL', KEYS[1], ARGV[2]) == 1 then
    redis.call('SET', KEYS[2], '1', 'PX', ${RAN_KEPT_MS})
    return 1
  end
  return redis.call('EXISTS', KEYS[2])
end
return rc('a hash', 'HVALS', KEYS[1])
`);

function field(budgetKey: string | undefined): string {
  return budgetKey === undefined ? '*' : `k:${budgetKey}`;
}

function parse(value: unknown): HaltState {
  try {
    const state = JSON.parse(String(value)) as HaltState;
    if (typeof state?.reason === 'string' && typeof state.at === 'string') return state;
  } catch {
    // below
  }
  // Something else wrote there: stop rather than guess (the halt store fails closed).
  return { reason: 'the halt entry in Redis cannot be read; every action is denied until it is fixed (agentpolicy resume)', at: new Date().toISOString() };
}

/**
 * Halts on Redis, shared by every process: each check asks Redis (one script, one round trip), so a halt set in any
 * process, or from a shell, stops every session using the store at its next check. A Redis that does not answer
 * counts as a halt (the session denies with the error).
 */
export class RedisHaltStore implements HaltStore {
  private readonly runner: ScriptRunner;
  private readonly key: string;

  constructor(options: RedisStoreOptions & { name?: string }) {
    this.runner = new ScriptRunner(options, 'createRedisHaltStore', 'delete the key (it holds every halt: set the ones you want again) or fix it');
    const name = options.name ?? 'default';
    if (typeof name !== 'string' || name === '' || /[{}]/.test(name)) throw new AgentPolicyError('INVALID_ARGUMENT', 'name must be a non-empty string without braces');
    this.key = this.runner.tagged('halt', name);
  }

  async halted(budgetKey: string): Promise<HaltState | undefined> {
    const value = await this.runner.run(HALT_SCRIPT, [this.key], ['get', field(budgetKey), '']);
    return value === null || value === undefined ? undefined : parse(value);
  }

  async halt(state: HaltState): Promise<void> {
    await this.runner.run(HALT_SCRIPT, [this.key], ['set', field(state.budgetKey), JSON.stringify(state)]);
  }

  async resume(budgetKey?: string): Promise<boolean> {
    return Number(await this.runner.run(HALT_SCRIPT, [this.key, `${this.key}:lifted:${randomUUID()}`], ['del', field(budgetKey), ''])) === 1;
  }

  async list(): Promise<readonly HaltState[]> {
    const values = await this.runner.run(HALT_SCRIPT, [this.key], ['all', '', '']);
    return Array.isArray(values) ? values.map(parse) : [];
  }
}

/**
 * A {@link HaltStore} on Redis ≥ 7 (node-redis 5/6 or ioredis 5/6, single node or cluster): `policy.halt()` or
 * `source.halt()` in one process stops the sessions of every process using the store. `name` separates fleets
 * (default `default`).
 *
 * @example
 * ```ts
 * const halts = createRedisHaltStore({ client });
 * const source = new PolicySource(policy, { halts });
 * await source.halt('runaway agent'); // every process's next check is denied
 * ```
 */
export function createRedisHaltStore(options: RedisStoreOptions & { name?: string }): RedisHaltStore {
  return new RedisHaltStore(options);
}
