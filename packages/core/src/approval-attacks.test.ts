// Attacks on approval tokens and a shared approval store: a token spliced onto another request, edited, used a
// millisecond late, signed with another secret, or spelled another way; one session answering another's request;
// two answers at once; an answer racing the agent's resume through a store that answers asynchronously.
import { describe, expect, it } from 'vitest';
import { InMemoryApprovalStore, type ApprovalRequest, type ApprovalResolution, type ApprovalStore } from './approval-store.js';
import { signApprovalToken, verifyApprovalToken } from './approval-token.js';
import { AgentPolicy } from './policy.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const policy = () => AgentPolicy.fromDict({ approval: { require_for: [{ tool: 'pay' }] } });

async function raise(session: ReturnType<ReturnType<typeof policy>['session']>, input: unknown) {
  const decision = await session.checkTool('pay', { input });
  if (!decision.approvalRequest) throw new Error('no approval request');
  return decision.approvalRequest;
}

const parts = (token: string) => token.split('.') as [string, string, string];
const claimsOf = (token: string) => JSON.parse(Buffer.from(parts(token)[1], 'base64url').toString('utf8')) as [string, string, number, string];
const payloadOf = (claims: unknown[]) => Buffer.from(JSON.stringify(claims)).toString('base64url');

describe('approval tokens', () => {
  it("a token's signature never carries over to another request, expiry, fingerprint or answer", async () => {
    const session = policy().session({ approvalSecret: SECRET });
    const small = await raise(session, { amount: 5 });
    const large = await raise(session, { amount: 5000 });
    const token = await session.approvalToken(small.id);
    const [prefix, , mac] = parts(token);
    const [requestId, fingerprint, expiresAt] = claimsOf(token);
    const largeToken = await session.approvalToken(large.id, { answer: 'reject' });

    const spliced = [
      `${prefix}.${parts(largeToken)[1]}.${mac}`, // the large request's payload under the small one's signature
      `${prefix}.${payloadOf([large.id, large.fingerprint, expiresAt, 'approve'])}.${mac}`,
      `${prefix}.${payloadOf([requestId, fingerprint, expiresAt + 86_400_000, 'approve'])}.${mac}`,
      `${prefix}.${payloadOf([requestId, large.fingerprint, expiresAt, 'approve'])}.${mac}`,
      `${prefix}.${payloadOf([large.id, large.fingerprint, expiresAt, 'approve'])}.${parts(largeToken)[2]}`, // reject → approve
    ];
    for (const forged of spliced) expect(await session.resolveApprovalToken(forged)).toMatchObject({ ok: false });
    expect((await session.getApproval(large.id))?.status).toBe('pending');
    expect((await session.getApproval(small.id))?.status).toBe('pending');

    // The genuine token answers its own request only.
    expect(await session.resolveApprovalToken(token)).toMatchObject({ ok: true, request: { id: small.id, status: 'approved' } });
    expect((await session.getApproval(large.id))?.status).toBe('pending');
    const decision = await session.checkTool('pay', { input: { amount: 5000 }, approval: { requestId: small.id } });
    expect(decision).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_action' } });
  });

  it('is good up to its expiry and refused one millisecond after, as the store refuses the late answer', async () => {
    const claims = { requestId: 'apr_x', fingerprint: 'f'.repeat(64), expiresAt: 1_700_000_000_000, answer: 'approve' as const };
    const token = signApprovalToken(claims, SECRET);
    expect(verifyApprovalToken(token, SECRET, claims.expiresAt)).toMatchObject({ ok: true });
    expect(verifyApprovalToken(token, SECRET, claims.expiresAt + 1)).toMatchObject({ ok: false, problem: 'expired' });

    const store = new InMemoryApprovalStore();
    const request: ApprovalRequest = { id: 'apr_x', sessionId: 's', fingerprint: claims.fingerprint, action: { type: 'cost', source: 'x', cost: 0, metadata: {} } as never, reason: 'r', rule: { section: 'approval' } as never, createdAt: new Date(0).toISOString(), expiresAt: new Date(claims.expiresAt).toISOString() };
    store.create(request);
    const at: ApprovalResolution = { approved: true, at: new Date(0).toISOString() };
    expect(store.resolve('apr_x', at, claims.expiresAt + 1)).toMatchObject({ ok: false, problem: 'expired' });
    expect(store.resolve('apr_x', at, claims.expiresAt)).toMatchObject({ ok: true });
    // Approved but not used by its expiry: it can no longer be used.
    expect(store.consume('apr_x', claims.fingerprint, claims.expiresAt + 1)).toBe(false);
    expect(store.consume('apr_x', claims.fingerprint, claims.expiresAt)).toBe(true);
  });

  it('a token signed with another secret, by another session, is refused and answers nothing', async () => {
    const store = new InMemoryApprovalStore();
    const victim = policy().session({ approvals: store, approvalSecret: SECRET });
    const attacker = policy().session({ approvals: store, approvalSecret: `${SECRET}-attacker` });
    const request = await raise(victim, { amount: 5000 });
    const forged = signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: Date.parse(request.expiresAt), answer: 'approve' }, `${SECRET}-attacker`);
    expect(await victim.resolveApprovalToken(forged)).toMatchObject({ ok: false, problem: 'forged' });
    // The attacker's own session cannot answer the victim's request with it either: it is not its request.
    expect(await attacker.resolveApprovalToken(forged)).toMatchObject({ ok: false, problem: 'unknown' });
    await expect(attacker.approvalToken(request.id)).rejects.toThrow(/no approval request/);
    expect((await victim.getApproval(request.id))?.status).toBe('pending');
  });

  it('odd lengths and spellings are refused without throwing; a token has one spelling', async () => {
    const session = policy().session({ approvalSecret: SECRET });
    const request = await raise(session, { amount: 5 });
    const token = await session.approvalToken(request.id);
    const [prefix, payload, mac] = parts(token);
    const last = mac.at(-1)!;
    // The last base64url digit of a 32-byte MAC carries 2 unused bits: another digit with the same top bits decodes
    // to the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[(alphabet.indexOf(last) & ~3) | ((alphabet.indexOf(last) + 1) & 3)]!;
    const odd: unknown[] = [
      '',
      'apt1',
      'apt1..',
      `${prefix}.${payload}.`,
      `${prefix}.${payload}.${mac.slice(0, 10)}`,
      `${prefix}.${payload}.${mac}${mac}`,
      `${prefix}.${payload}.${mac}=`,
      `${prefix}.${payload}.${mac}!`,
      `${prefix}.${payload}.${mac.slice(0, -1)}${sibling}`,
      `${prefix}.${payload}.${Buffer.from(mac, 'base64url').toString('base64')}`,
      `${prefix}.${payload}.${mac}.x`,
      `${prefix}.${payload}=.${mac}`,
      `APT1.${payload}.${mac}`,
      `${prefix}.${payload}.${mac.replace(/./, 'é')}`,
      'x'.repeat(5000),
      42,
      null,
      { toString: () => token },
      [token],
    ];
    for (const value of odd) {
      const check = verifyApprovalToken(value, SECRET);
      expect(check.ok, String(value)).toBe(false);
      expect(await session.resolveApprovalToken(value as string), String(value)).toMatchObject({ ok: false });
    }
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    expect(verifyApprovalToken(token, SECRET)).toMatchObject({ ok: true });
  });
});

/** A store whose every answer comes after a random delay, as a remote one does. */
class SlowStore implements ApprovalStore {
  private readonly inner = new InMemoryApprovalStore();
  private wait = () => new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3)));
  async create(request: ApprovalRequest) {
    await this.wait();
    this.inner.create(request);
  }
  async get(id: string, now: number) {
    await this.wait();
    return this.inner.get(id, now);
  }
  async listPending(sessionId: string | undefined, now: number) {
    await this.wait();
    return this.inner.listPending(sessionId, now);
  }
  async resolve(id: string, resolution: ApprovalResolution, now: number) {
    await this.wait();
    return this.inner.resolve(id, resolution, now);
  }
  async consume(id: string, fingerprint: string, now: number) {
    await this.wait();
    return this.inner.consume(id, fingerprint, now);
  }
}

describe('one approval store shared by several sessions', () => {
  it("a session cannot answer, read or use another session's request", async () => {
    const store = new InMemoryApprovalStore();
    const victim = policy().session({ approvals: store });
    const other = policy().session({ approvals: store });
    const request = await raise(victim, { amount: 5000 });
    expect(await other.resolveApproval(request.id, { approved: true, by: 'mallory' })).toMatchObject({ ok: false, problem: 'unknown' });
    expect(await other.getApproval(request.id)).toBeUndefined();
    const used = await other.checkTool('pay', { input: { amount: 5000 }, approval: { requestId: request.id, approved: true } });
    expect(used).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_session' } });
    expect((await victim.getApproval(request.id))?.status).toBe('pending');
  });

  it('two answers at once: exactly one stands, and the agent follows the one that stands', async () => {
    for (let round = 0; round < 20; round++) {
      const store = new SlowStore();
      const session = policy().session({ approvals: store });
      const request = await raise(session, { amount: 5 });
      const [yes, no] = await Promise.all([
        session.resolveApproval(request.id, { approved: true, by: 'alice' }),
        session.resolveApproval(request.id, { approved: false, by: 'bob' }),
      ]);
      expect([yes.ok, no.ok].filter(Boolean)).toHaveLength(1);
      const stands = (await session.getApproval(request.id))!;
      expect(stands.resolution?.by).toBe(yes.ok ? 'alice' : 'bob');
      const decision = await session.checkTool('pay', { input: { amount: 5 }, approval: { requestId: request.id } });
      expect(decision.decision).toBe(yes.ok ? 'allow' : 'deny');
    }
  });

  it("a rejection racing the agent's own resume with an inline yes: the decision agrees with the answer that stands", async () => {
    for (let round = 0; round < 30; round++) {
      const store = new SlowStore();
      const session = policy().session({ approvals: store });
      const request = await raise(session, { amount: 5 });
      const [rejected, decision] = await Promise.all([
        session.resolveApproval(request.id, { approved: false, by: 'ops' }),
        session.checkTool('pay', { input: { amount: 5 }, approval: { requestId: request.id, approved: true, by: 'chat-user' } }),
      ]);
      const stands = (await session.getApproval(request.id))!;
      if (decision.decision === 'allow') {
        expect(rejected.ok).toBe(false);
        expect(stands.status).toBe('used');
        expect(stands.resolution).toMatchObject({ approved: true, by: 'chat-user' });
      } else {
        expect(decision).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected', requestId: request.id } });
        expect(rejected.ok).toBe(true);
        expect(stands.resolution).toMatchObject({ approved: false, by: 'ops' });
      }
      // Whatever happened, the approval is not left for a second execution.
      const again = await session.checkTool('pay', { input: { amount: 5 }, approval: { requestId: request.id } });
      expect(again.decision).not.toBe('allow');
    }
  });

  it('one approval used by two resumes at once through a slow store runs once', async () => {
    for (let round = 0; round < 20; round++) {
      const store = new SlowStore();
      const session = policy().session({ approvals: store });
      const request = await raise(session, { amount: 5 });
      await session.resolveApproval(request.id, { approved: true });
      const decisions = await Promise.all([1, 2, 3].map(() => session.checkTool('pay', { input: { amount: 5 }, approval: { requestId: request.id } })));
      expect(decisions.filter((d) => d.decision === 'allow')).toHaveLength(1);
    }
  });
});
