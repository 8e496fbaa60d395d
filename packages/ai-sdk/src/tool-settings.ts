import { AgentPolicyError } from '@agentpolicy/core';

/**
 * A tool's declared cost in USD: a number, or a function of the tool's input. A function that throws, or returns
 * something that is not a non-negative number, makes the call denied (fail closed).
 */
export type ToolCost<INPUT = unknown> = number | ((input: INPUT) => number);

/** What to do when the policy denies a tool call. */
export type OnDeny = 'continue' | 'stop';

/** Checks an `onDeny` option; `continue` when absent. */
export function readOnDeny(value: unknown, where: string): OnDeny {
  if (value === undefined || value === 'continue') return 'continue';
  if (value === 'stop') return 'stop';
  throw new AgentPolicyError('INVALID_ARGUMENT', `${where}: onDeny must be 'continue' or 'stop', got ${JSON.stringify(value)}`);
}

/** What {@link wrapTools} remembers about a tool it wrapped, so that `policyToolApproval` decides the same way. */
export interface ToolSettings {
  /** The tool before wrapping. */
  readonly original: object;
  readonly cost: ToolCost<never> | undefined;
  /** The tool's own `needsApproval`, if it had one. */
  readonly needsApproval: unknown;
}

/** Wrapped tool → its settings. A WeakMap keeps the tool objects free of extra properties. */
export const toolSettings = new WeakMap<object, ToolSettings>();
