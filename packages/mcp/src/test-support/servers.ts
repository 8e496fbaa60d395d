// Starts the docs server the ways the tests need: a child process over stdio, or Streamable HTTP on 127.0.0.1.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ApprovalState, PolicySession } from '@agentpolicy/core';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { createDocsServer } from './docs-server.js';

export const SERVER_SCRIPT = fileURLToPath(new URL('./docs-server.ts', import.meta.url));

/** A file the server appends each tool it ran to, and a reader for it. */
export function callLog(): { path: string; calls: () => string[] } {
  const path = join(mkdtempSync(join(tmpdir(), 'agentpolicy-mcp-')), 'calls.log');
  return { path, calls: () => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : []) };
}

/** A client transport to a docs server in a child process (stdio). */
export function stdioTransport(log: string): StdioClientTransport {
  return new StdioClientTransport({
    command: process.execPath,
    args: ['--experimental-strip-types', '--no-warnings=ExperimentalWarning', SERVER_SCRIPT],
    env: { ...(process.env as Record<string, string>), MCP_CALL_LOG: log },
    stderr: 'inherit',
  });
}

/** A docs server over Streamable HTTP on 127.0.0.1 (a free port), one McpServer per MCP session. */
export function startHttpServer(log: string, prepare: (server: McpServer) => McpServer = (server) => server): Promise<HttpServer> {
  return serveHttp(() => prepare(createDocsServer(log)));
}

export interface HttpServer {
  readonly url: URL;
  transport(): Transport;
  /** Closes every MCP session's transport, then the HTTP server. */
  close(): Promise<void>;
}

/** Serves MCP over Streamable HTTP on 127.0.0.1 (a free port): a new server from `create` for each MCP session. */
export async function serveHttp(create: () => McpServer): Promise<HttpServer> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const all = new Set<StreamableHTTPServerTransport>();
  const http: Server = createServer((req, res) => {
    void (async () => {
      const id = req.headers['mcp-session-id'];
      let transport = typeof id === 'string' ? sessions.get(id) : undefined;
      if (transport === undefined) {
        const created = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (sid) => void sessions.set(sid, created) });
        all.add(created);
        created.onclose = () => {
          all.delete(created);
          if (created.sessionId) sessions.delete(created.sessionId);
        };
        await create().connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res);
    })().catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`);
  return {
    url,
    transport: () => new StreamableHTTPClientTransport(url),
    close: async () => {
      for (const transport of all) await transport.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** The first approval request the session raises (polls until there is one). */
export async function firstPendingApproval(session: PolicySession): Promise<ApprovalState> {
  for (;;) {
    const [pending] = await session.pendingApprovals();
    if (pending !== undefined) return pending;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
