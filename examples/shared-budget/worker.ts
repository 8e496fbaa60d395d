// One worker process: its own Redis client, its own session (its own audit trail), the tenant's shared budget.
import { AgentPolicy } from '@agentpolicy/core';
import { createRedisBudgetStore } from '@agentpolicy/redis';
import { createClient } from 'redis';

const [url, name] = process.argv.slice(2) as [string, string];
const client = await createClient({ url, disableOfflineQueue: true }).connect();
const policy = new AgentPolicy({ budget: 1 }); // $1.00 for the tenant, shared by every worker
const session = policy.session({ id: name, store: createRedisBudgetStore({ client }), budgetKey: 'tenant:acme' });

// Ten model calls of $0.08 at once: each reserves its estimate first, then commits what it really cost.
const results = await Promise.all(
  Array.from({ length: 10 }, async () => {
    const reservation = await session.reserve(0.08, { source: 'openai:gpt-4o-mini' });
    if (!reservation.allowed) return false;
    await reservation.commit(0.08);
    return true;
  }),
);
const report = session.report();
process.send!({ name, allowed: results.filter(Boolean).length, denied: results.filter((ok) => !ok).length, tenantSpent: report.spent });
client.destroy();
