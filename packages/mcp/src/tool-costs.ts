import { declaredCostIn, type CostTable, type DeclaredCost } from '@agentpolicy/core';

/**
 * Declared USD costs of an MCP server's tool calls: a map from the tool's name on the server to USD, or a function of
 * the call that returns USD (or `undefined` for no cost). A tool with no declared cost costs nothing. A function
 * that throws, or a value that is not a non-negative number, makes the call denied (fail closed).
 *
 * @example
 * ```ts
 * const costs: McpToolCosts = { web_search: 0.005 };
 * const byArgs: McpToolCosts = ({ tool, args }) => (tool === 'sms' ? 0.02 * (args as { to: string[] }).to.length : undefined);
 * ```
 */
export type McpToolCosts = CostTable<{ readonly tool: string; readonly args: unknown }>;

/** The declared cost of one call, read by core's one rule (`NaN` with the error when a cost function threw: denied). */
export function toolCost(costs: McpToolCosts | undefined, tool: string, args: unknown): DeclaredCost {
  return declaredCostIn(costs, tool, { tool, args });
}
