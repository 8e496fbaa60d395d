import { AgentPolicyError } from '@agentpolicy/core';

/**
 * The name the policy sees for a tool of an MCP server: `mcp__<server>__<tool>` (so `tools.block: [mcp__shell__*]`
 * covers every tool of the server the app calls `shell`).
 *
 * @example
 * ```ts
 * governedToolName('docs', 'search'); // 'mcp__docs__search'
 * ```
 */
export function governedToolName(server: string, tool: string): string {
  return `mcp__${server}__${tool}`;
}

/**
 * Checks the server name an app gives: a non-empty string without `__` (which would make `mcp__a__b__c` ambiguous)
 * and without glob characters (which policy entries use as wildcards).
 */
export function readServerName(server: unknown, where: string): string {
  if (typeof server !== 'string' || server === '' || server.includes('__') || /[*?[\]\s]/.test(server)) {
    throw new AgentPolicyError(
      'INVALID_ARGUMENT',
      `${where}: option server must name the MCP server as the policy sees it (a non-empty string without "__", spaces or glob characters), got ${JSON.stringify(server)}`,
    );
  }
  return server;
}
