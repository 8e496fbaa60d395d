// A process of the shared call-key tests: one session (the id the parent gives) on a shared budget and shared call
// keys, doing what the parent says over IPC, one step at a time.
import { AgentPolicy, type Decision } from '@agentpolicy/core';
import { createRedisBudgetStore, createRedisCallKeyStore } from '../dist/index.js';
import { connect, type ClientKind } from './clients.ts';

const [kind, targetJson, sessionId, budgetKey] = process.argv.slice(2);
const handle = await connect(kind as ClientKind, JSON.parse(targetJson!) as { url: string } | { nodes: string[] });
const store = createRedisBudgetStore({ client: handle.client, timeoutMs: 20_000 });
const callKeys = createRedisCallKeyStore({ client: handle.client, timeoutMs: 20_000, waitMs: 5000 });
const session = new AgentPolicy({ budget: 100 }).session({ id: sessionId!, budgetKey: budgetKey!, store, callKeys });
let last: Decision | undefined;

type Step = { op: 'check'; key: string; cost: number } | { op: 'claim' } | { op: 'exit' };
process.on('message', async (step: Step) => {
  if (step.op === 'check') {
    last = await session.checkTool('send_email', { input: { to: 'ops@example.com' }, cost: step.cost, idempotencyKey: step.key });
    process.send!({ decision: last, frozen: Object.isFrozen(last) && Object.isFrozen(last.rule) && Object.isFrozen(last.action) });
  } else if (step.op === 'claim') {
    process.send!({ claimed: await session.claim(last!) });
  } else {
    await handle.close();
    process.exit(0);
  }
});
process.send!({ ready: true });
