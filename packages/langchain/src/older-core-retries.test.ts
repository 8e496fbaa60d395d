import { AgentPolicy, findPolicyError, PolicyDeniedError, type ModelCallEstimate } from '@agentpolicy/core';
import { AsyncCaller as CurrentCaller } from '@langchain/core/utils/async_caller';
import { AsyncCaller as OlderCaller } from 'langchain-core-v1-0/utils/async_caller';
import { describe, expect, it } from 'vitest';
import { meterCallerClass, ModelAttempts } from './model-attempts.js';

// @langchain/core before 1.2.8 has no callWithRetries: its retry loop is inside AsyncCaller.call. The same metering
// must hold there: every attempt reserved before it is sent, each failure settled on its own.
const estimate: ModelCallEstimate = { model: 'gpt-4o-mini', provider: 'openai', prompt: 'hello', maxOutputTokens: 100 };

async function run(Caller: typeof CurrentCaller, budgetFor: number, failures: number) {
  meterCallerClass(Caller.prototype as never);
  const probe = await new AgentPolicy().session().reserveModelCall(estimate);
  const each = probe.estimate;
  const session = new AgentPolicy({ budget: Number((each * budgetFor + each / 2).toFixed(8)) }).session();
  const reservation = await session.reserveModelCall(estimate);
  const attempts = new ModelAttempts(session, estimate, reservation);
  const caller = new Caller({ maxRetries: 6, onFailedAttempt: () => undefined });
  let sent = 0;
  const outcome = await attempts
    .run(() =>
      caller.call(async () => {
        sent++;
        if (sent <= failures) throw Object.assign(new Error('upstream failed'), { status: 500 });
        return 'answer';
      }),
    )
    .catch((error: unknown) => error);
  if (outcome === 'answer') await attempts.succeeded({ inputTokens: 10, outputTokens: 5 });
  else await attempts.failed(outcome, false);
  return { session, sent, outcome, each };
}

describe.each([
  ['@langchain/core 1.0.0 (retry loop in call)', OlderCaller as unknown as typeof CurrentCaller],
  ['the installed @langchain/core (callWithRetries)', CurrentCaller],
])('retries of %s', (_label, Caller) => {
  it('each failed attempt is reserved before it is sent and charged its estimate; the answer charges its usage', async () => {
    const { session, sent, outcome, each } = await run(Caller, 5, 2);
    expect(outcome).toBe('answer');
    expect(sent).toBe(3);
    const settled = session.report().decisions.filter((decision) => decision.action.type === 'cost');
    expect(settled.map((decision) => decision.settlement?.status)).toEqual(['committed', 'committed', 'committed']);
    expect(session.spent).toBeGreaterThan(2 * each);
    expect(session.spent).toBeLessThan(3 * each);
  });

  it('a retry the budget cannot cover is not sent and ends the retries with the policy error', async () => {
    const { sent, outcome, session, each } = await run(Caller, 2, 6);
    expect(sent).toBe(2);
    expect(findPolicyError(outcome)).toBeInstanceOf(PolicyDeniedError);
    expect(session.spent).toBeCloseTo(2 * each, 9);
  });

  it('outside a metered model call the caller is untouched', async () => {
    meterCallerClass(Caller.prototype as never);
    const caller = new Caller({ maxRetries: 2, onFailedAttempt: () => undefined });
    let sent = 0;
    const answer = await caller.call(async () => {
      sent++;
      if (sent < 2) throw Object.assign(new Error('upstream failed'), { status: 500 });
      return 'plain';
    });
    expect([answer, sent]).toEqual(['plain', 2]);
  });
});
