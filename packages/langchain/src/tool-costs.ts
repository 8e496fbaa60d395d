import { declaredCostIn, type CostTable, type DeclaredCost } from '@agentpolicy/core';

/**
 * Declared USD costs of tool calls: a map from exact tool name to USD, or a function of the call that returns USD
 * (or `undefined` for no cost). A tool with no declared cost costs nothing. The function's `args` are the input the
 * policy decides: in the middleware, the arguments as the tool's zod schema parses them (what the tool runs with); in
 * the callback handler, the arguments as LangChain hands them to `handleToolStart` (before the schema's parse).
 *
 * @example
 * ```ts
 * const toolCosts: ToolCosts = { web_search: 0.005, send_email: 0.01 };
 * const byArgs: ToolCosts = ({ name, args }) => (name === 'sms' ? 0.02 * recipients(args) : undefined);
 * ```
 */
export type ToolCosts = CostTable<{ readonly name: string; readonly args: unknown }>;

/**
 * The declared cost of one call, read by core's one rule: an invalid value is passed on for the check to deny, and a
 * cost function that throws gives NaN with its message (denied and recorded, never a crash of the run).
 */
export function toolCost(costs: ToolCosts | undefined, name: string, args: unknown): DeclaredCost {
  return declaredCostIn(costs, name, { name, args });
}

/** The idempotency key of a tool call, shared by the handler and the middleware so a call is decided once. */
export function toolCallKey(toolCallId: string | undefined): string | undefined {
  return typeof toolCallId === 'string' && toolCallId !== '' ? `langchain:tool:${toolCallId}` : undefined;
}
