import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { signApprovalToken, verifyApprovalToken } from './approval-token.js';
import { InMemoryApprovalStore } from './approval-store.js';
import { ApprovalRequiredError } from './errors.js';
import { AgentPolicy } from './policy.js';
import { FileApprovalStore } from './test-support/file-approval-store.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const policy = () =>
  AgentPolicy.fromDict({
    budget: { max_spend: 10 },
    tools: { allow: ['send_email', 'search'] },
    approval: { require_for: [{ tool: 'send_email' }] },
  });

async function raise(session: ReturnType<ReturnType<typeof policy>['session']>, input: unknown) {
  const decision = await session.checkTool('send_email', { input });
  expect(decision.decision).toBe('require_approval');
  const request = decision.approvalRequest;
  if (!request) throw new Error('no approval request');
  return { decision, request };
}

describe('approval requests have identity', () => {
  it('a require_approval carries an unguessable request bound to the fingerprint, with an expiry', async () => {
    const session = policy().session();
    const { decision, request } = await raise(session, { to: 'ceo@example.com' });
    expect(request.id).toMatch(/^apr_[A-Za-z0-9_-]{22}$/);
    expect(request.fingerprint).toBe(decision.fingerprint);
    expect(Date.parse(request.expiresAt)).toBeGreaterThan(Date.now());
    const other = await raise(session, { to: 'cfo@example.com' });
    expect(other.request.id).not.toBe(request.id);
    // The same action again waits on the same open request.
    const again = await raise(session, { to: 'ceo@example.com' });
    expect(again.request.id).toBe(request.id);
    expect((await session.pendingApprovals()).map((r) => r.id).sort()).toEqual([request.id, other.request.id].sort());
  });

  it('the same action checked twice at once waits on one request, not two', async () => {
    // Two tool calls of one model turn that are the same call (a provider that repeats an id) are decided concurrently.
    const session = policy().session();
    const [a, b] = await Promise.all([raise(session, { to: 'ceo@example.com' }), raise(session, { to: 'ceo@example.com' })]);
    expect(b.request.id).toBe(a.request.id);
    expect((await session.pendingApprovals()).map((r) => r.id)).toEqual([a.request.id]);
  });

  it('an approval counts for exactly the action it was raised for, once', async () => {
    const session = policy().session();
    const { request } = await raise(session, { to: 'a@example.com' });
    expect(await session.resolveApproval(request.id, { approved: true, by: 'alice', reason: 'ok' })).toMatchObject({ ok: true, request: { status: 'approved' } });
    // Other input: not covered; recorded as an answer that did not count; a new request is raised for what it is.
    const other = await session.checkTool('send_email', { input: { to: 'attacker@evil.test' }, approval: { requestId: request.id } });
    expect(other).toMatchObject({ decision: 'require_approval', unusedAnswer: { requestId: request.id, problem: 'other_action' } });
    expect(other.approvalRequest?.id).not.toBe(request.id);
    // The right action: allowed, recorded with who and which request.
    const allowed = await session.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId: request.id } });
    expect(allowed).toMatchObject({ decision: 'allow', approved: true, approval: { via: 'request', by: 'alice', reason: 'ok', requestId: request.id } });
    // Replayed: the approval is used.
    const replay = await session.checkTool('send_email', { input: { to: 'a@example.com' }, approval: { requestId: request.id } });
    expect(replay).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'already_used' } });
    expect((await session.getApproval(request.id))?.status).toBe('used');
  });

  it('an answer for another request, an unknown id or another session never approves', async () => {
    const store = new InMemoryApprovalStore();
    const a = policy().session({ id: 'a', approvals: store });
    const b = policy().session({ id: 'b', approvals: store });
    const ra = await raise(a, { to: 'x' });
    const rb = await raise(b, { to: 'x' });
    // Session a cannot answer b's request, and an answer inline for b's request does not count in a.
    expect(await a.resolveApproval(rb.request.id, { approved: true })).toEqual({ ok: false, problem: 'unknown' });
    const cross = await a.checkTool('send_email', { input: { to: 'x' }, approval: { requestId: rb.request.id, approved: true } });
    expect(cross).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'other_session' } });
    expect((await b.getApproval(rb.request.id))?.status).toBe('pending');
    const unknown = await a.checkTool('send_email', { input: { to: 'x' }, approval: { requestId: 'apr_guessed', approved: true } });
    expect(unknown).toMatchObject({ decision: 'require_approval', unusedAnswer: { problem: 'unknown_request' } });
    expect((await a.getApproval(ra.request.id))?.status).toBe('pending');
  });

  it('an inline answer resolves its request; the first answer wins', async () => {
    const session = policy().session();
    const { request } = await raise(session, { to: 'x' });
    const no = await session.checkTool('send_email', { input: { to: 'x' }, approval: { requestId: request.id, approved: false, by: 'bob', reason: 'not today' } });
    expect(no).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'rejected', requestId: request.id } });
    expect(no.reason).toContain('rejected by bob: not today');
    // A later "yes" for the same request changes nothing.
    const yes = await session.checkTool('send_email', { input: { to: 'x' }, approval: { requestId: request.id, approved: true } });
    expect(yes).toMatchObject({ decision: 'deny', rule: { outcome: 'rejected' } });
    expect(await session.resolveApproval(request.id, { approved: true })).toMatchObject({ ok: false, problem: 'answered' });
  });

  it('an expired request is recorded as expired, never as a rejection', async () => {
    const session = policy().session({ approvalTtlMs: 1 });
    const { request } = await raise(session, { to: 'x' });
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await session.resolveApproval(request.id, { approved: true })).toMatchObject({ ok: false, problem: 'expired' });
    const late = await session.checkTool('send_email', { input: { to: 'x' }, approval: { requestId: request.id } });
    expect(late).toMatchObject({ decision: 'deny', rule: { section: 'approver', outcome: 'expired', requestId: request.id } });
    expect(late.reason).toContain('expired');
    expect(late.reason).not.toContain('rejected');
    expect(await session.pendingApprovals()).toHaveLength(0);
  });

  it('approved: true stays the application override, recorded as such', async () => {
    const session = policy().session();
    const decision = await session.checkTool('send_email', { input: { to: 'x' }, approved: true });
    expect(decision).toMatchObject({ decision: 'allow', approval: { via: 'caller' } });
  });

  it('two concurrent resumes with one approval: one allow, the other is not approved', async () => {
    const session = policy().session();
    const { request } = await raise(session, { to: 'x' });
    await session.resolveApproval(request.id, { approved: true, by: 'alice' });
    const runs = vi.fn(async () => 'sent');
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => session.runTool('send_email', { input: { to: 'x' }, approval: { requestId: request.id } }, runs)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(runs).toHaveBeenCalledTimes(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ApprovalRequiredError);
  });
});

describe('the session approver', () => {
  it('is given a frozen request; mutating it changes nothing recorded', async () => {
    const session = policy().session({
      approver: (request) => {
        expect(Object.isFrozen(request)).toBe(true);
        expect(Object.isFrozen(request.action)).toBe(true);
        expect(() => {
          (request.action as { name: string }).name = 'search';
        }).toThrow(TypeError);
        expect(() => {
          (request as { fingerprint: string }).fingerprint = 'x';
        }).toThrow(TypeError);
        return { approved: true, by: 'carol' };
      },
    });
    const decision = await session.checkTool('send_email', { input: { to: 'x' } });
    expect(decision).toMatchObject({ decision: 'allow', action: { name: 'send_email' }, approval: { via: 'approver', by: 'carol' } });
    expect(decision.approval?.requestId).toMatch(/^apr_/);
    expect((await session.getApproval(decision.approval?.requestId as string))?.status).toBe('used');
  });

  it('an answer given from elsewhere while the approver waits wins; the approver cannot overturn it', async () => {
    let later!: (answer: boolean) => void;
    let requestId = '';
    const session = policy().session({
      approver: (request) => {
        requestId = request.id;
        return new Promise<boolean>((resolve) => (later = resolve));
      },
    });
    const pending = session.checkTool('send_email', { input: { to: 'x' } });
    await vi.waitFor(() => expect(requestId).not.toBe(''));
    await session.resolveApproval(requestId, { approved: false, by: 'security' });
    later(true);
    expect(await pending).toMatchObject({ decision: 'deny', rule: { outcome: 'rejected' } });
  });
});

describe('signed approval tokens', () => {
  it('answer their request once; forged, expired, or for another action are refused', async () => {
    const session = policy().session({ approvalSecret: SECRET });
    const { request } = await raise(session, { to: 'x' });
    const token = await session.approvalToken(request.id);
    const forged = `${token.slice(0, -2)}${token.endsWith('AA') ? 'BB' : 'AA'}`;
    expect(await session.resolveApprovalToken(forged)).toMatchObject({ ok: false, problem: 'forged' });
    expect(verifyApprovalToken(token, `${SECRET}-other`)).toMatchObject({ ok: false, problem: 'forged' });
    const expired = signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: Date.now() - 1, answer: 'approve' }, SECRET);
    expect(await session.resolveApprovalToken(expired)).toMatchObject({ ok: false, problem: 'expired' });
    const otherAction = signApprovalToken({ requestId: request.id, fingerprint: '0'.repeat(64), expiresAt: Date.now() + 60_000, answer: 'approve' }, SECRET);
    expect(await session.resolveApprovalToken(otherAction)).toMatchObject({ ok: false, problem: 'other_action' });
    // Tampering with the payload (another request id) breaks the signature.
    const [prefix, , mac] = token.split('.');
    const payload = Buffer.from(JSON.stringify(['apr_other', request.fingerprint, Date.now() + 60_000, 'approve'])).toString('base64url');
    expect(await session.resolveApprovalToken(`${prefix}.${payload}.${mac}`)).toMatchObject({ ok: false, problem: 'forged' });
    expect(await session.resolveApprovalToken('not a token')).toMatchObject({ ok: false, problem: 'malformed' });
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    expect(await session.resolveApprovalToken(token, { by: 'alice' })).toMatchObject({ ok: true, request: { status: 'approved', resolution: { by: 'alice' } } });
    expect(await session.resolveApprovalToken(token, { by: 'mallory' })).toMatchObject({ ok: false, problem: 'answered' });
  });

  it('need a secret of at least 32 bytes', async () => {
    expect(() => signApprovalToken({ requestId: 'apr_x', fingerprint: 'f', expiresAt: 1, answer: 'approve' }, 'short')).toThrow(/32 bytes/);
    const session = policy().session();
    const { request } = await raise(session, { to: 'x' });
    await expect(session.approvalToken(request.id)).rejects.toThrow(/approvalSecret/);
  });
});

describe('answers that cannot be read', () => {
  it('resolveApproval reads the answer once; one that throws or is no object is a typed error, and the request stays pending', async () => {
    const session = policy().session();
    const { request } = await raise(session, { to: 'x' });
    const unreadable = new Proxy({}, { get: () => { throw new Error('trap'); } });
    await expect(session.resolveApproval(request.id, unreadable as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'resolveApproval cannot read its answer: trap' });
    await expect(session.resolveApproval(request.id, null as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await session.getApproval(request.id))?.status).toBe('pending');
    // Read once: what was checked (a boolean) is what is stored.
    let reads = 0;
    const flipping = { get approved() { return reads++ === 0 ? false : 'yes'; }, by: 'bob' };
    expect(await session.resolveApproval(request.id, flipping as never)).toMatchObject({ ok: true, request: { status: 'rejected', resolution: { approved: false, by: 'bob' } } });
    expect(reads).toBe(1);
  });

  it('a request id that is not a string names no request (and is never turned into text)', async () => {
    const session = policy().session({ approvalSecret: SECRET });
    const id = { toString: () => { throw new Error('toString'); } };
    expect(await session.getApproval(id as never)).toBeUndefined();
    expect(await session.resolveApproval(id as never, { approved: true })).toEqual({ ok: false, problem: 'unknown' });
    await expect(session.approvalToken(id as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('resolveApprovalToken takes null as no answer details', async () => {
    const session = policy().session({ approvalSecret: SECRET });
    const { request } = await raise(session, { to: 'x' });
    const token = await session.approvalToken(request.id);
    expect(await session.resolveApprovalToken(token, null as never)).toMatchObject({ ok: true, request: { status: 'approved', resolution: { by: 'approval-token' } } });
  });
});

describe('a pending approval across processes', () => {
  const coreDist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  const storeModule = fileURLToPath(new URL('./test-support/file-approval-store.ts', import.meta.url));
  const run = promisify(execFile);
  const child = async (script: string, args: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-child-'));
    const file = join(dir, 'child.mjs');
    writeFileSync(file, script);
    // Type stripping is on by default from Node 22.18; the flag turns it on in older 22.x.
    const { stdout } = await run(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', file, ...args], { timeout: 20_000 });
    return JSON.parse(stdout) as Record<string, unknown>;
  };
  const prelude = `
    const { AgentPolicy } = await import(${JSON.stringify(coreDist)});
    const { FileApprovalStore } = await import(${JSON.stringify(storeModule)});
    const [dir, secret, sessionId] = process.argv.slice(2);
    const policy = AgentPolicy.fromDict(${JSON.stringify({ budget: { max_spend: 10 }, tools: { allow: ['send_email', 'search'] }, approval: { require_for: [{ tool: 'send_email' }] } })});
    const session = policy.session({ id: sessionId, approvals: new FileApprovalStore(dir), approvalSecret: secret });
  `;

  it('is raised here, answered by token in a second process, and run exactly once after a restart', async () => {
    expect(existsSync(coreDist), 'build @agentpolicy/core first (pnpm build)').toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-'));
    const log = join(dir, 'sent.log');
    const agent = policy().session({ id: 'agent-1', approvals: new FileApprovalStore(dir), approvalSecret: SECRET });
    const input = { to: 'ceo@example.com', subject: 'Q3' };
    const first = await agent.checkTool('send_email', { input, idempotencyKey: 'call_0' });
    expect(first.decision).toBe('require_approval');
    const requestId = first.approvalRequest?.id as string;
    const token = await agent.approvalToken(requestId);
    const forged = signApprovalToken({ requestId, fingerprint: first.fingerprint, expiresAt: Date.now() + 60_000, answer: 'approve' }, `${SECRET}-guessed`);
    const expired = signApprovalToken({ requestId, fingerprint: first.fingerprint, expiresAt: Date.now() - 1000, answer: 'approve' }, SECRET);

    // A web handler in another process: lists what is pending, refuses the bad tokens, redeems the good one once.
    const approver = await child(
      `${prelude}
      const [token, forged, expired] = process.argv.slice(5);
      const pending = (await session.pendingApprovals()).map((r) => ({ id: r.id, tool: r.action.name, input: r.action.input }));
      const forgedResult = await session.resolveApprovalToken(forged, { by: 'mallory' });
      const expiredResult = await session.resolveApprovalToken(expired, { by: 'mallory' });
      const good = await session.resolveApprovalToken(token, { by: 'alice', reason: 'looks fine' });
      const again = await session.resolveApprovalToken(token, { by: 'mallory' });
      console.log(JSON.stringify({ pid: process.pid, pending, forged: forgedResult, expired: expiredResult, good: { ok: good.ok, status: good.request?.status }, again: { ok: again.ok, problem: again.problem } }));
      `,
      [dir, SECRET, 'agent-1', token, forged, expired],
    );
    expect(approver.pid).not.toBe(process.pid);
    expect(approver.pending).toEqual([{ id: requestId, tool: 'send_email', input }]);
    expect(approver.forged).toMatchObject({ ok: false, problem: 'forged' });
    expect(approver.expired).toMatchObject({ ok: false, problem: 'expired' });
    expect(approver.good).toEqual({ ok: true, status: 'approved' });
    expect(approver.again).toEqual({ ok: false, problem: 'answered' });

    // The agent restarts (a third process, fresh memory): it resumes with the request id and runs the tool once;
    // a replay of the same call, and the same approval for other input, do not run.
    const resumed = await child(
      `${prelude}
      const { appendFileSync } = await import('node:fs');
      const [log, requestId] = process.argv.slice(5);
      const send = (input) => session.runTool('send_email', { input, idempotencyKey: 'call_0', approval: { requestId } }, () => appendFileSync(log, JSON.stringify(input) + '\\n'));
      const outcome = async (input) => { try { await send(input); return 'ran'; } catch (error) { return error.code; } };
      const results = [await outcome(${JSON.stringify(input)}), await outcome(${JSON.stringify(input)}), await outcome({ to: 'attacker@evil.test', subject: 'Q3' })];
      console.log(JSON.stringify({ results, report: session.report().decisions.map((d) => [d.decision, d.approval?.via ?? null, d.unusedAnswer?.problem ?? null]) }));
      `,
      [dir, SECRET, 'agent-1', log, requestId],
    );
    expect(resumed.results).toEqual(['ran', 'APPROVAL_REQUIRED', 'APPROVAL_REQUIRED']);
    expect(resumed.report).toEqual([
      ['allow', 'request', null],
      ['require_approval', null, 'already_used'],
      ['require_approval', null, 'other_action'],
    ]);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([JSON.stringify(input)]);
    expect((await agent.getApproval(requestId))?.status).toBe('used');
  });

  it('two processes resuming with the same approval at once: the tool runs exactly once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-'));
    const log = join(dir, 'sent.log');
    const agent = policy().session({ id: 'agent-2', approvals: new FileApprovalStore(dir), approvalSecret: SECRET });
    const input = { to: 'all@example.com' };
    const requestId = (await agent.checkTool('send_email', { input })).approvalRequest?.id as string;
    expect(await agent.resolveApproval(requestId, { approved: true, by: 'alice' })).toMatchObject({ ok: true });
    const resume = `${prelude}
      const { appendFileSync } = await import('node:fs');
      const [log, requestId] = process.argv.slice(5);
      let result;
      try {
        await session.runTool('send_email', { input: ${JSON.stringify(input)}, approval: { requestId } }, () => appendFileSync(log, process.pid + '\\n'));
        result = 'ran';
      } catch (error) {
        result = error.code;
      }
      console.log(JSON.stringify({ result }));
    `;
    const results = await Promise.all([1, 2, 3].map(() => child(resume, [dir, SECRET, 'agent-2', log, requestId])));
    expect(results.map((r) => r.result).sort()).toEqual(['APPROVAL_REQUIRED', 'APPROVAL_REQUIRED', 'ran']);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});

describe('inlineApprovals: false (only approvals stored through the approval store count)', () => {
  it('an approval given with the check leaves the request pending; one given through the store then counts, once', async () => {
    const store = new InMemoryApprovalStore();
    const session = policy().session({ approvals: store, inlineApprovals: false });
    const ran: string[] = [];
    const { request } = await raise(session, { to: 'ceo@example.com' });
    // A chat client (an AI SDK approval response, a LangChain resume value) approves inline: not used.
    const inline = await session.checkTool('send_email', { input: { to: 'ceo@example.com' }, approval: { requestId: request.id, approved: true, by: 'chat-user' } });
    expect(inline).toMatchObject({ decision: 'require_approval', approvalRequest: { id: request.id }, unusedAnswer: { requestId: request.id, problem: 'pending' } });
    expect((await store.get(request.id, Date.now()))?.status).toBe('pending');
    expect(await session.runTool('send_email', { input: { to: 'ceo@example.com' }, approval: { requestId: request.id, approved: true } }, () => ran.push('sent')).catch((error: unknown) => error)).toBeInstanceOf(ApprovalRequiredError);
    expect(ran).toEqual([]);
    // The approvals handler (here: resolveApproval, as the handler does through the store) approves it.
    expect((await session.resolveApproval(request.id, { approved: true, by: 'ops' })).ok).toBe(true);
    const approved = await session.checkTool('send_email', { input: { to: 'ceo@example.com' }, approval: { requestId: request.id, approved: true } });
    expect(approved).toMatchObject({ decision: 'allow', approval: { via: 'request', requestId: request.id, by: 'ops' } });
    const again = await session.checkTool('send_email', { input: { to: 'ceo@example.com' }, approval: { requestId: request.id, approved: true } });
    expect(again.decision).toBe('require_approval');
  });

  it('a rejection given with the check still denies and answers the request', async () => {
    const store = new InMemoryApprovalStore();
    const session = policy().session({ approvals: store, inlineApprovals: false });
    const { request } = await raise(session, { to: 'ceo@example.com' });
    const rejected = await session.checkTool('send_email', { input: { to: 'ceo@example.com' }, approval: { requestId: request.id, approved: false, by: 'chat-user' } });
    expect(rejected.decision).toBe('deny');
    expect((await store.get(request.id, Date.now()))?.status).toBe('rejected');
  });

  it('is validated', () => {
    expect(() => policy().session({ inlineApprovals: 'no' as unknown as boolean })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
