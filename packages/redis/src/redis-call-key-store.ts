import { createHash, randomUUID } from 'node:crypto';
import { AgentPolicyError, parseDecision, type CallKeyBegin, type CallKeyBeginOptions, type CallKeyRef, type CallKeyStore, type Decision } from '@agentpolicy/core';
import { quoted, RAN_KEPT_MS, RedisScript, ScriptRunner, UNREADABLE_LUA, unreadableError, type RedisStoreOptions } from './redis-client.js';

/**
 * One keyed call: a hash (d = the decision as JSON, k = its kind, t = its token, u = 1 once used, l = its budget
 * lease) and a "being decided" marker beside it. Both keys share the session's hash tag, so one slot on a cluster.
 * KEYS: 1 the hash, 2 the marker. ARGV: 1 op, then per op:
 * - begin: 2 marker value, 3 marker ms, 4 '1' when a remembered require_approval is handed back.
 *   Returns {'decided', d, t, l} | {'new'} | {'busy'}.
 * - remember: 2 marker value (the token), 3 decision JSON, 4 kind, 5 ttl ms, 6 lease ('' for none). 1, or 0 when the
 *   marker is not (or no longer) the caller's.
 * - abandon: 2 marker value. Deletes the marker if it is the caller's.
 * - claim: 2 token, 3 claim id (new for every claim call). 1 for the first claim of that token, else 0. A claimed call
 *   keeps only its token and who claimed it (c), for five minutes: a used decision is never handed back and cannot be
 *   claimed again, exactly as if it were gone, but the same claim sent again (its reply lost; ioredis re-sends on
 *   reconnect) answers 1 again. Keeping the whole call for its ttl held one hash for every call ever allowed.
 * begin and remember sent twice answer as they did the first time too (the marker, the token are the caller's).
 * A kind or used flag that is not one this script writes, or a key of another type, fails the script (naming the key
 * and field) rather than being read as a fresh or unused call.
 */
const CALL_KEY_SCRIPT = new RedisScript(`${UNREADABLE_LUA}
local function flag(value)
  if value and value ~= '0' and value ~= '1' then unreadable(KEYS[1], 'u', value, '0 or 1') end
end
local op = ARGV[1]
if op == 'begin' then
  local rec = rc('a hash', 'HMGET', KEYS[1], 'd', 'k', 't', 'u', 'l')
  if rec[1] then
    flag(rec[4])
    if rec[2] ~= 'allow' and rec[2] ~= 'deny' and rec[2] ~= 'require_approval' then
      unreadable(KEYS[1], 'k', rec[2], 'a decision kind')
    end
  end
  if rec[1] and rec[4] ~= '1' and (ARGV[4] == '1' or rec[2] ~= 'require_approval') then
    return {'decided', rec[1], rec[3], rec[5] or ''}
  end
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'new'} end
  -- The marker is this very begin's (it ran before, its reply lost): still the caller's.
  if rc('a string', 'GET', KEYS[2]) == ARGV[2] then return {'new'} end
  return {'busy'}
elseif op == 'remember' then
  if rc('a string', 'GET', KEYS[2]) ~= ARGV[2] then
    -- Already remembered by this very call (it ran before, its reply lost): the answer it gave then.
    if rc('a hash', 'HGET', KEYS[1], 't') == ARGV[2] then return 1 end
    return 0
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'k', ARGV[4], 't', ARGV[2], 'u', '0', 'l', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
elseif op == 'abandon' then
  if rc('a string', 'GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
  return 1
end
local rec = rc('a hash', 'HMGET', KEYS[1], 't', 'u', 'c')
if rec[1] ~= ARGV[2] then return 0 end
flag(rec[2])
if rec[2] == '1' then
  if rec[3] == ARGV[3] then return 1 end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'u', '1', 'c', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ${RAN_KEPT_MS})
return 1
`);

/** Options of {@link createRedisCallKeyStore}. */
export interface RedisCallKeyStoreOptions extends RedisStoreOptions {
  /**
   * How long a keyed call is remembered after it was decided, in ms, unless its allow is claimed first (a claimed
   * call is forgotten at once). A repeat of the key after that is a new action (decided and charged again). Default
   * 86,400,000 (a day).
   */
  ttlMs?: number;
  /**
   * How long a check waits for another process that is deciding the same call right now before it is denied
   * (`rule.section` `error`, "being decided in another process"), in ms. Default 2,000.
   */
  waitMs?: number;
}

const POLL_MS = 20;
const CALL_KEY_ADVICE = 'delete the key (the call is then decided afresh, as a new one)';

/**
 * Call-identity keys on Redis: a session's keyed calls (`idempotencyKey`) are shared by every process running that
 * session id, each step one atomic script on the server (see {@link CallKeyStore} for the protocol). Keys:
 * `<prefix>:{callkeys:<session id>}:<sha-256 of the key>:<fingerprint>` (a hash) and the same with `:lock` (the
 * "being decided" marker, which expires on its own if its process dies while deciding).
 */
export class RedisCallKeyStore implements CallKeyStore {
  private readonly runner: ScriptRunner;
  private readonly ttlMs: string;
  private readonly waitMs: number;

  constructor(options: RedisCallKeyStoreOptions) {
    this.runner = new ScriptRunner(options, 'createRedisCallKeyStore', CALL_KEY_ADVICE);
    const ttlMs = options.ttlMs ?? 86_400_000;
    if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `ttlMs must be a whole number of ms > 0, got ${String(ttlMs)}`);
    const waitMs = options.waitMs ?? 2000;
    if (!(Number.isFinite(waitMs) && waitMs >= 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `waitMs must be a number of ms ≥ 0, got ${String(waitMs)}`);
    this.ttlMs = String(ttlMs);
    this.waitMs = waitMs;
  }

  async begin(call: CallKeyRef, options: CallKeyBeginOptions): Promise<CallKeyBegin> {
    const keys = this.keysOf(call);
    const deadline = Date.now() + this.waitMs;
    const lock = randomUUID();
    for (;;) {
      const reply = await this.runner.run(CALL_KEY_SCRIPT, keys, ['begin', lock, String(Math.max(1, Math.ceil(options.lockMs))), options.reuseApproval ? '1' : '0']);
      const [status, decision, token, lease] = Array.isArray(reply) ? (reply as unknown[]).map((part) => (part === null || part === undefined ? '' : String(part))) : [];
      if (status === 'decided') return { status, decision: this.decisionIn(keys[0]!, decision as string), token: token as string, ...(lease ? { lease } : {}) };
      if (status === 'new') return { status, lock };
      if (status !== 'busy') throw new AgentPolicyError('STORE_UNAVAILABLE', 'the call-key script gave an answer it should not');
      // Another process is deciding this call: its decision is the answer, if it comes in time.
      if (Date.now() + POLL_MS > deadline) return { status: 'busy' };
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  async remember(call: CallKeyRef, lock: string, decision: Decision, lease: string | undefined): Promise<boolean> {
    const reply = await this.runner.run(CALL_KEY_SCRIPT, this.keysOf(call), ['remember', lock, JSON.stringify(decision), decision.decision, this.ttlMs, lease ?? '']);
    return Number(reply) === 1;
  }

  async abandon(call: CallKeyRef, lock: string): Promise<void> {
    await this.runner.run(CALL_KEY_SCRIPT, this.keysOf(call), ['abandon', lock]);
  }

  async claim(call: CallKeyRef, token: string): Promise<boolean> {
    return Number(await this.runner.run(CALL_KEY_SCRIPT, this.keysOf(call), ['claim', token, randomUUID()])) === 1;
  }

  /** The decision kept in field d, read; one that is not a decision names the key to delete. */
  private decisionIn(key: string, json: string): Decision {
    try {
      return parseDecision(json);
    } catch (error) {
      throw unreadableError(`field d of Redis key ${key} holds ${quoted(json)}, not a decision`, CALL_KEY_ADVICE, error);
    }
  }

  private keysOf(call: CallKeyRef): string[] {
    const record = `${this.runner.tagged('callkeys', call.sessionId)}:${createHash('sha256').update(call.key).digest('hex')}:${call.fingerprint}`;
    return [record, `${record}:lock`];
  }
}

/**
 * A {@link CallKeyStore} on Redis ≥ 7 (node-redis 5/6 or ioredis 5/6, single node or cluster). Pass it as the
 * session's `callKeys` where the same session id runs in several processes: a keyed call retried in another process
 * gets its first decision back (not charged again) while its allow is unused, and `session.claim` lets exactly one
 * process run an allow. A claimed call's key is deleted; others expire `ttlMs` after they were decided (a day by default).
 *
 * @example
 * ```ts
 * const session = policy.session({ id: runId, store: createRedisBudgetStore({ client }), callKeys: createRedisCallKeyStore({ client }) });
 * const result = await session.runTool('send_email', { input, cost: 0.01, idempotencyKey: call.id }, () => send(input));
 * ```
 */
export function createRedisCallKeyStore(options: RedisCallKeyStoreOptions): RedisCallKeyStore {
  return new RedisCallKeyStore(options);
}
