/**
 * A session's options: what {@link AgentPolicy.session} takes, and how they are read and checked when it opens.
 */
import type { ApprovalStore } from './approval-store.js';
import type { Approver } from './approvals.js';
import type { SoftLimitEvent } from './budget-ledger.js';
import type { BudgetStore } from './budget-store.js';
import type { CallKeyStore } from './call-key-store.js';
import type { Decision } from './decision.js';
import type { DecisionSink } from './decision-sink.js';
import { AgentPolicyError, errorMessage } from './errors.js';
import type { HaltStore } from './halt.js';
import { describe } from './money.js';
import type { RateLimitStore } from './rate-limit-store.js';

/** Options of {@link AgentPolicy.session}. */
export interface SessionOptions {
  /** Session id (a random UUID by default): the audit identity, and the budget key unless `budgetKey` is given. */
  id?: string;
  /**
   * The budget this session spends from, shared by every session given the same key and store (a tenant, a user,
   * an agent). The session id stays the identity in the audit trail. Default: the session id (a budget of its own).
   */
  budgetKey?: string;
  /**
   * Where spend is kept. Default: in memory, one budget per session, or, with a `budgetKey`, one store shared by
   * every session of this policy in this process. Pass a shared store (e.g. `@agentpolicy/redis`) to share a
   * budget across processes.
   */
  store?: BudgetStore;
  /** Where `limits:` count allowed calls; an in-memory store by default (per process). */
  limitStore?: RateLimitStore;
  /**
   * Where keyed calls (`idempotencyKey`) keep their decisions. Default: this session's own memory. Pass a shared
   * store (e.g. `@agentpolicy/redis`) when the same session id runs in several processes: a call retried in another
   * process gets its first decision back (and is not charged again) while that allow is unused, and an allow runs at
   * most once across all of them. Then run allowed calls through {@link PolicySession.claim} (or `runTool`), not
   * `consume`. Decision ids then carry a tag of this session object (`<session id>:<tag>.<n>`), so the processes of
   * one session never record two decisions under one id.
   */
  callKeys?: CallKeyStore;
  /**
   * How long a reservation may stay open before the store charges it at its estimate (its process died, say).
   * Default 900,000 ms (15 minutes). A reservation held while an approver decides lives this long after the
   * approval timeout.
   */
  leaseTtlMs?: number;
  /**
   * Answers `require_approval` in place: it is given the stored approval request (with the decision and a timeout
   * signal), and its answer resolves that request only.
   */
  approver?: Approver;
  /** How long the approver may take before its silence counts as a denial (outcome `timeout`). Default 300,000 ms. */
  approvalTimeoutMs?: number;
  /**
   * Called for every recorded decision, as it happens (the audit sink: a file, OpenTelemetry…). If it throws, the
   * action was not audited, so by default it does not go ahead: an allow (or a `require_approval`) becomes a deny
   * under the rule section `error`, any money it held is released, and that deny is passed to the sink in turn. Spend
   * that already happened (`recordUsage`) and denials stay as they are; the failure is reported as a warning.
   */
  onDecision?: (decision: Decision) => void;
  /** What a throwing `onDecision` means: `deny` (default, see `onDecision`) or `warn` (report it and go ahead). */
  onDecisionError?: 'deny' | 'warn';
  /**
   * Where the record also goes, as it is written (an audit log, say): each sink is given every decision and every
   * settlement. A sink that throws counts as a throwing `onDecision` (see `onDecisionError`).
   */
  sinks?: readonly DecisionSink[];
  /**
   * Record decisions with OpenTelemetry (spans, span events and metrics) when `@opentelemetry/api` is installed and
   * a provider is registered. Default true; without a provider it costs nothing measurable.
   */
  telemetry?: boolean;
  /**
   * Where approval requests live (an in-memory store by default). Pass a shared store so a request raised here can
   * be answered from another process and the agent can resume after a restart.
   */
  approvals?: ApprovalStore;
  /** How long an approval request raised without an approver stays answerable. Default 86,400,000 ms (a day). */
  approvalTtlMs?: number;
  /**
   * The application's secret (≥ 32 bytes) for signed approval tokens ({@link PolicySession.approvalToken}). Every
   * process that redeems tokens needs the same secret.
   */
  approvalSecret?: string | Uint8Array;
  /**
   * Whether an approval given with a check (`approval: { requestId, approved: true }`: what the AI SDK and LangChain
   * adapters pass from a `tool-approval-response` in the chat history or a resume value) may answer the pending
   * request it names. Default true: whoever sends those messages is an approver. Set false when only the people your
   * approvals handler (or `approver`) admits may approve: such an approval is then not used, the request stays
   * pending (recorded as `unusedAnswer.problem: 'pending'`), and the check counts only an approval stored through
   * the approval store (the approvals handler, a token link, {@link PolicySession.resolveApproval}). A rejection
   * given with a check still denies.
   */
  inlineApprovals?: boolean;
  /**
   * Where halts are kept (see {@link AgentPolicy.halt}): the policy's (or its live source's) in-memory halts by
   * default. Pass a shared store ({@link FileHaltStore}, or one backed by Redis) so a halt set in any process stops
   * this session at its next check.
   */
  halts?: HaltStore;
  /** Called once, when spend first reaches the policy's `budget.soft_limit`. */
  onSoftLimit?: (event: SoftLimitEvent) => void;
  /** How many decisions the report keeps (the oldest are dropped first; summaries stay exact). Default 10,000. */
  maxDecisions?: number;
  /**
   * Output tokens assumed for a model call that sets no maximum, used only when neither the policy
   * (`max_output_tokens`) nor the model limits catalog nor the price catalog's context window bounds it. No default:
   * such a call is refused under a budget.
   */
  defaultMaxOutputTokens?: number;
}

// The methods a session calls on each store option on its everyday paths, and the callbacks that must be functions:
// an object without them is refused when the session is opened, rather than failing every check (or the report)
// later. (A halt store's halt/resume/list are the policy's to call; a budget store's refund and reconcile are called
// on rarer paths and fail closed there.)
const STORE_METHODS: readonly (readonly [keyof SessionOptions, string, readonly string[]])[] = [
  ['store', 'BudgetStore', ['reserve', 'commit', 'release', 'charge', 'snapshot']],
  ['limitStore', 'RateLimitStore', ['take', 'giveBack']],
  ['approvals', 'ApprovalStore', ['create', 'get', 'listPending', 'resolve', 'consume']],
  ['halts', 'HaltStore', ['halted']],
  ['callKeys', 'CallKeyStore', ['begin', 'remember', 'abandon', 'claim']],
];
const CALLBACKS: readonly (keyof SessionOptions)[] = ['approver', 'onDecision', 'onSoftLimit'];

/**
 * Reads a session's options once, into a copy the session keeps (a getter is read once; the caller changing its
 * object afterwards changes nothing), and refuses what the session could not work with, each with an
 * `INVALID_ARGUMENT` error that names the option: a store without the methods its kind needs, a callback that is
 * not a function, an empty id or budget key, a lease TTL or decision count that is not a number it can use.
 */
export function readSessionOptions(given: SessionOptions): SessionOptions {
  if (typeof given !== 'object' || given === null) throw new AgentPolicyError('INVALID_ARGUMENT', `session options must be an object, got ${describe(given)}`);
  let options: SessionOptions;
  try {
    options = { ...given };
    for (const [option, kind, methods] of STORE_METHODS) {
      const value = options[option] as Record<string, unknown> | undefined;
      if (value === undefined) continue;
      const missing = typeof value === 'object' && value !== null ? methods.filter((method) => typeof value[method] !== 'function') : methods;
      if (missing.length > 0) throw new AgentPolicyError('INVALID_ARGUMENT', `${option} must be a ${kind} (it has no ${missing.join(', ')})`);
    }
    for (const option of CALLBACKS) {
      const value = options[option];
      if (value !== undefined && typeof value !== 'function') throw new AgentPolicyError('INVALID_ARGUMENT', `${option} must be a function, got ${describe(value)}`);
    }
    const sinks = options.sinks;
    if (sinks !== undefined && (!Array.isArray(sinks) || sinks.some((sink) => typeof (sink as DecisionSink | null)?.decision !== 'function'))) {
      throw new AgentPolicyError('INVALID_ARGUMENT', 'sinks must be a list of decision sinks (objects with a decision method)');
    }
  } catch (error) {
    if (AgentPolicyError.isInstance(error)) throw error;
    throw new AgentPolicyError('INVALID_ARGUMENT', `session options cannot be read: ${errorMessage(error)}`, { cause: error });
  }
  if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'session id must be a non-empty string');
  }
  if (options.budgetKey !== undefined && (typeof options.budgetKey !== 'string' || options.budgetKey === '')) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'budgetKey must be a non-empty string');
  }
  if (options.leaseTtlMs !== undefined && !(Number.isSafeInteger(options.leaseTtlMs) && options.leaseTtlMs > 0)) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'leaseTtlMs must be a whole number of milliseconds > 0');
  }
  if (options.maxDecisions !== undefined && !(options.maxDecisions >= 0)) {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'maxDecisions must be a number ≥ 0 (Infinity keeps every decision)');
  }
  if (options.inlineApprovals !== undefined && typeof options.inlineApprovals !== 'boolean') {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'inlineApprovals must be true or false');
  }
  return options;
}
