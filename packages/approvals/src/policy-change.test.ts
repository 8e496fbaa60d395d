// An answer given on the approvals page (or through a signed link) after the policy changed: the human's yes is
// applied by the policy in force when the agent uses it, so an action the new policy refuses does not run.
import { AgentPolicy, findPolicyError, InMemoryApprovalStore, PolicyDeniedError, PolicySource } from '@agentpolicy/core';
import { describe, expect, it, vi } from 'vitest';
import { approvalLinks } from './approval-links.js';
import { createApprovalsHandler, type ApprovalsAuthorize } from './approvals-handler.js';
import { createWaitingApprover } from './create-waiting-approver.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const ORIGIN = 'http://approvals.test';
const V1 = { approval: { require_for: [{ tool: 'wire_money' }] } };
const V2 = { approval: { require_for: [{ tool: 'wire_money' }] }, tools: { block: ['wire_money'] } };

const byHeader: ApprovalsAuthorize = (request, access) => (access.kind === 'link' ? { id: 'approval-token' } : request.headers.get('x-user') ? { id: request.headers.get('x-user') as string } : null);
const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  new Request(`${ORIGIN}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('an approval answered after the policy changed', () => {
  it('a waiting approver: the policy blocks the tool while the human decides; their yes does not run it', async () => {
    const store = new InMemoryApprovalStore();
    const handler = createApprovalsHandler({ store, secret: SECRET, authorize: byHeader });
    const source = new PolicySource(AgentPolicy.fromDict(V1));
    let requestId = '';
    const session = source.session({ approvals: store, approver: createWaitingApprover({ store, intervalMs: 10, onRequest: (request) => void (requestId = request.id) }) });
    const tool = vi.fn(async () => 'wired');
    const run = session.runTool('wire_money', { input: { to: 'acct-9', amount: 900 } }, tool).catch((error: unknown) => error);
    await vi.waitFor(() => expect(requestId).not.toBe(''));
    source.update(V2);
    const answered = await handler(postJson(`/api/requests/${requestId}/resolve`, { answer: 'approve' }, { 'x-user': 'alice' }));
    expect(answered.status).toBe(200);

    const outcome = await run;
    expect(findPolicyError(outcome)).toBeInstanceOf(PolicyDeniedError);
    expect(tool).not.toHaveBeenCalled();
    // Decided again when the answer came, under the policy then in force: no allow is recorded for it.
    const decisions = session.report().decisions;
    expect(decisions.map((d) => d.decision)).toEqual(['deny']);
    expect(decisions[0]).toMatchObject({ rule: { section: 'tools', list: 'block' }, policyHash: source.current.hash });
    expect(decisions[0]?.reason).toContain('while the approver decided');
  });

  it('a signed link made under the old policy and redeemed under the new one: the answer is kept, the action is denied', async () => {
    const store = new InMemoryApprovalStore();
    const handler = createApprovalsHandler({ store, secret: SECRET });
    const source = new PolicySource(AgentPolicy.fromDict(V1));
    const session = source.session({ approvals: store, approvalSecret: SECRET });
    const input = { to: 'acct-9', amount: 900 };
    const asked = await session.checkTool('wire_money', { input });
    const request = asked.approvalRequest!;
    const token = new URL(approvalLinks(request, { handlerUrl: ORIGIN, secret: SECRET }).approve).pathname.split('/').pop() as string;
    source.update(V2);
    expect((await handler(postJson('/api/links/redeem', { token }))).status).toBe(200);

    const tool = vi.fn(async () => 'wired');
    const outcome = await session.runTool('wire_money', { input, approval: { requestId: request.id } }, tool).catch((error: unknown) => error);
    expect(findPolicyError(outcome)).toBeInstanceOf(PolicyDeniedError);
    expect(tool).not.toHaveBeenCalled();
    expect(session.report().decisions.at(-1)).toMatchObject({ decision: 'deny', rule: { section: 'tools', list: 'block' } });
  });
});
