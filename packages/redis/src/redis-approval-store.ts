import { randomUUID } from 'node:crypto';
import {
  AgentPolicyError,
  type ApprovalRequest,
  type ApprovalResolution,
  type ApprovalState,
  type ApprovalStatus,
  type ApprovalStore,
  type ResolveResult,
} from '@agentpolicy/core';
import { clockOffset, quoted, RedisScript, ScriptRunner, UNREADABLE_LUA, unreadableError, type RedisStoreOptions } from './redis-client.js';

/**
 * One approval request per hash (its own hash tag): the request as JSON, its status, its answer, and its expiry in
 * ms. Expiry is judged on the server's clock, so every process agrees on it; the first answer wins atomically.
 * An answer carries an id: a resolve whose caller gave up waiting is withdrawn by it (`withdraw`), so the caller's
 * "it failed" stays true: an answer that ran is taken back (the request is pending again) unless it was already
 * used, and one that has not arrived yet is marked (field `withdrawn:<id>`) and refused when it does.
 * KEYS: 1 the request hash. ARGV: 1 op (create | get | resolve | consume | withdraw), 2 clock offset ms, 3 request
 * JSON / resolution JSON / fingerprint / answer id (withdraw), 4 expires at ms (create) / approved 1|0 (resolve) /
 * use id (consume), 5 keep ms after expiry (create) / answer id (resolve), 6 fingerprint (create), 7 create id (create).
 * Each operation sent twice (its reply lost; ioredis re-sends on reconnect) answers as its first run did: a create
 * with the same create id, a resolve with the same answer id, a consume with the same use id.
 * Returns { result, request JSON, status, resolution JSON } with status `expired` when past its expiry.
 * A status or expiry that is not one this script writes, or a key of another type, fails the script (naming the key
 * and field): such a request is neither answered nor used.
 */
const APPROVAL_SCRIPT = new RedisScript(`${UNREADABLE_LUA}
local STATUSES = { pending = true, approved = true, rejected = true, used = true }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local op = ARGV[1]
if op == 'create' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    -- This very create, run before (its reply lost, the command sent again): created, once.
    if rc('a hash', 'HGET', KEYS[1], 'created') == ARGV[7] then return { 'ok', '', 'pending', '' } end
    return { 'exists', '', '', '' }
  end
  redis.call('HSET', KEYS[1], 'request', ARGV[3], 'status', 'pending', 'expires', ARGV[4], 'fingerprint', ARGV[6], 'created', ARGV[7])
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(ARGV[4]) + tonumber(ARGV[5])))
  return { 'ok', '', 'pending', '' }
end
local h = rc('a hash', 'HMGET', KEYS[1], 'request', 'status', 'expires', 'resolution', 'fingerprint', 'answer', 'use')
if not h[1] then return { 'unknown', '', '', '' } end
if not STATUSES[h[2]] then
  unreadable(KEYS[1], 'status', h[2], 'pending, approved, rejected or used')
end
if not (h[3] and #h[3] <= 16 and string.find(h[3], '^%-?%d+$')) then
  unreadable(KEYS[1], 'expires', h[3], 'a time in ms')
end
local status = h[2]
if (status == 'pending' or status == 'approved') and now > tonumber(h[3]) then status = 'expired' end
local result = 'ok'
if op == 'resolve' then
  if redis.call('HEXISTS', KEYS[1], 'withdrawn:' .. ARGV[5]) == 1 then result = 'withdrawn'
  elseif h[6] == ARGV[5] then result = 'ok' -- this very answer, run before (its reply lost, sent again)
  elseif status == 'expired' then result = 'expired'
  elseif status ~= 'pending' then result = 'answered'
  else
    status = ARGV[4] == '1' and 'approved' or 'rejected'
    redis.call('HSET', KEYS[1], 'status', status, 'resolution', ARGV[3], 'answer', ARGV[5])
    h[4] = ARGV[3]
  end
elseif op == 'withdraw' then
  if (h[2] == 'approved' or h[2] == 'rejected') and h[6] == ARGV[3] then
    redis.call('HSET', KEYS[1], 'status', 'pending')
    redis.call('HDEL', KEYS[1], 'resolution', 'answer')
    status = status == 'expired' and 'expired' or 'pending'
    h[4] = false
  elseif h[2] == 'pending' then
    redis.call('HSET', KEYS[1], 'withdrawn:' .. ARGV[3], '1')
  end
elseif op == 'consume' then
  if status == 'approved' and h[5] == ARGV[3] then
    status = 'used'
    redis.call('HSET', KEYS[1], 'status', 'used', 'use', ARGV[4])
  elseif h[2] == 'used' and h[7] == ARGV[4] then
    -- this very use, run before (its reply lost, sent again): still the one use
  else
    result = 'refused'
  end
end
return { result, h[1], status, h[4] or '' }
`);

/** The index of pending requests (one sorted set, member `session\0id`, score its creation time, so the list is oldest
 * first as the ApprovalStore contract says): add, list, range (by rank), remove. */
const INDEX_SCRIPT = new RedisScript(`
if ARGV[1] == 'add' then return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3]) end
if ARGV[1] == 'list' then return redis.call('ZRANGE', KEYS[1], 0, -1) end
if ARGV[1] == 'range' then return redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3]) end
local removed = 0
for i = 2, #ARGV do removed = removed + redis.call('ZREM', KEYS[1], ARGV[i]) end
return removed
`);

/** Options of {@link createRedisApprovalStore}. */
export interface RedisApprovalStoreOptions extends RedisStoreOptions {
  /** How long a request is kept after it expires (to answer "expired" rather than "unknown"), in ms. Default 7 days. */
  retentionMs?: number;
  /** Added to the server's clock; for tests only. Default 0. */
  clockOffsetMs?: number;
}

/** Index members looked at for removal each time a request is created (see RedisApprovalStore.sweep). */
const SWEEP_PER_NEW_REQUEST = 2;
const APPROVAL_ADVICE = 'the request is neither answered nor used until the key is fixed or deleted (it is then unknown: raise it again)';

const STATUSES: ReadonlySet<string> = new Set<ApprovalStatus>(['pending', 'approved', 'rejected', 'used', 'expired']);

/**
 * Pending approvals on Redis: a request raised in one process survives a restart and can be answered from any
 * other; expiry follows the server's clock (the `now` the session passes is not used), and a request takes one
 * answer only, and is used for one execution only, atomically.
 */
export class RedisApprovalStore implements ApprovalStore {
  private readonly runner: ScriptRunner;
  private readonly offset: string;
  private readonly retention: string;
  // Where the next look at the index for requests no longer pending starts (a rank; see create).
  private sweepAt = 0;

  constructor(options: RedisApprovalStoreOptions) {
    this.runner = new ScriptRunner(options, 'createRedisApprovalStore', APPROVAL_ADVICE);
    this.offset = clockOffset(options);
    const retentionMs = options.retentionMs ?? 7 * 86_400_000;
    if (!(Number.isSafeInteger(retentionMs) && retentionMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `retentionMs must be a whole number of ms > 0, got ${String(retentionMs)}`);
    this.retention = String(retentionMs);
  }

  private key(id: string): string {
    if (typeof id !== 'string' || id === '' || id.length > 200) throw new AgentPolicyError('INVALID_ARGUMENT', 'an approval request id must be a non-empty string');
    return this.runner.tagged('approval', id);
  }

  private index(): string {
    return `${this.runner.prefix}:approvals:pending`;
  }

  private async call(op: string, id: string, args: string[]): Promise<{ result: string; state: ApprovalState | undefined }> {
    const reply = await this.runner.run(APPROVAL_SCRIPT, [this.key(id)], [op, this.offset, ...args]);
    if (!Array.isArray(reply) || reply.length !== 4) throw new AgentPolicyError('STORE_UNAVAILABLE', 'Redis answered the approval script with something unexpected');
    const [result, requestJson, status, resolutionJson] = reply.map(String) as [string, string, string, string];
    if (requestJson === '' || !STATUSES.has(status)) return { result, state: undefined };
    const key = this.key(id);
    const request = readJson(key, 'request', requestJson) as ApprovalRequest;
    const state = resolutionJson === '' ? { ...request, status: status as ApprovalStatus } : { ...request, status: status as ApprovalStatus, resolution: Object.freeze(readJson(key, 'resolution', resolutionJson) as ApprovalResolution) };
    return { result, state: Object.freeze(state) };
  }

  async create(request: ApprovalRequest): Promise<void> {
    const expires = Date.parse(request?.expiresAt);
    if (!Number.isFinite(expires)) throw new AgentPolicyError('INVALID_ARGUMENT', 'an approval request needs an ISO 8601 expiresAt');
    const { result } = await this.call('create', request.id, [JSON.stringify(request), String(expires), this.retention, request.fingerprint, randomUUID()]);
    if (result === 'exists') throw new AgentPolicyError('INVALID_ARGUMENT', `an approval request with id ${request.id} already exists`);
    // The index of pending requests lives in its own slot: kept apart from the atomic request, pruned when read.
    const created = Date.parse(request.createdAt);
    await this.runner.run(INDEX_SCRIPT, [this.index()], ['add', String(Number.isFinite(created) ? created : expires), `${request.sessionId}\u0000${request.id}`]);
    await this.sweep().catch(() => undefined);
  }

  // Requests leave the index when answered (resolve) or when a listing finds them no longer pending. One never
  // answered and never listed (requests answered by their id only, from links) would stay in it for good, one member
  // per request ever raised: so each new request looks at two members, going round the index, and removes those no
  // longer pending (expired, answered, or gone). The index then holds about the requests still pending.
  private async sweep(): Promise<void> {
    const members = await this.runner.run(INDEX_SCRIPT, [this.index()], ['range', String(this.sweepAt), String(this.sweepAt + SWEEP_PER_NEW_REQUEST - 1)]);
    const looked = Array.isArray(members) ? members.map(String) : [];
    const states = await Promise.all(looked.map((member) => this.get(member.slice(member.lastIndexOf('\u0000') + 1))));
    const stale = looked.filter((_member, i) => states[i]?.status !== 'pending');
    if (stale.length > 0) await this.runner.run(INDEX_SCRIPT, [this.index()], ['remove', ...stale]);
    // Past the end: start again from the oldest.
    this.sweepAt = looked.length < SWEEP_PER_NEW_REQUEST ? 0 : this.sweepAt + looked.length - stale.length;
  }

  private async unindex(state: ApprovalState | undefined): Promise<void> {
    if (state === undefined || state.status === 'pending') return;
    await this.runner.run(INDEX_SCRIPT, [this.index()], ['remove', `${state.sessionId}\u0000${state.id}`]).catch(() => undefined);
  }

  async get(id: string): Promise<ApprovalState | undefined> {
    return (await this.call('get', id, [])).state;
  }

  async listPending(sessionId: string | undefined): Promise<readonly ApprovalState[]> {
    const members = await this.runner.run(INDEX_SCRIPT, [this.index()], ['list']);
    const out: ApprovalState[] = [];
    const stale: string[] = [];
    for (const member of Array.isArray(members) ? members.map(String) : []) {
      const [owner, id] = member.split('\u0000') as [string, string];
      if (sessionId !== undefined && owner !== sessionId) continue;
      const state = await this.get(id);
      if (state?.status === 'pending') out.push(state);
      else stale.push(member);
    }
    if (stale.length > 0) await this.runner.run(INDEX_SCRIPT, [this.index()], ['remove', ...stale]);
    return out;
  }

  async resolve(id: string, resolution: ApprovalResolution): Promise<ResolveResult> {
    const answer = randomUUID();
    let outcome: Awaited<ReturnType<RedisApprovalStore['call']>>;
    try {
      outcome = await this.call('resolve', id, [JSON.stringify(resolution), resolution?.approved === true ? '1' : '0', answer]);
    } catch (error) {
      // The resolve may still reach Redis after its caller was told it failed (a slow server, a reply lost): withdraw
      // it by its id, so an answer that ran is taken back unless already used, and one that runs later is refused.
      // Sent until Redis has it: a dropped connection fails it at first.
      if (AgentPolicyError.isInstance(error) && error.code === 'STORE_UNAVAILABLE') this.runner.runEventually(APPROVAL_SCRIPT, [this.key(id)], ['withdraw', this.offset, answer]);
      throw error;
    }
    const { result, state } = outcome;
    if (state === undefined) return { ok: false, problem: 'unknown' };
    await this.unindex(state);
    if (result === 'ok') return { ok: true, request: state };
    return { ok: false, problem: result === 'expired' ? 'expired' : 'answered', request: state };
  }

  async consume(id: string, fingerprint: string): Promise<boolean> {
    if (typeof fingerprint !== 'string') return false;
    return (await this.call('consume', id, [fingerprint, randomUUID()])).result === 'ok';
  }
}

/** A JSON object kept in a field of a request's hash; anything else names the key to fix. */
function readJson(key: string, field: string, json: string): object {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    // below
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && (field !== 'request' || typeof (value as { id?: unknown }).id === 'string')) return value;
  throw unreadableError(`field ${field} of Redis key ${key} holds ${quoted(json)}, not ${field === 'request' ? 'an approval request' : 'an answer'} as JSON`, APPROVAL_ADVICE);
}

/**
 * An {@link ApprovalStore} on Redis ≥ 7 (node-redis 5/6 or ioredis 5/6, single node or cluster).
 *
 * @example
 * ```ts
 * const session = policy.session({ approvals: createRedisApprovalStore({ client }) });
 * ```
 */
export function createRedisApprovalStore(options: RedisApprovalStoreOptions): RedisApprovalStore {
  return new RedisApprovalStore(options);
}
