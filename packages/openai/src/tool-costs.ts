import { declaredCostIn, type CostTable, type DeclaredCost } from '@agentpolicy/core';

/**
 * Declared USD costs of the tool calls the model returns: a map from the tool's name to USD, or a function of the
 * call that returns USD (or `undefined` for no cost). A tool with no declared cost costs nothing. `args` is the input
 * the policy decides (the call's JSON arguments, or the parsed value where the tool's parse runs: see
 * `toolParsers`). A function that throws, or a value that is not a non-negative number, makes the call denied.
 *
 * @example
 * ```ts
 * const toolCosts: ToolCosts = { web_search: 0.005, send_email: 0.01 };
 * const byArgs: ToolCosts = ({ name, args }) => (name === 'sms' ? 0.02 * (args as { to: string[] }).to.length : undefined);
 * ```
 */
export type ToolCosts = CostTable<{ readonly name: string; readonly args: unknown }>;

/** The declared cost of one call, read by core's one rule (`NaN` with the error when a cost function threw: denied). */
export function toolCost(costs: ToolCosts | undefined, name: string, args: unknown): DeclaredCost {
  return declaredCostIn(costs, name, { name, args });
}

/**
 * Reads the `toolCosts` option: a function is kept as it is; a map is copied, each entry a number of USD. Anything
 * else is a TypeError naming the entry, so a cost is never silently read as none. A number core cannot charge (below
 * 0, not finite) is kept: the call is denied when it is checked, and that denial is recorded, as in every adapter.
 */
export function readToolCosts(costs: unknown): ToolCosts | undefined {
  if (costs === undefined || typeof costs === 'function') return costs as ToolCosts | undefined;
  if (typeof costs !== 'object' || costs === null || Array.isArray(costs)) {
    throw new TypeError('wrapOpenAI: toolCosts must be { [toolName]: usd } or a function ({ name, args }) => usd');
  }
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  for (const [name, usd] of Object.entries(costs)) {
    if (typeof usd !== 'number') throw new TypeError(`wrapOpenAI: toolCosts.${name} must be a number of USD (got ${typeof usd})`);
    out[name] = usd;
  }
  return Object.freeze(out);
}
