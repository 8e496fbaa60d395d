// An MCP server with two tools: `shell`, which really runs a shell command, and `search_docs`. The agent in agent.ts
// starts it as a child process and talks to it over stdio.
import { execFileSync } from 'node:child_process';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const DOCS: Record<string, string> = {
  budgets: 'A policy sets budget.max_spend; every paid action reserves its cost before it runs.',
  approvals: 'approval.require_for lists the actions a human must approve; the answer names its request.',
};

const server = new McpServer({ name: 'workspace', version: '1.0.0' });

server.registerTool('shell', { description: 'Run a shell command on this machine', inputSchema: { command: z.string() } }, async ({ command }) => {
  const output = execFileSync('sh', ['-c', command], { encoding: 'utf8', timeout: 5_000 });
  return { content: [{ type: 'text', text: output || '(no output)' }] };
});

server.registerTool('search_docs', { description: 'Search the agentpolicy docs', inputSchema: { query: z.string() } }, async ({ query }) => {
  const hits = Object.entries(DOCS).filter(([topic]) => query.toLowerCase().includes(topic));
  return { content: [{ type: 'text', text: hits.length ? hits.map(([topic, text]) => `${topic}: ${text}`).join('\n') : 'no match' }] };
});

await server.connect(new StdioServerTransport());
