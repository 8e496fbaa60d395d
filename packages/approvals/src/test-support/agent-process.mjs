// An agent in its own process: one session under a policy that requires approval for send_email, a waiting
// approver on a store shared with the test's handler (core's file store in a directory, or the Redis store when given
// a redis:// URL, on this process's own client), and a tool that appends a line to a log each time it runs. Prints
// JSON lines: the request (with its signed links), then the outcome.
// Usage: node agent-process.mjs <store dir | redis URL> <secret> <tool log> <handler url> <input JSON> <approval timeout ms>
import { appendFileSync } from 'node:fs';
import { AgentPolicy } from '@agentpolicy/core';
import { createRedisApprovalStore } from '@agentpolicy/redis';
import { createClient } from 'redis';
import { FileApprovalStore } from '../../../core/src/test-support/file-approval-store.ts';
import { approvalLinks } from '../approval-links.ts';
import { createWaitingApprover } from '../create-waiting-approver.ts';

const [dir, secret, toolLog, handlerUrl, inputJson, timeoutMs] = process.argv.slice(2);
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const redis = dir.startsWith('redis://') ? createClient({ url: dir }) : undefined;
if (redis) await redis.connect();
const store = redis ? createRedisApprovalStore({ client: redis }) : new FileApprovalStore(dir);
const policy = AgentPolicy.fromDict({ tools: { allow: ['send_email'] }, approval: { require_for: [{ tool: 'send_email' }] } });
const session = policy.session({
  id: `agent-${process.pid}`,
  approvals: store,
  approvalSecret: secret,
  approvalTimeoutMs: Number(timeoutMs),
  approver: createWaitingApprover({
    store,
    intervalMs: 50,
    onRequest: (request) => say({ event: 'request', id: request.id, expiresAt: request.expiresAt, links: approvalLinks(request, { handlerUrl, secret }) }),
  }),
});
const input = JSON.parse(inputJson);
try {
  const result = await session.runTool('send_email', { input }, () => {
    appendFileSync(toolLog, `${JSON.stringify(input)}\n`);
    return `sent to ${input.to}`;
  });
  const decision = session.report().decisions.at(-1);
  say({ event: 'result', ran: true, result, decision: decision.decision, by: decision.approval?.by, reason: decision.reason });
} catch (error) {
  say({ event: 'result', ran: false, code: error.code, decision: error.decision?.decision, reason: error.decision?.reason, rule: error.decision?.rule });
}
await redis?.close();
