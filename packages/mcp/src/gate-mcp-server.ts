import { AgentPolicyError, type PolicySession } from '@agentpolicy/core';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { serverTransport, wrapMcpTransport } from './policy-transport.js';
import { mcpServerHandlerErrors, type HandlerErrors } from './server-tool-errors.js';
import { mcpServerInputReader } from './server-tool-input.js';
import { readServerName } from './governed-tool-name.js';
import { ToolGate, type McpPolicyOptions } from './tool-gate.js';

/** Something with the SDK's `connect(transport)`: an `McpServer`, a low-level `Server` or a `Client`. */
export interface Connectable {
  connect(transport: Transport, ...rest: never[]): Promise<void>;
}

/** The session a connection is checked under: one session, or one per transport (per client connection). */
export type SessionSource = PolicySession | ((transport: Transport) => PolicySession);

const gated = new WeakSet<object>();

type Wrap = (transport: Transport, session: PolicySession, options: McpPolicyOptions) => Transport;

function patchConnect<T extends Connectable>(target: T, session: SessionSource, options: McpPolicyOptions, where: string, wrap: Wrap): T {
  if (typeof target?.connect !== 'function') throw new AgentPolicyError('INVALID_ARGUMENT', `${where} needs an object with connect(transport)`);
  if (gated.has(target)) throw new AgentPolicyError('INVALID_ARGUMENT', `${where}: this object is already gated`);
  if ((target as { isConnected?: () => boolean }).isConnected?.() === true || (target as { transport?: unknown }).transport !== undefined) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${where}: call it before connect(); this one is already connected`);
  }
  // Bad options fail here, not at the first connection.
  if (typeof session === 'function') readServerName(options?.server, where);
  else new ToolGate(session, options, 'mcp-server', where);
  const connect = target.connect.bind(target) as (transport: Transport, ...rest: unknown[]) => Promise<void>;
  gated.add(target);
  Object.defineProperty(target, 'connect', {
    value: (transport: Transport, ...rest: unknown[]) => connect(wrap(transport, typeof session === 'function' ? session(transport) : session, options), ...rest),
    writable: true,
    configurable: true,
  });
  return target;
}

/**
 * Gates an `McpServer` (or a low-level `Server`): every transport it connects to from now on is wrapped by
 * {@link wrapMcpServerTransport}, so its tool handlers run only when the policy allows. Call it before `connect`.
 * Pass a function for `session` to give each connection its own session. For an `McpServer`, a call is decided on its
 * arguments as the tool's `inputSchema` parses them (defaults filled in, transforms applied): what the handler gets.
 *
 * @example
 * ```ts
 * const server = new McpServer({ name: 'docs', version: '1.0.0' });
 * server.registerTool('search', { inputSchema: { q: z.string() } }, async ({ q }) => ({ content: [{ type: 'text', text: find(q) }] }));
 * gateMcpServer(server, policy.session(), { server: 'docs' });
 * await server.connect(new StdioServerTransport());
 * ```
 */
export function gateMcpServer<T extends Connectable>(server: T, session: SessionSource, options: McpPolicyOptions): T {
  // An McpServer parses a call's arguments with the tool's input schema before its handler runs: calls are decided
  // on that parse, so a default or a transform the handler gets is what the policy judged.
  const inputOf = mcpServerInputReader(server);
  // A tool handler that throws is answered with a bare error result: what it threw is kept for the call's settlement.
  let thrown: HandlerErrors | undefined;
  const gated = patchConnect(server, session, options, 'gateMcpServer', (transport, each, gateOptions) => serverTransport(transport, each, gateOptions, 'gateMcpServer', inputOf, thrown));
  thrown = mcpServerHandlerErrors(server);
  return gated;
}

/**
 * Governs an MCP `Client`: every transport it connects to from now on is wrapped by {@link wrapMcpTransport}, so each
 * `callTool` is checked before it is sent and `listTools` leaves out tools the policy never allows. Call it before
 * `connect`.
 *
 * @example
 * ```ts
 * const client = wrapMcpClient(new Client({ name: 'agent', version: '1.0.0' }), policy.session(), { server: 'docs' });
 * await client.connect(new StreamableHTTPClientTransport(new URL('http://127.0.0.1:3000/mcp')));
 * ```
 */
export function wrapMcpClient<T extends Connectable>(client: T, session: SessionSource, options: McpPolicyOptions): T {
  return patchConnect(client, session, options, 'wrapMcpClient', wrapMcpTransport);
}
