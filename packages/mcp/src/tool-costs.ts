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
export type McpToolCosts =
  | Readonly<Record<string, number>>
  | ((call: { readonly tool: string; readonly args: unknown }) => number | undefined);

/** The declared cost of one call (`NaN` with the error when a cost function threw, which core denies). */
export function toolCost(costs: McpToolCosts | undefined, tool: string, args: unknown): { cost: number | undefined; error?: string } {
  if (costs === undefined) return { cost: undefined };
  if (typeof costs !== 'function') return { cost: Object.hasOwn(costs, tool) ? costs[tool] : undefined };
  try {
    return { cost: costs({ tool, args }) };
  } catch (error) {
    return { cost: Number.NaN, error: (error as Error)?.message ?? String(error) };
  }
}
