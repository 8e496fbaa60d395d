import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import type { MaybePromise } from './budget-store.js';
import { AgentPolicyError, errorMessage } from './errors.js';
import { describe } from './money.js';
import type { Verdict } from './policy-evaluator.js';

/** An emergency stop in force: every action it covers is denied until it is resumed. */
export interface HaltState {
  /** Why everything was stopped, as the operator gave it. */
  readonly reason: string;
  /** ISO 8601, when the halt was set. */
  readonly at: string;
  /** Who set it. */
  readonly by?: string;
  /** The one budget key it covers; absent when it covers every session. */
  readonly budgetKey?: string;
}

/** Options of a halt: who sets it, and the one budget key it covers (every session when absent). */
export interface HaltOptions {
  by?: string;
  budgetKey?: string;
}

/**
 * Where halts are kept. A session asks it on every check, with its budget key: a halt of everything, or of that key,
 * denies the action. In memory by default (one process); a shared store (a file every process on a host reads, or
 * Redis) makes a halt set anywhere stop every process using it, from their next check.
 */
export interface HaltStore {
  /** The halt covering `budgetKey` (a halt of everything first), or undefined. */
  halted(budgetKey: string): MaybePromise<HaltState | undefined>;
  /** Sets a halt (of everything, or of `state.budgetKey`); a later halt of the same scope replaces it. */
  halt(state: HaltState): MaybePromise<void>;
  /** Lifts the halt of everything (no key) or of one budget key. Returns whether one was in force. */
  resume(budgetKey?: string): MaybePromise<boolean>;
  /** Every halt in force. */
  list(): MaybePromise<readonly HaltState[]>;
}

/** Checks and builds a halt's state from a reason and options; a missing reason is refused. */
export function haltState(reason: unknown, options: HaltOptions = {}): HaltState {
  if (typeof reason !== 'string' || reason.trim() === '') {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'halt needs a reason (a non-empty string): every denial it causes names it');
  }
  const { by, budgetKey } = readHaltOptions(options, 'halt');
  return Object.freeze({
    reason: reason.slice(0, 1024),
    at: new Date().toISOString(),
    ...(by !== undefined ? { by: by.slice(0, 256) } : {}),
    ...(budgetKey !== undefined ? { budgetKey } : {}),
  });
}

/**
 * The budget key a resume lifts the halt of (undefined: every halt). Options that are not an object are refused
 * rather than read as "resume everything": `resume('tenant-a')` must not lift every halt.
 */
export function resumeKey(options: { budgetKey?: string } | undefined): string | undefined {
  return readHaltOptions(options === undefined ? {} : options, 'resume').budgetKey;
}

// Halt or resume options, each field read once; anything unreadable or of the wrong type is an INVALID_ARGUMENT.
function readHaltOptions(options: unknown, method: 'halt' | 'resume'): { by?: string; budgetKey?: string } {
  if (typeof options !== 'object' || options === null) throw new AgentPolicyError('INVALID_ARGUMENT', `${method} options must be an object, got ${describe(options)}`);
  let by: unknown;
  let budgetKey: unknown;
  try {
    ({ by, budgetKey } = options as { by?: unknown; budgetKey?: unknown });
    by = by === undefined ? undefined : String(by);
  } catch (error) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${method} options cannot be read: ${errorMessage(error)}`, { cause: error });
  }
  if (budgetKey !== undefined && (typeof budgetKey !== 'string' || budgetKey === '')) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${method} budgetKey must be a non-empty string`);
  }
  return { ...(by !== undefined ? { by: by as string } : {}), ...(budgetKey !== undefined ? { budgetKey: budgetKey as string } : {}) };
}

/** The denial a halt causes: it names the halt, who set it and when. */
export function haltVerdict(state: HaltState): Verdict {
  const scope = state.budgetKey === undefined ? 'every session' : `budget key ${JSON.stringify(state.budgetKey)}`;
  return {
    decision: 'deny',
    reason: `halted: ${state.reason} (halt of ${scope} since ${state.at}${state.by !== undefined ? ` by ${state.by}` : ''}; resume to allow actions again)`,
    rule: Object.freeze({ section: 'halt', reason: state.reason, at: state.at, ...(state.by !== undefined ? { by: state.by } : {}), ...(state.budgetKey !== undefined ? { budgetKey: state.budgetKey } : {}) }),
    approvedRule: false,
  };
}

/** Halts in this process's memory. The default: a halt is seen by the very next check, in the same tick. */
export class InMemoryHaltStore implements HaltStore {
  private all: HaltState | undefined;
  private readonly keys = new Map<string, HaltState>();

  halted(budgetKey: string): HaltState | undefined {
    return this.all ?? (this.keys.size === 0 ? undefined : this.keys.get(budgetKey));
  }

  halt(state: HaltState): void {
    if (state.budgetKey === undefined) this.all = state;
    else this.keys.set(state.budgetKey, state);
  }

  resume(budgetKey?: string): boolean {
    if (budgetKey === undefined) {
      const was = this.all !== undefined;
      this.all = undefined;
      return was;
    }
    return this.keys.delete(budgetKey);
  }

  list(): readonly HaltState[] {
    return [...(this.all ? [this.all] : []), ...this.keys.values()];
  }
}

interface HaltFile {
  all?: HaltState;
  keys?: Record<string, HaltState>;
}

/**
 * Halts kept in one JSON file that every process on a host (and `agentpolicy halt --file`) shares. Each write
 * replaces the file atomically (write, fsync, rename); each check looks at the file's identity (inode, size, mtime)
 * and reads it again only when it changed, so a halt set by another process stops this one at its next check.
 * A file that cannot be read or parsed counts as a halt of everything (fail closed), naming the problem.
 */
export class FileHaltStore implements HaltStore {
  private seen = '';
  private state: HaltFile = {};

  constructor(readonly path: string) {
    if (typeof path !== 'string' || path === '') throw new AgentPolicyError('INVALID_ARGUMENT', 'FileHaltStore needs a file path');
  }

  halted(budgetKey: string): HaltState | undefined {
    const state = this.read();
    return state.all ?? state.keys?.[budgetKey];
  }

  halt(state: HaltState): void {
    const current = this.readForWrite();
    if (state.budgetKey === undefined) current.all = state;
    else current.keys = { ...current.keys, [state.budgetKey]: state };
    this.write(current);
  }

  resume(budgetKey?: string): boolean {
    const current = this.readForWrite();
    let was: boolean;
    if (budgetKey === undefined) {
      was = current.all !== undefined;
      delete current.all;
    } else {
      was = current.keys?.[budgetKey] !== undefined;
      if (current.keys) delete current.keys[budgetKey];
    }
    this.write(current);
    return was;
  }

  list(): readonly HaltState[] {
    const state = this.read();
    return [...(state.all ? [state.all] : []), ...Object.values(state.keys ?? {})];
  }

  private read(): HaltFile {
    let identity: string;
    try {
      const stat = statSync(this.path, { throwIfNoEntry: false });
      if (stat === undefined) {
        this.seen = '';
        this.state = {};
        return this.state;
      }
      identity = `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
    } catch (error) {
      return { all: problemHalt(this.path, error) };
    }
    if (identity === this.seen) return this.state;
    try {
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as unknown;
      this.state = checkHaltFile(parsed, this.path);
    } catch (error) {
      this.state = { all: problemHalt(this.path, error) };
    }
    this.seen = identity;
    return this.state;
  }

  // A write starts from the file as it is; a file that cannot be read is replaced (that is how an operator fixes it).
  private readForWrite(): HaltFile {
    try {
      return checkHaltFile(JSON.parse(readFileSync(this.path, 'utf8')) as unknown, this.path);
    } catch {
      return {};
    }
  }

  private write(state: HaltFile): void {
    const temp = `${this.path}.${process.pid}.${Date.now()}.tmp`;
    const fd = openSync(temp, 'w');
    try {
      writeSync(fd, `${JSON.stringify(state)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(temp, this.path);
    } catch (error) {
      try {
        unlinkSync(temp);
      } catch {
        // already gone
      }
      throw error;
    }
    this.seen = '';
  }
}

function problemHalt(path: string, error: unknown): HaltState {
  return Object.freeze({ reason: `the halt file ${path} cannot be read (${(error as Error)?.message ?? String(error)}); every action is denied until it is fixed`, at: new Date().toISOString() });
}

function isState(value: unknown): value is HaltState {
  return typeof value === 'object' && value !== null && typeof (value as HaltState).reason === 'string' && typeof (value as HaltState).at === 'string';
}

function checkHaltFile(value: unknown, path: string): HaltFile {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${path} is not a halt file (expected a JSON object)`);
  const { all, keys } = value as HaltFile;
  if (all !== undefined && !isState(all)) throw new Error(`${path}: "all" is not a halt`);
  if (keys !== undefined && (typeof keys !== 'object' || keys === null || Object.values(keys).some((state) => !isState(state)))) throw new Error(`${path}: "keys" holds something that is not a halt`);
  return { ...(all ? { all } : {}), ...(keys ? { keys: { ...keys } } : {}) };
}
