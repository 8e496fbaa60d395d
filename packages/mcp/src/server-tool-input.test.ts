// gateMcpServer decides a call on the arguments the tool handler gets: an McpServer parses them with the tool's
// inputSchema (defaults, transforms) after the transport has seen them. A real SDK Client and McpServer, linked in
// memory.
import { AgentPolicy, type PolicySession } from '@agentpolicy/core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { gateMcpServer } from './gate-mcp-server.js';
import type { McpPolicyOptions } from './tool-gate.js';
import { wrapMcpServerTransport } from './policy-transport.js';
import { mcpServerInputReader } from './server-tool-input.js';

const POLICY = {
  rules: [
    { deny: 'no recursive deletes', tool: 'mcp__files__delete_path', if: { 'input.recursive': { eq: true } } },
    { deny: 'email only to ourco.com', tool: 'mcp__files__send_email', unless: { 'input.to': { glob: '*@ourco.com' } } },
    { require_approval: 'publishing needs a human', tool: 'mcp__files__publish', if: { 'input.visibility': { eq: 'public' } } },
  ],
};

const text = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;
const toolDecisions = (session: PolicySession) => session.report().decisions.filter((d) => d.action.type === 'tool');

function filesServer(ran: string[]) {
  const server = new McpServer({ name: 'files', version: '1.0.0' });
  const done = (line: string) => {
    ran.push(line);
    return { content: [{ type: 'text' as const, text: line }] };
  };
  server.registerTool('delete_path', { inputSchema: { path: z.string(), recursive: z.boolean().default(true) } }, async ({ path, recursive }) => done(`delete ${path} recursive=${recursive}`));
  server.registerTool('send_email', { inputSchema: { to: z.string().trim().toLowerCase() } }, async ({ to }) => done(`send ${to}`));
  let next = 0;
  server.registerTool(
    'publish',
    { inputSchema: { page: z.string(), id: z.string().default(() => `p${++next}`), visibility: z.enum(['draft', 'public']).default('public') } },
    async ({ page, visibility }) => done(`publish ${page} ${visibility}`),
  );
  server.registerTool('count', { inputSchema: { count: z.number().int().positive() } }, async ({ count }) => done(`count ${count}`));
  return server;
}

async function connect(server: McpServer, session: PolicySession, options: McpPolicyOptions, how: 'gate' | 'wrap' = 'gate') {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  if (how === 'gate') {
    gateMcpServer(server, session, options);
    await server.connect(serverSide);
  } else {
    await server.connect(wrapMcpServerTransport(serverSide, session, options));
  }
  const client = new Client({ name: 'plain-client', version: '1.0.0' });
  await client.connect(clientSide);
  return client;
}

describe('gateMcpServer decides on the arguments as the tool schema parses them', () => {
  it('a defaulted field is caught by an if rule; a trimmed, lower-cased address passes an unless glob as the handler gets it', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const client = await connect(filesServer(ran), session, { server: 'files' });
    try {
      const recursive = await client.callTool({ name: 'delete_path', arguments: { path: '/data' } });
      expect(recursive.isError).toBe(true);
      expect(text(recursive)).toContain('no recursive deletes');
      expect(text(await client.callTool({ name: 'delete_path', arguments: { path: '/tmp/x', recursive: false } }))).toBe('delete /tmp/x recursive=false');
      expect(text(await client.callTool({ name: 'send_email', arguments: { to: '  Ada@OurCo.com ' } }))).toBe('send ada@ourco.com');
      expect((await client.callTool({ name: 'send_email', arguments: { to: 'eve@ourco.com.evil.io ' } })).isError).toBe(true);

      expect(ran).toEqual(['delete /tmp/x recursive=false', 'send ada@ourco.com']);
      expect(toolDecisions(session).map((d) => [d.decision, d.action.type === 'tool' ? d.action.input : undefined])).toEqual([
        ['deny', { path: '/data', recursive: true }],
        ['allow', { path: '/tmp/x', recursive: false }],
        ['allow', { to: 'ada@ourco.com' }],
        ['deny', { to: 'eve@ourco.com.evil.io' }],
      ]);
    } finally {
      await client.close();
    }
  });

  it('the approval request holds the parsed input; the approved repeat (a default generated anew) runs once', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const client = await connect(filesServer(ran), session, { server: 'files' });
    try {
      const asked = await client.callTool({ name: 'publish', arguments: { page: 'home' } });
      expect(asked.isError).toBe(true);
      expect(text(asked)).toContain('Approval is needed');
      const [request] = await session.pendingApprovals();
      expect(request?.action).toMatchObject({ type: 'tool', name: 'mcp__files__publish', input: { page: 'home', id: expect.stringMatching(/^p\d+$/), visibility: 'public' } });
      await session.resolveApproval(request!.id, { approved: true, by: 'alice' });

      expect(text(await client.callTool({ name: 'publish', arguments: { page: 'home' } }))).toBe('publish home public');
      // The one approval is used: the next identical call asks again.
      expect((await client.callTool({ name: 'publish', arguments: { page: 'home' } })).isError).toBe(true);
      expect(ran).toEqual(['publish home public']);
      expect(toolDecisions(session).map((d) => d.decision)).toEqual(['require_approval', 'allow', 'require_approval']);
      expect(toolDecisions(session)[1]).toMatchObject({ approval: { via: 'request', requestId: request!.id, by: 'alice' } });
    } finally {
      await client.close();
    }
  });

  it('arguments the schema rejects: the handler never runs, a deny stays a deny, and a declared cost is released', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const client = await connect(filesServer(ran), session, { server: 'files', costs: { count: 0.25 } });
    try {
      const invalid = await client.callTool({ name: 'count', arguments: { count: -3 } });
      expect(invalid.isError).toBe(true);
      expect(text(invalid)).toContain('Input validation error');
      const denied = await client.callTool({ name: 'delete_path', arguments: { path: 42, recursive: true } });
      expect(text(denied)).toContain('no recursive deletes');
      expect(text(await client.callTool({ name: 'count', arguments: { count: 2 } }))).toBe('count 2');

      expect(ran).toEqual(['count 2']);
      await new Promise((resolve) => setTimeout(resolve, 10));
      const decisions = toolDecisions(session);
      expect(decisions.map((d) => d.decision)).toEqual(['allow', 'deny', 'allow']);
      expect(decisions[0]?.settlement).toMatchObject({ status: 'released', actual: 0 });
      expect(decisions[2]?.settlement).toMatchObject({ status: 'committed', actual: 0.25 });
      expect(session.report().costSummary.allowed.tool).toBeCloseTo(0.25, 10);
    } finally {
      await client.close();
    }
  });

  it('wrapMcpServerTransport, which does not know the server, decides on the arguments as sent', async () => {
    const ran: string[] = [];
    const session = AgentPolicy.fromDict(POLICY).session();
    const client = await connect(filesServer(ran), session, { server: 'files' }, 'wrap');
    try {
      await client.callTool({ name: 'delete_path', arguments: { path: '/data' } });
      expect(ran).toEqual(['delete /data recursive=true']);
      expect(toolDecisions(session)[0]).toMatchObject({ decision: 'allow', action: { input: { path: '/data' } } });
    } finally {
      await client.close();
    }
  });
});

describe('mcpServerInputReader', () => {
  it("reads an older McpServer (no validateToolInput) with the schema's own safeParseAsync, and a low-level Server not at all", async () => {
    const tools = { t: { inputSchema: z.object({ n: z.number().default(1) }) }, bare: {} };
    const read = mcpServerInputReader({ _registeredTools: tools })!;
    await expect(read('t', {})).resolves.toEqual({ input: { n: 1 }, rejected: false });
    await expect(read('t', { n: 'x' })).resolves.toEqual({ input: { n: 'x' }, rejected: true });
    await expect(read('bare', { a: 1 })).resolves.toEqual({ input: { a: 1 }, rejected: false });
    await expect(read('missing', { a: 1 })).resolves.toEqual({ input: { a: 1 }, rejected: false });
    expect(mcpServerInputReader({ setRequestHandler() {} })).toBeUndefined();
  });
});
