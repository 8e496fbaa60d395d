import { createHash } from 'node:crypto';
import { AgentPolicyError } from '@agentpolicy/core';

/**
 * A connected client of either library, single node or cluster: node-redis (`redis` 5/6: `createClient`,
 * `createCluster`) or ioredis (5/6: `new Redis()`, `new Redis.Cluster()`). Typed structurally so neither library is
 * a dependency of this package.
 */
export type RedisClientLike = NodeRedisLike | IoRedisLike;

/** What this package uses of a node-redis client or cluster. */
export interface NodeRedisLike {
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  readonly isReady: boolean;
}

/** What this package uses of an ioredis client or cluster. */
export interface IoRedisLike {
  evalsha(sha: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  readonly status: string;
}

/** How long {@link ScriptRunner.runEventually} keeps trying. */
const EVENTUALLY_MS = 60_000;

/**
 * How long a store remembers an operation it ran, by its id, so that the same command sent again (ioredis re-sends
 * commands left unanswered when a connection drops, once it has reconnected) changes nothing and answers as the
 * first run did: five minutes. With its default options (maxRetriesPerRequest 20) ioredis gives such a command up
 * well within that: one re-sent later would run again.
 */
export const RAN_KEPT_MS = 300_000;

/**
 * Lua shared by every script: how a script says that a key holds something this package did not write.
 * `unreadable(key, field, value, expected)` fails the script with an `AGENTPOLICY_UNREADABLE` error naming the key,
 * the field and what is there (`value`, quoted; nothing when it is absent; or `shown`), which the
 * {@link ScriptRunner} turns into a typed error; `settle_before_error`, when a script sets it, first writes back what
 * the script already did, so nothing is left half done. `rc` is `redis.call` that names the key when Redis answers
 * WRONGTYPE (the key holds another kind of value). Only values already read are looked at: no extra command, and
 * little work on the way that does not fail (a check's cost is measured in the package's benchmark).
 */
export const UNREADABLE_LUA = `
local settle_before_error
local function unreadable(key, field, value, expected, shown)
  if settle_before_error then settle_before_error() end
  if not shown then
    shown = value and ('"' .. (string.gsub(string.sub(value, 1, 40), '[%c"\\\\]', '?')) .. (#value > 40 and '…"' or '"')) or 'nothing'
  end
  local where = field and ('field ' .. field .. ' of ') or ''
  error({ err = 'AGENTPOLICY_UNREADABLE ' .. where .. 'Redis key ' .. key .. ' holds ' .. shown .. ', not ' .. expected })
end
local function rc(kind, ...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, '^WRONGTYPE') then
      local key = select(2, ...)
      unreadable(key, nil, nil, kind, 'a ' .. redis.call('TYPE', key).ok)
    end
    error(reply)
  end
  return reply
end
`;

const UNREADABLE = 'AGENTPOLICY_UNREADABLE ';

/**
 * The error for a key that holds something this package did not write: `what` names the key, the field and what is
 * there; `advice` says what to do about it.
 */
export function unreadableError(what: string, advice: string, cause?: unknown): AgentPolicyError {
  return new AgentPolicyError(
    'STORE_UNAVAILABLE',
    `${what}: agentpolicy did not write that (another application using the same key prefix, an edit by hand, another version, a partial restore?), so it is not read as empty and every operation on it fails until it is fixed: ${advice}`,
    cause === undefined ? undefined : { cause },
  );
}

/** A value read from Redis, quoted for an error message (at most 40 characters of it). */
export function quoted(value: string): string {
  return `${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? '…' : ''}`;
}

/** Options shared by every store of this package. */
export interface RedisStoreOptions {
  /** A connected node-redis or ioredis client (or cluster). The store never connects, quits or reconfigures it. */
  client: RedisClientLike;
  /** Prefix of every key (no braces). Default `agentpolicy`. */
  prefix?: string;
  /**
   * Longest wait for Redis on one operation, in ms; after it the operation fails (and the check is denied).
   * Default 1,000.
   */
  timeoutMs?: number;
}

/** The test-only clock offset of a store's options, checked: a whole number of ms, 0 by default. */
export function clockOffset(options: { clockOffsetMs?: number }): string {
  const offsetMs = options.clockOffsetMs ?? 0;
  if (!Number.isSafeInteger(offsetMs)) throw new AgentPolicyError('INVALID_ARGUMENT', `clockOffsetMs must be a whole number of ms, got ${String(offsetMs)}`);
  return String(offsetMs);
}

/** A Lua script run by SHA, sent in full only when the server does not have it yet (NOSCRIPT). */
export class RedisScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** Runs scripts on the user's client: EVALSHA, EVAL on NOSCRIPT (which also caches it), bounded by a timeout. */
export class ScriptRunner {
  private readonly kind: 'node-redis' | 'ioredis';
  readonly prefix: string;
  readonly timeoutMs: number;

  /**
   * @param what the factory's name, for argument errors.
   * @param unreadable what an operator should do about a key of this store that holds something unreadable.
   */
  constructor(options: RedisStoreOptions, what: string, private readonly unreadable = 'fix or delete the key') {
    const client = options?.client as unknown as Record<string, unknown> | undefined;
    if (client && typeof client.evalSha === 'function') this.kind = 'node-redis';
    else if (client && typeof client.evalsha === 'function') this.kind = 'ioredis';
    else throw new AgentPolicyError('INVALID_ARGUMENT', `${what} needs a connected node-redis or ioredis client: { client }`);
    const prefix = options.prefix ?? 'agentpolicy';
    if (typeof prefix !== 'string' || prefix === '' || /[{}]/.test(prefix)) {
      throw new AgentPolicyError('INVALID_ARGUMENT', `prefix must be a non-empty string without braces, got ${JSON.stringify(prefix)}`);
    }
    const timeoutMs = options.timeoutMs ?? 1000;
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new AgentPolicyError('INVALID_ARGUMENT', `timeoutMs must be a number of ms > 0, got ${String(timeoutMs)}`);
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.client = options.client;
  }

  private readonly client: RedisClientLike;

  /** Whether the client says it can send now; a client that is reconnecting fails the call at once instead of queueing it. */
  private ready(): boolean {
    return this.kind === 'node-redis' ? (this.client as NodeRedisLike).isReady !== false : (this.client as IoRedisLike).status === 'ready';
  }

  private send(script: RedisScript, keys: string[], args: string[], full: boolean): Promise<unknown> {
    if (this.kind === 'node-redis') {
      const client = this.client as NodeRedisLike;
      return full ? client.eval(script.source, { keys, arguments: args }) : client.evalSha(script.sha, { keys, arguments: args });
    }
    const client = this.client as IoRedisLike;
    return full ? client.eval(script.source, keys.length, ...keys, ...args) : client.evalsha(script.sha, keys.length, ...keys, ...args);
  }

  /** Runs `script` once (one round trip while the server has it cached). Rejects with STORE_UNAVAILABLE on failure. */
  async run(script: RedisScript, keys: string[], args: string[]): Promise<unknown> {
    if (!this.ready()) throw new AgentPolicyError('STORE_UNAVAILABLE', 'Redis is not connected');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AgentPolicyError('STORE_UNAVAILABLE', `Redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    const call = (async () => {
      try {
        return await this.send(script, keys, args, false);
      } catch (error) {
        if (!String((error as Error)?.message ?? '').startsWith('NOSCRIPT')) throw error;
        return await this.send(script, keys, args, true);
      }
    })();
    try {
      return await Promise.race([call, deadline]);
    } catch (error) {
      if (AgentPolicyError.isInstance(error)) {
        call.catch(() => undefined);
        throw error;
      }
      const message = String((error as Error)?.message ?? error);
      if (message.startsWith(UNREADABLE)) {
        // Redis appends where in the script the error was raised: not for the reader.
        const what = message.slice(UNREADABLE.length).replace(/ script: [0-9a-f]{40}, on @user_script:\d+\.?$/, '');
        throw unreadableError(what, this.unreadable, error);
      }
      throw new AgentPolicyError('STORE_UNAVAILABLE', `Redis failed: ${message}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs an operation that is safe to run twice (a cancel, a withdrawal, a give-back) until Redis has taken it: now,
   * and again while it fails (the client is reconnecting, say), for up to a minute. Nothing waits for it; it does not
   * keep the process alive.
   */
  runEventually(script: RedisScript, keys: string[], args: string[]): void {
    const until = Date.now() + EVENTUALLY_MS;
    let delay = 50;
    const attempt = (): void => {
      this.run(script, keys, args).catch(() => {
        if (Date.now() + delay > until) return;
        setTimeout(attempt, delay).unref();
        delay = Math.min(delay * 2, 2000);
      });
    };
    attempt();
  }

  /** The key prefix of a budget or counter: every key of it shares one hash tag, so one script touches one slot. */
  tagged(kind: string, name: string): string {
    return `${this.prefix}:{${kind}:${name}}`;
  }
}
