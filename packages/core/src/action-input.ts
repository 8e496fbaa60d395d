import { ActionIdentity, canonicalInput, InputShapeError } from './action-fingerprint.js';
import type { ApprovalAnswer, BoundApprovalAnswer } from './approvals.js';
import { boundMetadata, boundString, recordInput } from './bounded-record.js';
import type { Action, CostAction, HttpAction, Metadata, RuleRef, ToolAction } from './decision.js';
import { parseTarget } from './domain.js';
import { describe, nanosToUsd, readCost } from './money.js';
import { errorMessage } from './errors.js';
import type { PolicyEvaluator, PreparedAction, Verdict } from './policy-evaluator.js';

interface CommonCheckOptions {
  metadata?: Metadata;
  /**
   * The application's own override: it has approved this action itself, so the approval step is skipped (recorded
   * as `approval.via: 'caller'`). Nothing checks it against a request: pass it only for approvals your code has
   * established. A blocked or over-budget action stays denied.
   */
  approved?: boolean;
  /**
   * A human's answer. The bound form `{ requestId, approved?, by?, reason? }` names the approval request it answers
   * (`decision.approvalRequest.id`) and counts only while that request is for exactly this action (same
   * fingerprint), belongs to this session, is unexpired and unused: `approved: true` / `false` answers it (first
   * answer wins); without `approved` the answer already stored for the request (from any process) is used. An
   * approval authorises one execution. An answer that does not count leaves the action unapproved, and the decision
   * records why (`unusedAnswer`).
   *
   * The unbound form (`true`, `false`, `{ approved, by, reason }`) is the application's own override like
   * `approved: true`, recorded with who and why; `false` or anything else denies, recorded as a rejection.
   */
  approval?: ApprovalAnswer | BoundApprovalAnswer;
  /**
   * Makes the check idempotent for one execution: a repeat of the same action (same fingerprint: name, input,
   * cost) with the same key returns the first allow or deny without recording or charging again, until the allow is
   * used ({@link PolicySession.consume}); after that, or with another fingerprint, it is a new action, decided and
   * charged afresh. A `require_approval` is decided again once an answer is given. Keys are kept for the last few
   * thousand keyed checks.
   */
  idempotencyKey?: string;
}

export interface CheckToolOptions extends CommonCheckOptions {
  /** USD this call costs. */
  cost?: number;
  /**
   * The tool's arguments as the framework parsed them. Part of the action's fingerprint, so an approval or a key
   * for one input never covers another; recorded as a bounded copy.
   */
  input?: unknown;
}

export interface CheckHttpOptions extends CommonCheckOptions {
  cost?: number;
  method?: string;
}

export interface CheckCostOptions extends CommonCheckOptions {
  /** What is spending (e.g. `model:openai/gpt-4o`). */
  source: string;
}

/** An action to evaluate or enforce. */
export type ActionInput =
  | ({ type: 'tool'; name: string } & CheckToolOptions)
  | ({ type: 'http'; url: string | URL } & CheckHttpOptions)
  | ({ type: 'cost'; cost: number } & CheckCostOptions);

/** An action read once: what is recorded, what is evaluated, or why it cannot be. */
export interface Prepared {
  /** The hash of the policy that read the action (and decides it). */
  readonly policyHash: string;
  readonly action: Action;
  /** Its fingerprint and key, worked out when first asked for (see {@link ActionIdentity}). */
  readonly identity: ActionIdentity;
  readonly prepared: PreparedAction | null;
  readonly invalid: { reason: string; rule: RuleRef } | null;
  /**
   * On memoised prepared forms (no input, per policy): the verdict for the action while it costs nothing and needs
   * no approval, filled on first use. Shared by the forms derived from it (the same call with metadata).
   */
  readonly memo?: { free: Verdict | undefined };
}

const ZERO_COST = Object.freeze({ ok: true as const, nanos: 0 });

const MEMO_ENTRIES = 4096;
const MEMO_CHARS = 1 << 20;

/**
 * Values by a string (a tool name, a URL) and a cost in nanos, looked up without building a key string. Bounded in
 * entries and in characters; cleared when full.
 */
class CostMemo<V> {
  // Most actions cost nothing: those sit in one flat map; priced ones by key, then cost.
  private free = new Map<string, V>();
  private priced = new Map<string, Map<number, V>>();
  private count = 0;
  private chars = 0;

  get(key: string, costNanos: number): V | undefined {
    return costNanos === 0 ? this.free.get(key) : this.priced.get(key)?.get(costNanos);
  }

  set(key: string, costNanos: number, value: V): void {
    if (key.length > 2048) return;
    if (this.count >= MEMO_ENTRIES || this.chars + key.length > MEMO_CHARS) {
      this.free = new Map();
      this.priced = new Map();
      this.count = 0;
      this.chars = 0;
    }
    if (costNanos === 0) this.free.set(key, value);
    else {
      let byCost = this.priced.get(key);
      if (byCost === undefined) {
        byCost = new Map();
        this.priced.set(key, byCost);
      }
      byCost.set(costNanos, value);
    }
    this.chars += key.length;
    this.count++;
  }
}

// The prepared forms of actions without input or metadata: the same tool or host is checked again and again, and
// its record, fingerprint and prepared form are the same every time (the record is frozen, so sharing it is safe).
// Per policy for tools (the prepared form holds the policy's folding of the name), held weakly; by method ('' when
// none is given) for requests.
const toolMemos = new WeakMap<PolicyEvaluator, CostMemo<Prepared>>();
const httpMemos = new WeakMap<PolicyEvaluator, Map<string, CostMemo<Prepared>>>();


/**
 * Copies a check method's options once (each property read once) into one object literal: no spread and no property
 * added afterwards on the hot path. Absent options stay `undefined`, which every reader treats as absent. Options that
 * are not an object, or whose reading throws (a getter, a proxy), give an action that is read as a denial saying so.
 */
export function withOptions(type: 'tool' | 'http', target: string | URL, options: CheckToolOptions | CheckHttpOptions): ActionInput;
export function withOptions(type: 'cost', target: number, options: CheckCostOptions): ActionInput;
export function withOptions(type: 'tool' | 'http' | 'cost', target: string | URL | number, options: CheckToolOptions | CheckHttpOptions | CheckCostOptions): ActionInput {
  if (typeof options !== 'object' || options === null) return unreadableOptions(type, target, `options must be an object, got ${describe(options)}`);
  try {
    const { cost, metadata, approved, approval, idempotencyKey, method, input, source } = options as CheckToolOptions & CheckHttpOptions & Partial<CheckCostOptions>;
    if (type === 'tool') return { type, name: target, cost, metadata, approved, approval, idempotencyKey, input } as ActionInput;
    if (type === 'http') return { type, url: target, cost, metadata, approved, approval, idempotencyKey, method } as ActionInput;
    return { type, cost: target, source, metadata, approved, approval, idempotencyKey } as ActionInput;
  } catch (error) {
    return unreadableOptions(type, target, `options cannot be read (${errorMessage(error)})`);
  }
}

// The action of a check whose options could not be read: only readAction knows this type (a symbol no input can name).
const UNREADABLE_OPTIONS = Symbol('unreadable options');
interface UnreadableOptions {
  readonly type: typeof UNREADABLE_OPTIONS;
  readonly checked: 'tool' | 'http' | 'cost';
  readonly target: unknown;
  readonly reason: string;
}

function unreadableOptions(checked: 'tool' | 'http' | 'cost', target: unknown, reason: string): ActionInput {
  const action: UnreadableOptions = { type: UNREADABLE_OPTIONS, checked, target, reason: boundString(reason) };
  return action as unknown as ActionInput;
}

/** The action of a check whose action object could not be read (a getter or proxy threw): read as a denial. */
export function unreadableAction(error: unknown): ActionInput {
  return unreadableOptions('cost', undefined, `the action cannot be read (${errorMessage(error)})`);
}

// The denial recorded for options that could not be read: the tool, request or cost it was for, at no cost.
function readUnreadable(policy: PolicyEvaluator, action: UnreadableOptions, metadata: Metadata | undefined): Prepared {
  const target = action.target;
  const shown = boundString(typeof target === 'string' ? target : target instanceof URL ? safeHref(target) : describe(target));
  const invalid = { reason: `${action.reason}; denied`, rule: { section: 'input', check: 'action' } as const };
  if (action.checked === 'tool') {
    const recorded: ToolAction = Object.freeze(metadata === undefined ? { type: 'tool', name: shown, cost: 0 } : { type: 'tool', name: shown, cost: 0, metadata });
    return { policyHash: policy.hash, action: recorded, identity: ActionIdentity.tool(shown, -1, '!options'), prepared: null, invalid };
  }
  if (action.checked === 'http') {
    const recorded: HttpAction = Object.freeze(metadata === undefined ? { type: 'http', url: shown, domain: '', cost: 0 } : { type: 'http', url: shown, domain: '', cost: 0, metadata });
    return { policyHash: policy.hash, action: recorded, identity: ActionIdentity.http(shown, '', -1), prepared: null, invalid };
  }
  const recorded: CostAction = Object.freeze(metadata === undefined ? { type: 'cost', source: 'invalid', cost: 0 } : { type: 'cost', source: 'invalid', cost: 0, metadata });
  return { policyHash: policy.hash, action: recorded, identity: ActionIdentity.cost('invalid', -1), prepared: null, invalid };
}

function safeHref(url: URL): string {
  try {
    return url.href;
  } catch {
    return 'an unreadable URL';
  }
}

/**
 * Reads an action once: the record the audit keeps (frozen; strings and values bounded), its fingerprint, and the
 * prepared form the policy evaluates (or why it cannot be).
 */
export function prepareAction(policy: PolicyEvaluator, action: ActionInput): Prepared {
  if (typeof action !== 'object' || action === null) {
    const recorded: Action = Object.freeze({ type: 'cost', source: 'invalid', cost: 0 });
    return { policyHash: policy.hash, action: recorded, identity: ActionIdentity.cost('invalid', 0), prepared: null, invalid: { reason: 'action must be an object', rule: { section: 'input', check: 'action' } } };
  }
  const metadataInput = action.metadata;
  const costInput = action.cost;
  const cost = costInput === undefined && action.type !== 'cost' ? ZERO_COST : readCost(costInput);
  if (cost.ok) {
    if (action.type === 'tool' && action.input === undefined && typeof action.name === 'string') {
      let memo = toolMemos.get(policy);
      if (memo === undefined) {
        memo = new CostMemo<Prepared>();
        toolMemos.set(policy, memo);
      }
      let prepared = memo.get(action.name, cost.nanos);
      if (prepared === undefined) {
        prepared = prepareUncached(policy, action, cost, undefined, { free: undefined });
        memo.set(action.name, cost.nanos, prepared);
      } else settleRepeated(prepared);
      if (metadataInput === undefined) return prepared;
      // The same call with metadata: only the record differs (the fingerprint never covers metadata).
      const base = prepared.action as ToolAction;
      const recorded: ToolAction = Object.freeze({ type: 'tool', name: base.name, cost: base.cost, metadata: boundMetadata(metadataInput) });
      return { policyHash: policy.hash, action: recorded, identity: prepared.identity, prepared: prepared.prepared, invalid: prepared.invalid, memo: prepared.memo as { free: Verdict | undefined } };
    }
    if (metadataInput === undefined && action.type === 'http' && typeof action.url === 'string' && (action.method === undefined || typeof action.method === 'string')) {
      const method = action.method ?? '';
      let byMethod = httpMemos.get(policy);
      if (byMethod === undefined) {
        byMethod = new Map();
        httpMemos.set(policy, byMethod);
      }
      let memo = byMethod.get(method);
      if (memo === undefined && byMethod.size < 16 && method.length <= 16) {
        memo = new CostMemo<Prepared>();
        byMethod.set(method, memo);
      }
      let prepared = memo?.get(action.url, cost.nanos);
      if (prepared === undefined) {
        prepared = prepareUncached(policy, action, cost, undefined, { free: undefined });
        memo?.set(action.url, cost.nanos, prepared);
      } else settleRepeated(prepared);
      return prepared;
    }
  }
  return prepareUncached(policy, action, cost, metadataInput === undefined ? undefined : boundMetadata(metadataInput));
}

// A memoised action checked again: its fingerprint is worked out once now, so every later decision of it carries the
// fingerprint as a plain value (a first check, or a one-off, leaves it to be worked out if asked).
function settleRepeated(prepared: Prepared): void {
  if (!prepared.identity.hashed) void prepared.identity.fingerprint;
}

function prepareUncached(policy: PolicyEvaluator, action: ActionInput, cost: ReturnType<typeof readCost>, metadata: Metadata | undefined, memo?: { free: Verdict | undefined }): Prepared {
  const prepared = readAction(policy, action, cost, metadata);
  // An address's verdict is not kept with it: it can change while the policy stands (see isOwnAddress).
  if (memo === undefined || (prepared.prepared?.type === 'http' && prepared.prepared.isIp)) return prepared;
  return { policyHash: prepared.policyHash, action: prepared.action, identity: prepared.identity, prepared: prepared.prepared, invalid: prepared.invalid, memo };
}

function readAction(policy: PolicyEvaluator, action: ActionInput, cost: ReturnType<typeof readCost>, metadata: Metadata | undefined): Prepared {
  const costUsd = cost.ok ? nanosToUsd(cost.nanos) : 0;
  const costNanos = cost.ok ? cost.nanos : -1;
  switch (action.type) {
    case 'tool': {
      const name = action.name;
      const info = policy.toolInfo(name);
      const shown = boundString(typeof name === 'string' ? name : String(name));
      const fingerprintName = info.problem === undefined ? info.folded : shown;
      const inputValue = action.input;
      let identity: ActionIdentity;
      let recorded: ToolAction;
      let evaluated = inputValue;
      let inputProblem: string | undefined;
      // One literal per shape (no property added afterwards): this runs on every check.
      if (inputValue === undefined) {
        identity = ActionIdentity.tool(fingerprintName, costNanos, undefined);
        recorded = Object.freeze(metadata === undefined ? { type: 'tool', name: shown, cost: costUsd } : { type: 'tool', name: shown, cost: costUsd, metadata });
      } else {
        // The input is read once, into its frozen record. When that copy is exact (the usual small JSON input) it
        // stands in for the input from here on: the policy reads it and the fingerprint is written from it when
        // asked, so what is decided, recorded and fingerprinted is one snapshot that nothing can change afterwards.
        const read = recordInput(inputValue);
        if (read.exact) {
          evaluated = read.copy;
          identity = ActionIdentity.toolSnapshot(fingerprintName, costNanos, read.copy);
        } else {
          // Cut, or not plain data: the fingerprint covers the input whole, so its text is written now.
          let inputText: string;
          try {
            inputText = canonicalInput(inputValue);
          } catch (error) {
            if (!(error instanceof InputShapeError)) throw error;
            inputProblem = `tool input cannot be read: ${error.message}; denied`;
            inputText = `!${error.message}`;
          }
          identity = ActionIdentity.tool(fingerprintName, costNanos, inputText);
        }
        recorded = Object.freeze(metadata === undefined ? { type: 'tool', name: shown, cost: costUsd, input: read.copy } : { type: 'tool', name: shown, cost: costUsd, input: read.copy, metadata });
      }
      if (info.problem !== undefined) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: `${info.problem}; denied`, rule: { section: 'input', check: 'tool_name' } } };
      if (inputProblem !== undefined) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: inputProblem, rule: { section: 'input', check: 'input' } } };
      if (!cost.ok) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { policyHash: policy.hash, action: recorded, identity, prepared: { type: 'tool', name, folded: info.folded, costNanos: cost.nanos, input: evaluated }, invalid: null };
    }
    case 'http': {
      const target = parseTarget(action.url);
      const method = typeof action.method === 'string' ? boundString(action.method.toUpperCase()) : undefined;
      const url = boundString(target.url);
      const identity = ActionIdentity.http(target.url, method ?? '', costNanos);
      const recorded = { type: 'http', url, domain: target.ok ? boundString(target.host) : '', cost: costUsd } as { -readonly [K in keyof HttpAction]: HttpAction[K] };
      if (method !== undefined) recorded.method = method;
      if (metadata !== undefined) recorded.metadata = metadata;
      Object.freeze(recorded);
      if (!target.ok) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: boundString(target.reason), rule: { section: 'input', check: 'url' } } };
      if (!cost.ok) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { policyHash: policy.hash, action: recorded, identity, prepared: { type: 'http', host: target.host, isIp: target.isIp, costNanos: cost.nanos, method, path: target.path }, invalid: null };
    }
    case 'cost': {
      const source = action.source;
      const sourceText = typeof source === 'string' ? source : String(source);
      const identity = ActionIdentity.cost(sourceText, costNanos);
      const recorded = { type: 'cost', source: boundString(sourceText), cost: costUsd } as { -readonly [K in keyof CostAction]: CostAction[K] };
      if (metadata !== undefined) recorded.metadata = metadata;
      Object.freeze(recorded);
      if (typeof source !== 'string' || source === '') {
        return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: 'cost source must be a non-empty string', rule: { section: 'input', check: 'action' } } };
      }
      if (!cost.ok) return { policyHash: policy.hash, action: recorded, identity, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { policyHash: policy.hash, action: recorded, identity, prepared: { type: 'cost', source, costNanos: cost.nanos }, invalid: null };
    }
    default: {
      const type = (action as { type?: unknown }).type;
      if (type === UNREADABLE_OPTIONS) return readUnreadable(policy, action as unknown as UnreadableOptions, metadata);
      const source = boundString(`unknown action type ${String(type)}`);
      const recorded = { type: 'cost', source, cost: 0 } as { -readonly [K in keyof CostAction]: CostAction[K] };
      if (metadata !== undefined) recorded.metadata = metadata;
      Object.freeze(recorded);
      return {
        policyHash: policy.hash,
        action: recorded,
        identity: ActionIdentity.cost(source, 0),
        prepared: null,
        invalid: { reason: boundString(`unknown action type ${JSON.stringify(type) ?? String(type)}; expected tool, http or cost`), rule: { section: 'input', check: 'action' } },
      };
    }
  }
}
