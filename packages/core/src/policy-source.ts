import { closeSync, fstatSync, lstatSync, openSync, readFileSync, watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { InMemoryBudgetStore, type MaybePromise } from './budget-store.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';
import { AgentPolicyError, errorMessage, PolicyValidationError, type PolicyIssue } from './errors.js';
import { haltState, InMemoryHaltStore, resumeKey, type HaltOptions, type HaltState, type HaltStore } from './halt.js';
import { AgentPolicy } from './policy.js';
import type { PolicyProvider } from './policy-evaluator.js';
import { PolicySession } from './session.js';
import type { SessionOptions } from './session-options.js';

/** What an update of a {@link PolicySource} did. */
export type PolicyUpdate =
  | { readonly ok: true; readonly changed: boolean; readonly hash: string; readonly previousHash: string }
  | { readonly ok: false; readonly issues: readonly PolicyIssue[]; readonly hash: string };

/** Options of a {@link PolicySource}. */
export interface PolicySourceOptions {
  /** Where the halts of every session of this source are kept: in memory by default; pass a shared store for many processes. */
  halts?: HaltStore;
  /** Called after every update that took effect (and changed the policy). */
  onUpdate?: (event: { hash: string; previousHash: string }) => void;
  /** Called when an update was refused (invalid YAML or policy, unreadable file): the old policy stays in force. */
  onReject?: (event: { issues: readonly PolicyIssue[]; hash: string }) => void;
}

/** Options of {@link PolicySource.fromFile}. */
export interface PolicyFileOptions extends PolicySourceOptions {
  /** Watch the file and reload it when it changes (default true). Call `close()` to stop. */
  watch?: boolean;
  /** Milliseconds to wait after a change before reading the file, so an editor's several writes read as one. Default 50. */
  debounceMs?: number;
  /**
   * Milliseconds the file must then stay unchanged (same bytes, size, modification and change times, inode) before
   * it is parsed and can take effect, so a file written in place with pauses is never taken half-written. A writer
   * that pauses longer than this between two writes can still be read in between. Default 200; 0 takes the file as
   * soon as `debounceMs` has passed (only for files that are always replaced by renaming a finished one over them).
   */
  settleMs?: number;
  /**
   * Milliseconds a changing file is given to settle, from its first change. A file still changing then is not
   * loaded: the reload is refused through `onReject`, the policy in force stays, and the file is watched for the next
   * chance to settle. Default 5,000, and at least `settleMs`.
   */
  settleTimeoutMs?: number;
}

/**
 * A policy that can change while agents run: a file it watches, or updates through {@link update}. A new policy
 * replaces the current one atomically, and only when it validates; an invalid one is refused with its issues and
 * the policy in force stays. Sessions opened from the source take the current policy at every check (a running
 * session switches at its next check); every decision records the hash of the policy that made it. `halt` stops
 * every session of the source at once.
 *
 * @example
 * ```ts
 * const source = PolicySource.fromFile('policy.yaml'); // reloads on change
 * const session = source.session();
 * // elsewhere, in an emergency:
 * source.halt('runaway agent, investigating');
 * ```
 */
export class PolicySource implements PolicyProvider {
  readonly halts: HaltStore;
  private policy: AgentPolicy;
  private readonly options: PolicySourceOptions;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  // The change being waited on until the file settles: when it must have settled by, and the file as last read.
  private settling: { deadline: number; last: FileSnapshot | undefined } | undefined;
  private closed = false;
  private readonly file: string | undefined;
  // Keyed budgets (`budgetKey` without a store) and their limits, shared by this source's sessions across reloads.
  private keyed: { store: InMemoryBudgetStore; limitStore: InMemoryRateLimitStore } | undefined;

  constructor(initial: AgentPolicy, options: PolicySourceOptions & { file?: string } = {}) {
    if (!(initial instanceof AgentPolicy)) throw new AgentPolicyError('INVALID_ARGUMENT', 'PolicySource needs an AgentPolicy to start from');
    this.policy = initial;
    this.options = options;
    this.halts = options.halts ?? new InMemoryHaltStore();
    this.file = options.file;
  }

  /**
   * Loads a policy file (an invalid first file throws {@link PolicyValidationError}: there is no policy to fall back
   * on) and, unless `watch: false`, reloads it whenever it changes. A change is read `debounceMs` after the writes
   * pause, then read again until it has stayed the same for `settleMs`: only a settled file is parsed, so a file
   * written in place in several writes (a slow `cat > policy.yaml`, a tool writing in chunks) is not taken while a
   * part that happens to parse on its own is written (a block list cut after a whole item would allow what the rest
   * blocks). A file that keeps changing for `settleTimeoutMs`, or that settles empty, invalid or unreadable, is
   * refused through `onReject` and the policy in force stays. Renaming a finished file over the policy file is still
   * the safest way to replace it (readers never see part of it); with only renames, `settleMs: 0` reloads sooner.
   *
   * @example
   * ```ts
   * const source = PolicySource.fromFile('policy.yaml', {
   *   settleMs: 500, // the file is written by a tool that pauses up to ~300 ms between writes
   *   onReject: ({ issues }) => console.error('policy reload refused', issues),
   * });
   * ```
   */
  static fromFile(path: string, options: PolicyFileOptions = {}): PolicySource {
    const watching = options.watch !== false ? watchTimes(options) : undefined;
    const source = new PolicySource(AgentPolicy.fromYaml(path), { ...options, file: path });
    if (watching) source.watchFile(watching);
    return source;
  }

  /** The policy in force. */
  get current(): AgentPolicy {
    return this.policy;
  }

  /** The hash of the policy in force. */
  get hash(): string {
    return this.policy.hash;
  }

  /**
   * Opens a session that follows this source: its policy, its halts. Sessions with the same `budgetKey` (and no
   * store of their own) share one budget in this process, whatever policy version opened them. A session follows
   * `budget.max_spend` and `soft_limit` as they change, but keeps the `budget.period` it opened with (its spend and
   * open reservations live in that period's window); a changed period applies to sessions opened after the change.
   */
  session(options?: SessionOptions): PolicySession {
    if (options?.budgetKey !== undefined && (options.store === undefined || options.limitStore === undefined)) {
      this.keyed ??= { store: new InMemoryBudgetStore(), limitStore: new InMemoryRateLimitStore() };
      return new PolicySession(this.policy, { ...options, store: options.store ?? this.keyed.store, limitStore: options.limitStore ?? this.keyed.limitStore }, this);
    }
    return new PolicySession(this.policy, options, this);
  }

  /**
   * Replaces the policy with `next` (a policy, YAML text, or a plain object in the file format) if it validates.
   * Never throws for a bad policy: the result lists its issues and the policy in force stays.
   */
  update(next: AgentPolicy | string | Record<string, unknown>): PolicyUpdate {
    let policy: AgentPolicy;
    try {
      policy = next instanceof AgentPolicy ? next : typeof next === 'string' ? AgentPolicy.fromYamlString(next, this.file) : AgentPolicy.fromDict(next);
    } catch (error) {
      return this.reject(issuesOf(error));
    }
    const previousHash = this.policy.hash;
    if (policy.hash === previousHash) return { ok: true, changed: false, hash: previousHash, previousHash };
    this.policy = policy;
    this.options.onUpdate?.({ hash: policy.hash, previousHash });
    return { ok: true, changed: true, hash: policy.hash, previousHash };
  }

  /**
   * Reads the source's file again now, once, and applies it if it validates. The watcher does more before it applies a
   * change: it waits for the file to settle (see {@link PolicySource.fromFile}).
   */
  reload(): PolicyUpdate {
    if (this.file === undefined) throw new AgentPolicyError('INVALID_ARGUMENT', 'this policy source has no file to reload; use update()');
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      return this.reject([{ path: '', message: `cannot read ${this.file}: ${(error as Error).message}` }]);
    }
    return this.update(text);
  }

  /** Emergency stop of every session of this source (or of one budget key), until {@link resume}. */
  halt(reason: string, options?: HaltOptions): MaybePromise<void> {
    return this.halts.halt(haltState(reason, options));
  }

  /** Lifts the halt of everything (or of one budget key). Returns whether one was in force. */
  resume(options: { budgetKey?: string } = {}): MaybePromise<boolean> {
    return this.halts.resume(resumeKey(options));
  }

  /** The halts in force. */
  halted(): MaybePromise<readonly HaltState[]> {
    return this.halts.list();
  }

  /** Stops watching the file; a change still settling is dropped, and nothing is reloaded afterwards. */
  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.settling = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private reject(issues: readonly PolicyIssue[]): PolicyUpdate {
    this.options.onReject?.({ issues, hash: this.policy.hash });
    return { ok: false, issues, hash: this.policy.hash };
  }

  // Watches the directory (editors and deploys replace the file by renaming, which a watch on the file itself loses).
  // A change starts a settling: the file is read debounceMs after the last change event, then read again until two
  // reads settleMs apart find it the same; only then is it parsed and applied (or refused). All of it runs in timer
  // callbacks with synchronous reads, so close() can never fall between a read and the swap. A file that is a
  // symbolic link is looked at on every change in its directory: what it names can change through another entry (a
  // Kubernetes ConfigMap volume swaps a `..data` link). One settling starts with the watch, so a write that landed
  // between the first read and the start of the watch is not missed.
  private watchFile(times: WatchTimes): void {
    const file = resolve(this.file as string);
    const name = basename(file);
    const changed = (): void => {
      const now = performance.now();
      this.settling ??= { deadline: now + times.settleTimeoutMs, last: undefined };
      // Never later than the deadline: a file rewritten faster than debounceMs would otherwise never be looked at.
      this.schedule(() => this.settle(file, times), Math.min(times.debounceMs, Math.max(0, this.settling.deadline - now)));
    };
    this.watcher = watch(dirname(file), { persistent: false }, (_event, entry) => {
      if (this.closed || (entry !== null && entry !== name && !isLink(file))) return;
      changed();
    });
    this.watcher.on('error', (error) => this.reject([{ path: '', message: `watching ${file} failed: ${error.message}` }]));
    changed();
  }

  private schedule(step: () => void, delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      step();
    }, delayMs);
    this.timer.unref?.();
  }

  private settle(file: string, times: WatchTimes): void {
    const settling = this.settling;
    if (this.closed || settling === undefined) return;
    const now = performance.now();
    const snapshot = readSnapshot(file, now);
    const last = settling.last;
    if (last !== undefined && sameSnapshot(last, snapshot)) {
      const quiet = now - last.at;
      if (quiet < times.settleMs) {
        this.schedule(() => this.settle(file, times), times.settleMs - quiet);
        return;
      }
      this.settling = undefined;
      if (snapshot.error !== undefined) this.reject([{ path: '', message: snapshot.error }]);
      else this.update(snapshot.text);
      return;
    }
    if (last !== undefined && now >= settling.deadline) {
      // It changed again since the last read: the file is still being written. Refuse, keep the policy in force, and
      // treat what was just seen as the next change, so the file loads once it stops changing (one refusal per period).
      this.settling = { deadline: now + times.settleTimeoutMs, last: snapshot };
      this.reject([
        {
          path: '',
          message: `${file} kept changing for ${Math.round(times.settleTimeoutMs)} ms without staying unchanged for ${times.settleMs} ms; not loaded, the policy in force stays until the file settles`,
        },
      ]);
    } else {
      settling.last = snapshot;
    }
    this.schedule(() => this.settle(file, times), times.settleMs);
  }
}

interface WatchTimes {
  readonly debounceMs: number;
  readonly settleMs: number;
  readonly settleTimeoutMs: number;
}

function watchTimes(options: PolicyFileOptions): WatchTimes {
  const time = (name: 'debounceMs' | 'settleMs' | 'settleTimeoutMs', fallback: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
      throw new AgentPolicyError('INVALID_ARGUMENT', `${name} must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, got ${String(value)}`);
    }
    return value;
  };
  const debounceMs = time('debounceMs', 50);
  const settleMs = time('settleMs', 200);
  const settleTimeoutMs = time('settleTimeoutMs', Math.max(5_000, settleMs));
  if (settleTimeoutMs < settleMs) throw new AgentPolicyError('INVALID_ARGUMENT', `settleTimeoutMs (${settleTimeoutMs}) must be at least settleMs (${settleMs})`);
  return { debounceMs, settleMs, settleTimeoutMs };
}

// The longest delay setTimeout honours (a longer one fires at once).
const MAX_TIMER_MS = 2_147_483_647;

/** The policy file as read once: its bytes and what identifies that version of it, or why it could not be read. */
type FileSnapshot = { readonly at: number } & (
  | { readonly error: undefined; readonly text: string; readonly bytes: Buffer; readonly version: string }
  | { readonly error: string }
);

function readSnapshot(file: string, at: number): FileSnapshot {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const before = fstatSync(fd, { bigint: true });
    const bytes = readFileSync(fd);
    const after = fstatSync(fd, { bigint: true });
    // Written to while it was being read: a version no later read can match, so the wait starts over.
    const version = fileVersion(before) === fileVersion(after) && BigInt(bytes.length) === after.size ? fileVersion(after) : `torn ${at}`;
    return { at, error: undefined, text: bytes.toString('utf8'), bytes, version };
  } catch (error) {
    return { at, error: `cannot read ${file}: ${(error as Error).message}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function isLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

function fileVersion(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

function sameSnapshot(a: FileSnapshot, b: FileSnapshot): boolean {
  if (a.error !== undefined || b.error !== undefined) return a.error === b.error;
  return a.version === b.version && !a.version.startsWith('torn') && a.bytes.equals(b.bytes);
}

function issuesOf(error: unknown): readonly PolicyIssue[] {
  if (PolicyValidationError.isInstance(error)) return error.issues;
  return [{ path: '', message: errorMessage(error) }];
}
