// The handler as the cross-process tests reach it: on Node's server at 127.0.0.1 (a free port), under /approvals;
// a signed link answers as `link`, `Authorization: Bearer ops` as `ops`, anything else is refused.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApprovalStore } from '@agentpolicy/core';
import { createApprovalsHandler } from '../approvals-handler.js';
import { toNodeHandler } from '../node-handler.js';

export const OPS = { authorization: 'Bearer ops' } as const;

export interface ServedHandler {
  /** `http://127.0.0.1:<port>` */
  readonly base: string;
  /** A JSON POST to `/approvals/api/<path>` as `ops`. */
  api(path: string, body: unknown): Promise<Response>;
  close(): Promise<void>;
}

export async function serveHandler(store: ApprovalStore, secret: string): Promise<ServedHandler> {
  const handler = createApprovalsHandler({
    store,
    secret,
    basePath: '/approvals',
    authorize: (request, access) => (access.kind === 'link' ? { id: 'link' } : request.headers.get('authorization') === OPS.authorization ? { id: 'ops' } : null),
  });
  const server = createServer(toNodeHandler(handler));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    api: (path, body) => fetch(`${base}/approvals/api/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...OPS }, body: JSON.stringify(body) }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
