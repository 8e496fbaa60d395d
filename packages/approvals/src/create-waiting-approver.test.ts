import { AgentPolicy, InMemoryApprovalStore, type ApprovalRequest, type Decision } from '@agentpolicy/core';
import { describe, expect, it } from 'vitest';
import { createWaitingApprover } from './create-waiting-approver.js';

const policy = () => AgentPolicy.fromDict({ tools: { allow: ['deploy'] }, approval: { require_for: [{ tool: 'deploy' }] } });

describe('createWaitingApprover', () => {
  it('a request that is no longer in the store is not recorded as a rejection nobody gave', async () => {
    // A store that forgets its oldest pending request once a second one is raised (a bounded store, an evicted key).
    const store = new InMemoryApprovalStore(1);
    const raised: ApprovalRequest[] = [];
    const decisions: Decision[] = [];
    const session = policy().session({
      approvals: store,
      approvalTimeoutMs: 10_000,
      approver: createWaitingApprover({ store, intervalMs: 10, onRequest: (request) => void raised.push(request) }),
      onDecision: (decision) => void decisions.push(decision),
    });
    let ran = false;
    const run = session.runTool('deploy', { input: { service: 'api' } }, () => (ran = true)).catch((error: unknown) => error);
    while (raised.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const other = policy().session({ approvals: store });
    await other.checkTool('deploy', { input: { service: 'web' } });
    expect(store.get(raised[0]?.id as string, Date.now())).toBeUndefined();
    const error = (await run) as { decision?: Decision };
    expect(ran).toBe(false);
    expect(error.decision?.decision).toBe('deny');
    expect(error.decision?.rule).toMatchObject({ section: 'approver', outcome: 'error' });
    expect(error.decision?.reason).not.toContain('rejected');
    expect(error.decision?.reason).toContain(raised[0]?.id as string);
  });
});
