import type { DecisionValue, RuleRef, ShadowOutcome } from './decision.js';
import type { CompiledLimit } from './limits.js';
import type { HaltStore } from './halt.js';
import type { NormalizedPolicy, PolicyDocument } from './policy-document.js';

/** A prepared action: inputs already read and checked once. */
export type PreparedAction =
  | { type: 'tool'; name: string; folded: string; costNanos: number; input: unknown }
  | { type: 'http'; host: string; isIp: boolean; costNanos: number; method: string | undefined; path: string }
  | { type: 'cost'; source: string; costNanos: number };

/** The outcome of evaluating a prepared action against the policy and a view of the budget. */
export interface Verdict {
  decision: DecisionValue;
  reason: string;
  rule: RuleRef;
  approvedRule: boolean;
  /** The enforced outcome comes after the limits step (budget, approval or allow), so a full limit still denies. */
  afterLimits?: boolean;
  /** What the shadowed parts of the policy would have decided, when that differs from the enforced outcome. */
  shadow?: ShadowOutcome;
  /** The shadow outcome comes after the limits step, so a shadowed full limit would have come first. */
  shadowAfterLimits?: boolean;
}

/**
 * What a session asks of its policy. {@link AgentPolicy} implements it; the session depends on this interface only,
 * so the policy module can open sessions without the two importing each other.
 */
export interface PolicyEvaluator {
  /** The validated policy in its normalised form. */
  readonly normalized: NormalizedPolicy;
  /** SHA-256 of the normalised policy, recorded in every report. */
  readonly hash: string;
  /** Where this policy's halts are kept; sessions consult it on every check. */
  readonly halts: HaltStore;
  /** Costs up to this many nanos can match no `cost_gt` rule, so they decide like a free action (budget aside). */
  readonly costRuleFloor: number;
  /** Name checks and the folded form of a tool name. */
  toolInfo(name: unknown): { problem: string | undefined; folded: string };
  /** Why every call of a tool is denied whatever its input, cost or approval, or undefined when one could be allowed. */
  neverAllowsTool(name: unknown): string | undefined;
  /** The verdict for an action that costs nothing and carries no approval. */
  decideFree(action: PreparedAction): Verdict;
  /** The verdict for connecting to an address a name resolved to, or undefined when the policy does not block it. */
  decideAddress(hostname: string, address: string): Verdict | undefined;
  /** Whether `network.block` covers any address (an IP address or range, or an entry naming this machine). */
  readonly blocksAddresses: boolean;
  /** The limits whose selector matches the action, in policy order. */
  limitsFor(action: PreparedAction): readonly CompiledLimit[];
  /** Evaluates a prepared action. Pure: reads the budget view it is given and changes nothing. */
  decide(action: PreparedAction, spentNanos: number, reservedNanos: number, approved: boolean): Verdict;
  /** The policy in the file format, amounts in USD. */
  toDocument(): PolicyDocument;
  /** A machine-readable summary of what this policy enforces. */
  explain(): Record<string, unknown>;
}

/**
 * Where a session finds its policy at each check: a live source swaps the policy (the session switches at its next
 * check) and holds the halts of every session it opened.
 */
export interface PolicyProvider {
  readonly current: PolicyEvaluator;
  readonly halts: HaltStore;
}
