import type { Action, CostAction, HttpAction, Metadata, RuleRef, ToolAction } from './decision.js';
import { parseTarget } from './domain.js';
import { nanosToUsd, readCost } from './money.js';
import type { ApprovalAnswer } from './approvals.js';
import type { PolicyEvaluator, PreparedAction } from './policy-evaluator.js';

interface CommonCheckOptions {
  metadata?: Metadata;
  /** A human already approved this action: skips only the approval step. */
  approved?: boolean;
  /**
   * A human's answer obtained outside the session (a UI, a resumed graph): `true` / `{ approved: true, by, reason }`
   * approves like `approved: true` and is recorded with who and why; `false` / `{ approved: false, … }` or anything
   * else denies, recorded as a rejection. A blocked or over-budget action stays denied either way.
   */
  approval?: ApprovalAnswer;
  /**
   * Makes the check idempotent: a repeat of the same action (tool name, URL or cost source) with the same key
   * returns the first allow or deny without recording or charging again (a `require_approval` is decided again once
   * `approved` is true or a human's `approval` is given). Keys are kept for the last few thousand keyed checks.
   */
  idempotencyKey?: string;
}

export interface CheckToolOptions extends CommonCheckOptions {
  /** USD this call costs. */
  cost?: number;
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
  readonly action: Action;
  readonly prepared: PreparedAction | null;
  readonly invalid: { reason: string; rule: RuleRef } | null;
}

const ZERO_COST = Object.freeze({ ok: true as const, nanos: 0 });

/**
 * Copies a check method's options once (each property read once) into one object literal: no spread and no property
 * added afterwards on the hot path. Absent options stay `undefined`, which every reader treats as absent.
 */
export function withOptions(type: 'tool' | 'http', target: string | URL, options: CommonCheckOptions & { cost?: number; method?: string }): ActionInput {
  const { cost, metadata, approved, approval, idempotencyKey, method } = options;
  return (
    type === 'tool'
      ? { type, name: target, cost, metadata, approved, approval, idempotencyKey }
      : { type, url: target, cost, metadata, approved, approval, idempotencyKey, method }
  ) as ActionInput;
}

/** Reads an action once: the record the audit keeps, and the prepared form the policy evaluates (or why not). */
export function prepareAction(policy: PolicyEvaluator, action: ActionInput): Prepared {
  if (typeof action !== 'object' || action === null) {
    return { action: { type: 'cost', source: 'invalid', cost: 0 }, prepared: null, invalid: { reason: 'action must be an object', rule: { section: 'input', check: 'action' } } };
  }
  const metadata = action.metadata;
  const costInput = action.cost;
  const cost = costInput === undefined && action.type !== 'cost' ? ZERO_COST : readCost(costInput);
  const costUsd = cost.ok ? nanosToUsd(cost.nanos) : 0;
  switch (action.type) {
    case 'tool': {
      const name = action.name;
      const info = policy.toolInfo(name);
      const shown = typeof name === 'string' ? name : String(name);
      // One literal per shape (no property added afterwards): this runs on every check.
      const recorded: ToolAction = metadata === undefined ? { type: 'tool', name: shown, cost: costUsd } : { type: 'tool', name: shown, cost: costUsd, metadata };
      if (info.problem !== undefined) return { action: recorded, prepared: null, invalid: { reason: `${info.problem}; denied`, rule: { section: 'input', check: 'tool_name' } } };
      if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { action: recorded, prepared: { type: 'tool', name, folded: info.folded, costNanos: cost.nanos }, invalid: null };
    }
    case 'http': {
      const target = parseTarget(action.url);
      const recorded = { type: 'http', url: target.url, domain: target.ok ? target.host : '', cost: costUsd } as { -readonly [K in keyof HttpAction]: HttpAction[K] };
      if (typeof action.method === 'string') recorded.method = action.method.toUpperCase();
      if (metadata !== undefined) recorded.metadata = metadata;
      if (!target.ok) return { action: recorded, prepared: null, invalid: { reason: target.reason, rule: { section: 'input', check: 'url' } } };
      if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { action: recorded, prepared: { type: 'http', host: target.host, isIp: target.isIp, costNanos: cost.nanos }, invalid: null };
    }
    case 'cost': {
      const source = action.source;
      const recorded = { type: 'cost', source: typeof source === 'string' ? source : String(source), cost: costUsd } as { -readonly [K in keyof CostAction]: CostAction[K] };
      if (metadata !== undefined) recorded.metadata = metadata;
      if (typeof source !== 'string' || source === '') {
        return { action: recorded, prepared: null, invalid: { reason: 'cost source must be a non-empty string', rule: { section: 'input', check: 'action' } } };
      }
      if (!cost.ok) return { action: recorded, prepared: null, invalid: { reason: cost.reason, rule: { section: 'input', check: 'cost' } } };
      return { action: recorded, prepared: { type: 'cost', source, costNanos: cost.nanos }, invalid: null };
    }
    default: {
      const type = (action as { type?: unknown }).type;
      const recorded = { type: 'cost', source: `unknown action type ${String(type)}`, cost: 0 } as { -readonly [K in keyof CostAction]: CostAction[K] };
      if (metadata !== undefined) recorded.metadata = metadata;
      return {
        action: recorded,
        prepared: null,
        invalid: { reason: `unknown action type ${JSON.stringify(type) ?? String(type)}; expected tool, http or cost`, rule: { section: 'input', check: 'action' } },
      };
    }
  }
}
