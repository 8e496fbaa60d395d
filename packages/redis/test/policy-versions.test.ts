// A rolling deploy: two processes of one session (same session id) share call keys and a budget on Redis, one still
// on the old policy, one on the new. A call decided by the old one and retried in the new one is judged by the new
// policy: the tool it blocks does not run in either process, and the money held for it goes back.
import { AgentPolicy, type PolicySession, type Reservation } from '@agentpolicy/core';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createRedisBudgetStore, createRedisCallKeyStore } from '../src/index.js';
import { connect, type ClientHandle } from './clients.js';

const redisUrl = inject('redisUrl');
const V1 = { budget: { max_spend: 1 } };
const V2 = { budget: { max_spend: 1 }, tools: { block: ['refund'] } };

describe.skipIf(redisUrl === null)('two policy versions sharing call keys (one node)', () => {
  const handles: ClientHandle[] = [];
  afterAll(() => Promise.all(handles.map((handle) => handle.close())));

  async function processes(): Promise<{ a: PolicySession; b: PolicySession; spentAndHeld: () => Promise<number> }> {
    const id = `rolling:${Date.now()}:${Math.random()}`;
    const make = async (document: Record<string, unknown>) => {
      const handle = await connect('node-redis@6', { url: redisUrl! });
      handles.push(handle);
      return AgentPolicy.fromDict(document).session({ id, budgetKey: `budget:${id}`, store: createRedisBudgetStore({ client: handle.client }), callKeys: createRedisCallKeyStore({ client: handle.client }) });
    };
    const a = await make(V1);
    const b = await make(V2);
    const spentAndHeld = async () => {
      const report = await b.reconcile();
      return report.spent + report.reserved;
    };
    return { a, b, spentAndHeld };
  }

  it('the new process gets no allow for a call its policy blocks; the old process cannot run it afterwards', async () => {
    const { a, b, spentAndHeld } = await processes();
    const call = { type: 'tool' as const, name: 'refund', input: { order: 'A1' }, cost: 0.4, idempotencyKey: 'call_1' };
    const decided = await a.reserveAction(call);
    expect(decided.allowed).toBe(true);

    // The retry lands in the process already on the new policy.
    const retried = await b.reserveAction(call);
    expect(retried.decision).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' }, policyHash: b.policy.hash });
    let ran = 0;
    const runIn = async (session: PolicySession, reservation: Reservation) => {
      if (reservation.allowed && (await session.claim(reservation.decision))) ran++;
    };
    await runIn(b, retried);
    // The old process, still holding its allow, cannot run it either: the new policy spent it in the store.
    await runIn(a, decided);
    expect(ran).toBe(0);
    // The 0.4 held for it went back, and ending the old process charges nothing for it.
    expect(await spentAndHeld()).toBe(0);
    await a.end();
    expect(await spentAndHeld()).toBe(0);
  });

  it('an allow the new policy still gives comes back to the new process, runs once in either', async () => {
    const { a, b } = await processes();
    const call = { type: 'tool' as const, name: 'lookup', input: { order: 'A1' }, cost: 0.1, idempotencyKey: 'call_2' };
    const decided = await a.reserveAction(call);
    const retried = await b.reserveAction(call);
    expect(retried.decision.id).toBe(decided.decision.id);
    const claims = await Promise.all([b.claim(retried.decision), a.claim(decided.decision)]);
    expect(claims.filter(Boolean)).toHaveLength(1);
  });
});
