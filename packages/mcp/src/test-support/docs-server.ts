// A real MCP server for the tests, built with the SDK. Every handler that runs appends its tool name to the file in
// MCP_CALL_LOG, so a test can see which calls reached the server (over stdio the server is another process).
// Run directly (node --experimental-strip-types docs-server.ts) it serves over stdio.
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

export function createDocsServer(callLog: string | undefined): McpServer {
  const ran = (tool: string) => {
    if (callLog) appendFileSync(callLog, `${tool}\n`);
  };
  const text = (value: string) => ({ content: [{ type: 'text' as const, text: value }] });
  const server = new McpServer({ name: 'docs-server', version: '1.0.0' });
  server.registerTool('search', { description: 'Search the docs', inputSchema: { q: z.string() } }, async ({ q }) => {
    ran('search');
    return text(`3 pages about ${q}`);
  });
  server.registerTool('run_shell', { description: 'Run a shell command', inputSchema: { cmd: z.string() } }, async ({ cmd }) => {
    ran('run_shell');
    return text(`ran ${cmd}`);
  });
  server.registerTool('delete_page', { description: 'Delete a page', inputSchema: { page: z.string() } }, async ({ page }) => {
    ran('delete_page');
    return text(`deleted ${page}`);
  });
  server.registerTool('publish', { description: 'Publish a page', inputSchema: { page: z.string() } }, async ({ page }) => {
    ran('publish');
    return text(`published ${page}`);
  });
  server.registerTool('flaky', { description: 'Always fails', inputSchema: { n: z.number() } }, async () => {
    ran('flaky');
    throw new Error('upstream 503');
  });
  server.registerTool('slow', { description: 'Takes its time', inputSchema: { ms: z.number() } }, async ({ ms }) => {
    ran('slow');
    await new Promise((resolve) => setTimeout(resolve, ms));
    return text(`waited ${ms} ms`);
  });
  return server;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = createDocsServer(process.env['MCP_CALL_LOG']);
  const gate = process.env['DOCS_SERVER_GATE'];
  if (gate) {
    // The server-side gate, loaded from the built package as a server author would.
    const { AgentPolicy } = await import('@agentpolicy/core');
    const { wrapMcpServerTransport } = await import('@agentpolicy/mcp');
    await server.connect(wrapMcpServerTransport(new StdioServerTransport(), AgentPolicy.fromDict(JSON.parse(gate)).session(), { server: 'docs' }));
  } else {
    await server.connect(new StdioServerTransport());
  }
}
