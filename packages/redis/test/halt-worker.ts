// A second process for the halt tests: connects its own client and halts or resumes through the shared store.
import { haltState } from '@agentpolicy/core';
import { createRedisHaltStore } from '../dist/index.js';
import { connect, type ClientKind } from './clients.ts';

const [kind, targetJson, name, op, reason, budgetKey] = process.argv.slice(2);
const handle = await connect(kind as ClientKind, JSON.parse(targetJson!) as { url: string } | { nodes: string[] });
const store = createRedisHaltStore({ client: handle.client, name: name! });
if (op === 'halt') await store.halt(haltState(reason!, { by: 'second process', ...(budgetKey ? { budgetKey } : {}) }));
else await store.resume(budgetKey || undefined);
await handle.close();
process.send!({ done: true });
