import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { InMemoryBudgetStore, type MaybePromise } from './budget-store.js';
import { InMemoryRateLimitStore } from './rate-limit-store.js';
import { AgentPolicyError, PolicyValidationError, type PolicyIssue } from './errors.js';
import { haltState, InMemoryHaltStore, type HaltOptions, type HaltState, type HaltStore } from './halt.js';
import { AgentPolicy } from './policy.js';
import type { PolicyProvider } from './policy-evaluator.js';
import { PolicySession, type SessionOptions } from './session.js';

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
   * on) and, unless `watch: false`, reloads it whenever it changes. Replace the file by renaming a finished one over
   * it: a file written in place is read once its writes pause for `debounceMs`, and a half-written file that still
   * parses (a list cut after a whole item) would be taken as the new policy until the rest is written.
   */
  static fromFile(path: string, options: PolicyFileOptions = {}): PolicySource {
    const source = new PolicySource(AgentPolicy.fromYaml(path), { ...options, file: path });
    if (options.watch !== false) source.watchFile(options.debounceMs ?? 50);
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
   * store of their own) share one budget in this process, whatever policy version opened them.
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

  /** Reads the source's file again now (what the watcher does on a change). */
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
    return this.halts.resume(options.budgetKey);
  }

  /** The halts in force. */
  halted(): MaybePromise<readonly HaltState[]> {
    return this.halts.list();
  }

  /** Stops watching the file. */
  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private reject(issues: readonly PolicyIssue[]): PolicyUpdate {
    this.options.onReject?.({ issues, hash: this.policy.hash });
    return { ok: false, issues, hash: this.policy.hash };
  }

  // Watches the directory (editors and deploys replace the file by renaming, which a watch on the file itself loses).
  private watchFile(debounceMs: number): void {
    const file = resolve(this.file as string);
    const name = basename(file);
    this.watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.reload();
      }, debounceMs);
      this.timer.unref?.();
    });
    this.watcher.on('error', (error) => this.reject([{ path: '', message: `watching ${file} failed: ${error.message}` }]));
  }
}

function issuesOf(error: unknown): readonly PolicyIssue[] {
  if (PolicyValidationError.isInstance(error)) return error.issues;
  return [{ path: '', message: (error as Error)?.message ?? String(error) }];
}
