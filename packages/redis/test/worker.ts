// A worker process of the shared-budget and shared-limit tests: connects its own client, opens a session on the
// shared budget and runs the checks it is told to when the parent says go.
import { AgentPolicy } from '@agentpolicy/core';
import { createRedisBudgetStore, createRedisRateLimitStore } from '../dist/index.js';
import { connect, type ClientKind } from './clients.ts';

const [kind, targetJson, budgetKey, mode, countText, costText, budgetText, toolsText] = process.argv.slice(2);
const handle = await connect(kind as ClientKind, JSON.parse(targetJson!) as { url: string } | { nodes: string[] });
const store = createRedisBudgetStore({ client: handle.client, timeoutMs: 20_000 });
// In `limits` mode the last argument is the policy as JSON; otherwise it is the budget in USD.
const policy = mode === 'limits' ? AgentPolicy.fromDict(JSON.parse(budgetText!)) : new AgentPolicy({ budget: Number(budgetText) });
const cost = Number(costText);
const count = Number(countText);

if (mode === 'limits') {
  // `count` concurrent checks of each tool (`search` unless a comma-separated list follows) under the policy passed.
  const limitStore = createRedisRateLimitStore({ client: handle.client, timeoutMs: 20_000 });
  const session = policy.session({ store, limitStore, budgetKey: budgetKey!, id: `worker-${process.pid}` });
  const tools = (toolsText ?? 'search').split(',');
  process.send!({ ready: true });
  process.once('message', async () => {
    const decisions = await Promise.all(Array.from({ length: count * tools.length }, (_, i) => session.checkTool(tools[i % tools.length]!, { input: { query: `q${i}` } })));
    process.send!({
      allowed: decisions.filter((d) => d.decision === 'allow').length,
      allowedByTool: Object.fromEntries(tools.map((tool) => [tool, decisions.filter((d) => d.decision === 'allow' && d.action.type === 'tool' && d.action.name === tool).length])),
      denied: decisions.filter((d) => d.decision === 'deny' && d.rule.section === 'limits').length,
      other: decisions.filter((d) => d.decision !== 'allow' && d.rule.section !== 'limits').map((d) => d.reason),
    });
    await handle.close();
    process.exit(0);
  });
} else if (mode === 'hold') {
  // Reserve and never settle: the parent kills this process with SIGKILL while the lease is open.
  const session = policy.session({ store, budgetKey: budgetKey!, leaseTtlMs: count });
  const reservation = await session.reserve(cost, { source: 'llm' });
  process.send!({ held: reservation.allowed });
  setInterval(() => undefined, 1000);
} else {
  const session = policy.session({ store, budgetKey: budgetKey!, id: `worker-${process.pid}` });
  process.send!({ ready: true });
  process.once('message', async () => {
    const results = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        if (i % 2 === 0) return (await session.checkCost(cost, { source: 'tool' })).decision === 'allow';
        const reservation = await session.reserve(cost, { source: 'llm' });
        if (!reservation.allowed) return false;
        await reservation.commit();
        return true;
      }),
    );
    const report = session.report();
    process.send!({
      allowed: results.filter(Boolean).length,
      denied: results.filter((ok) => !ok).length,
      errors: report.decisions.filter((d) => d.rule.section === 'error').length,
      pending: session.pendingReservations,
    });
    await handle.close();
    process.exit(0);
  });
}
