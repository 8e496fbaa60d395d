/** The three outcomes of a check, as the seed spells them. */
export type DecisionValue = 'allow' | 'deny' | 'require_approval';

/** The kinds of action a session decides. Model calls are `cost` actions whose `source` names the model. */
export type ActionType = 'tool' | 'http' | 'cost';

export type Metadata = Readonly<Record<string, unknown>>;

/** A tool call. */
export interface ToolAction {
  readonly type: 'tool';
  readonly name: string;
  /** The tool's arguments as recorded: a frozen copy, strings and size bounded (the fingerprint covers them whole). */
  readonly input?: unknown;
  /** USD, exact to the nano-dollar. */
  readonly cost: number;
  readonly metadata?: Metadata;
}

/** An outbound HTTP request. `domain` is the normalised host that was matched. */
export interface HttpAction {
  readonly type: 'http';
  readonly url: string;
  readonly domain: string;
  readonly method?: string;
  readonly cost: number;
  readonly metadata?: Metadata;
}

/** Spending that is neither a tool nor a request, e.g. a model call (`source: 'model:openai/gpt-4o'`). */
export interface CostAction {
  readonly type: 'cost';
  readonly source: string;
  readonly cost: number;
  readonly metadata?: Metadata;
}

export type Action = ToolAction | HttpAction | CostAction;

/** Which part of the policy decided, as data. */
export type RuleRef =
  | { readonly section: 'tools'; readonly list: 'allow' | 'block'; readonly entry: string | null }
  | {
      readonly section: 'network';
      readonly list: 'allow' | 'block';
      readonly entry: string | null;
      /** For a connection refused by its resolved address ({@link PolicySession.lookup}): that address. */
      readonly address?: string;
    }
  | {
      readonly section: 'budget';
      readonly maxSpend: number;
      readonly spent: number;
      readonly reserved: number;
      readonly requested: number;
    }
  | { readonly section: 'approval'; readonly index: number; readonly rule: ApprovalRuleSpec }
  | { readonly section: 'pricing'; readonly model: string }
  | { readonly section: 'input'; readonly check: 'tool_name' | 'url' | 'cost' | 'action' | 'usage' | 'input' }
  | {
      readonly section: 'approver';
      /**
       * `rejected`: a human said no; `expired`: the approval request expired unanswered (never a rejection);
       * `timeout`: the session's approver did not answer in time; `error` / `invalid`: it failed or answered nonsense.
       */
      readonly outcome: 'rejected' | 'expired' | 'error' | 'timeout' | 'invalid';
      /** The approval request the answer belonged to. */
      readonly requestId?: string;
      /** The approval rule that asked for the approval (absent when none did and a human still said no). */
      readonly index?: number;
      readonly rule?: ApprovalRuleSpec;
    }
  | { readonly section: 'session'; readonly check: 'ended' | 'limit' }
  /** A `rules:` entry: its index and the reason written in the policy. */
  | { readonly section: 'rules'; readonly index: number; readonly reason: string }
  /** A `limits:` entry that was full; `resetAt` is when a slot frees (ISO 8601), null for a per-session limit. */
  | {
      readonly section: 'limits';
      readonly index: number;
      readonly maxCalls: number;
      readonly per: string;
      readonly scope: 'session' | 'budget';
      readonly resetAt: string | null;
    }
  /** An emergency stop (`halt`) was in force: its reason, when and by whom it was set, the budget key it covers. */
  | { readonly section: 'halt'; readonly reason: string; readonly at: string; readonly by?: string; readonly budgetKey?: string }
  /** The check itself failed (e.g. the budget store threw): denied, with the error's message. */
  | { readonly section: 'error'; readonly message: string }
  | { readonly section: 'default' };

/** An approval rule as written in the policy (snake_case, as in YAML). Every key present must match. */
export interface ApprovalRuleSpec {
  readonly tool?: string;
  readonly domain?: string;
  readonly action?: ActionType;
  readonly cost_gt?: number;
}

/** What the shadowed parts of the policy would have decided (see `mode: shadow`). */
export interface ShadowOutcome {
  readonly decision: DecisionValue;
  readonly reason: string;
  readonly rule: RuleRef;
}

/** Who approved an action and how. */
export interface ApprovalRecord {
  /**
   * `caller`: the application's own override (`approved: true`, or an answer that names no request);
   * `approver`: the session's approver said yes; `request`: a stored approval request for exactly this action was
   * approved (from any process) and is now used.
   */
  readonly via: 'caller' | 'approver' | 'request';
  readonly by?: string;
  readonly reason?: string;
  /** The approval request that was answered (`approver` and `request`). */
  readonly requestId?: string;
}

/** The approval request a `require_approval` decision raised (or is still waiting on). */
export interface ApprovalRequestRef {
  /** Unguessable id: answers name it. */
  readonly id: string;
  /** The fingerprint of the action it asks about; an answer counts only for an action with this fingerprint. */
  readonly fingerprint: string;
  /** ISO 8601; unanswered after this, the request is expired. */
  readonly expiresAt: string;
}

/** An answer that was given with a check but did not count, and why. */
export interface UnusedAnswer {
  readonly requestId: string;
  readonly problem: 'unknown_request' | 'other_action' | 'other_session' | 'already_used' | 'expired' | 'pending';
  readonly detail: string;
}

/** What happened to a reserved amount after the decision. */
export interface Settlement {
  readonly status: 'pending' | 'committed' | 'released';
  /** USD reserved at decision time. */
  readonly estimated: number;
  /** USD finally charged (0 when released; the estimate while pending). */
  readonly actual: number;
  /** USD charged beyond the estimate, when the real cost exceeded it (the estimate was not an upper bound). */
  readonly overrun?: number;
}

interface DecisionBase {
  readonly id: string;
  readonly sessionId: string;
  /** The action's fingerprint (see {@link actionFingerprint}): what keys, approvals and tokens bind to. */
  readonly fingerprint: string;
  /** SHA-256 of the policy that made this decision (a reloaded policy has another). */
  readonly policyHash: string;
  readonly reason: string;
  readonly rule: RuleRef;
  readonly action: Action;
  /** True when the action went ahead on a human's (or the caller's) approval. */
  readonly approved: boolean;
  readonly approval?: ApprovalRecord;
  /** On `require_approval`: the request an answer must name. */
  readonly approvalRequest?: ApprovalRequestRef;
  /** An answer given with the check that did not count (another action's request, a used or expired one…). */
  readonly unusedAnswer?: UnusedAnswer;
  /** Present on decisions that reserved money to settle later (model calls, guarded tools). */
  readonly settlement?: Settlement;
  /** Present when shadowed rules, limits or a policy in `mode: shadow` would have decided otherwise. */
  readonly shadow?: ShadowOutcome;
  /** ISO 8601. */
  readonly timestamp: string;
}

export interface AllowDecision extends DecisionBase {
  readonly decision: 'allow';
}
export interface DenyDecision extends DecisionBase {
  readonly decision: 'deny';
}
export interface RequireApprovalDecision extends DecisionBase {
  readonly decision: 'require_approval';
}

/** One decision of the audit trail, discriminated by `decision`. */
export type Decision = AllowDecision | DenyDecision | RequireApprovalDecision;
