/**
 * A seeded, model-based fuzz of the approvals handler over real HTTP: two instances of the handler (as two processes
 * of a web app run it), each on Node's server at 127.0.0.1 (a free port) under /approvals; two agent sessions and a
 * session with a waiting approver sharing one store; and a clock the test moves (the handler's `now`, and a store
 * that reads the same clock whatever time its caller passes, and that can forget a request as a bounded store does).
 *
 * Each run sends a random sequence: requests raised and re-checked with their answers (`runTool` with
 * `approval: { requestId }`, again after, or twice at once), the page and the JSON API read by people with and
 * without access, answers by form (with a fresh, missing, foreign, stale, tampered form token), by JSON and by signed
 * link (valid, expired, forged, for another request or action, replayed), cross-site posts, wrong methods and media
 * types, oversized, malformed, doubled and broken-off bodies, odd paths and ids, markup in filters and fields,
 * answers given at once through both instances, and the clock moving past form tokens and requests.
 *
 * After every step the store is compared with a small model: a request changes only through a valid, authorised
 * answer, the first answer wins and records who gave it, when and why; an approval runs its own action exactly once;
 * a rejection never allows; an expired request is denied as expired and a lost one as an error, never as a rejection;
 * every response has the status the model expects, the security headers, no stack or secret; pages show tool input
 * escaped; nothing is reported to `onError` and nothing rejects unhandled. A path the runs never reach fails the test.
 *
 * Seeded: a failure prints its seed and path; re-run it with FUZZ_SEED=<seed> (and FUZZ_PATH=<path>), or raise the
 * number of runs with FUZZ_RUNS.
 */
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import {
  AgentPolicy,
  AgentPolicyError,
  InMemoryApprovalStore,
  signApprovalToken,
  type ApprovalResolution,
  type ApprovalState,
  type ApprovalStore,
  type Decision,
  type PolicySession,
  type ResolveResult,
} from '@agentpolicy/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApprovalsHandler, type ApprovalsHandler } from './approvals-handler.js';
import { createWaitingApprover } from './create-waiting-approver.js';
import { toNodeHandler } from './node-handler.js';

const SEED = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : 20_261_204;
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 1200);
const fuzzOptions = { seed: SEED, numRuns: RUNS, ...(process.env['FUZZ_PATH'] ? { path: process.env['FUZZ_PATH'] } : {}), endOnFailure: false };

const SECRET = 'a-fuzz-secret-for-the-approvals-handler-32+bytes';
const OTHER_SECRET = 'another-secret-nobody-configured-here-32+bytes!';
const MINUTE = 60_000;
const TTL = 60 * MINUTE;
const CSRF_AGE = 90 * MINUTE;
const MAX_BODY = 4096;
const MAX_REASON = 1000;

/** Tool inputs: plain, markup meant to run or break out of the page, look-alike and direction-changing letters. */
const INPUTS: readonly Record<string, unknown>[] = [
  { to: 'alice@example.com', amount: 5 },
  { to: '<script>alert(1)</script>', note: '"><img src=x onerror=alert(1)>' },
  { to: 'p\u0430ypal', memo: 'pay \u202egnp.exe' },
  { to: 'x', memo: "</pre><form action=//evil.example><button>go</button></form>'" },
];
/** What must never appear raw in a page (the inputs' markup). */
const RAW_MARKUP = ['<script', '<img', '<form action', '<button>go', '</pre><'];

type Principal = 'alice' | 'bob' | 'reader' | 'guest' | 'nobody';
const PRINCIPALS: readonly Principal[] = ['alice', 'bob', 'reader', 'guest', 'nobody'];
const ANSWERERS = new Set<Principal>(['alice', 'bob']);
const READERS = new Set<Principal>(['alice', 'bob', 'reader']);
const SESSIONS = ['tenant-a', 'tenant-b'] as const;

type Status = 'pending' | 'approved' | 'rejected' | 'used';
interface ModelRequest {
  id: string;
  session: string;
  input: number;
  fingerprint: string;
  expiresAt: number;
  status: Status;
  resolution?: { approved: boolean; by: string; reason?: string; at: string };
  executions: number;
  waiter?: Promise<WaitResult>;
  waited?: boolean;
  /** The store forgot it: it answers as unknown everywhere. */
  forgotten?: boolean;
}
type WaitResult = { ran: true } | { ran: false; error: unknown };

interface FormToken {
  token: string;
  principal: Principal;
  nonce: string;
  issuedAt: number;
}

// ---- steps ---------------------------------------------------------------------------------------------------------

type Target = { kind: 'request'; index: number } | { kind: 'unknown' } | { kind: 'lookalike'; index: number };
type Origin = 'same' | 'none' | 'cross' | 'fetch-cross';
type PathShape = 'plain' | 'query' | 'trailing-slash' | 'encoded-slash' | 'dot-segment' | 'double-slash';
type Csrf = 'fresh' | 'none' | 'no-cookie' | 'other-principal' | 'other-cookie' | 'garbage' | 'tampered';
type FormBody = 'ok' | 'duplicate' | 'wrong-type' | 'oversized' | 'bad-answer' | 'invalid-utf8' | 'no-answer';
type JsonBody = 'ok' | 'duplicate' | 'wrong-type' | 'oversized' | 'bad-answer' | 'malformed' | 'non-string' | 'array';
type Reason = 'none' | 'plain' | 'markup' | 'blank' | 'too-long';
/** Which list a page shows (`?session=`), and which one a form says it came from (its `session` field). */
type Listed = 'all' | 'tenant-a' | 'markup';
const LISTED: Record<Exclude<Listed, 'all'>, string> = { 'tenant-a': 'tenant-a', markup: '"><script>alert(1)</script>\r\nLocation: //evil.example' };
type LinkToken = 'approve' | 'reject' | 'expired' | 'forged' | 'other-request' | 'other-action' | 'unknown-request' | 'other-secret' | 'garbage' | 'replay';

type Step =
  | { kind: 'raise'; session: number; input: number }
  | { kind: 'recheck'; session: number; request: number; input: number | 'own'; again: 'no' | 'after' | 'at-once' }
  | { kind: 'wait'; input: number }
  | { kind: 'clock'; by: 'minute' | 'past-form-tokens' | 'past-requests'; pageOpen: boolean; answerAfter: number | undefined }
  | { kind: 'page'; principal: Principal; session: Listed; cookie: boolean }
  | { kind: 'list'; principal: Principal; session: boolean }
  | { kind: 'read'; principal: Principal; target: Target }
  | { kind: 'form'; principal: Principal; target: Target; answer: 'approve' | 'reject'; csrf: Csrf; body: FormBody; reason: Reason; origin: Origin; path: PathShape; reload: boolean; listed: Listed; instance: number }
  | { kind: 'json'; principal: Principal; target: Target; answer: 'approve' | 'reject'; body: JsonBody; reason: Reason; origin: Origin; path: PathShape; instance: number }
  | { kind: 'abort'; request: number; via: 'form' | 'json' }
  | { kind: 'forget'; request: number }
  | { kind: 'link-view'; request: number; token: LinkToken; other: number }
  | { kind: 'link'; via: 'form' | 'json'; request: number; token: LinkToken; other: number; reason: Reason; origin: Origin }
  | { kind: 'method'; route: number; method: string; request: number }
  | { kind: 'race'; request: number; channels: readonly number[] };

const index = fc.nat({ max: 7 });
const principal = fc.constantFrom(...PRINCIPALS);
const answerer = fc.constantFrom<Principal>('alice', 'alice', 'bob', 'reader', 'guest', 'nobody');
const target: fc.Arbitrary<Target> = fc.oneof(
  { weight: 8, arbitrary: index.map((i) => ({ kind: 'request' as const, index: i })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'unknown' as const }) },
  { weight: 1, arbitrary: index.map((i) => ({ kind: 'lookalike' as const, index: i })) },
);
const origin = fc.oneof({ weight: 8, arbitrary: fc.constantFrom<Origin>('same', 'none') }, { weight: 1, arbitrary: fc.constantFrom<Origin>('cross', 'fetch-cross') });
const pathShape = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom<PathShape>('plain', 'query') },
  { weight: 2, arbitrary: fc.constantFrom<PathShape>('trailing-slash', 'encoded-slash', 'dot-segment', 'double-slash') },
);
const reason = fc.constantFrom<Reason>('none', 'plain', 'plain', 'markup', 'blank', 'too-long');
const linkToken = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<LinkToken>('approve', 'reject', 'replay') },
  { weight: 4, arbitrary: fc.constantFrom<LinkToken>('expired', 'forged', 'other-request', 'other-action', 'unknown-request', 'other-secret', 'garbage') },
);

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('raise' as const), session: fc.nat({ max: 1 }), input: fc.nat({ max: INPUTS.length - 1 }) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('recheck' as const),
      session: fc.nat({ max: 1 }),
      // -1: the request answered last (an agent resumes once its answer is in).
      request: fc.oneof(index, fc.constant(-1)),
      input: fc.oneof({ weight: 4, arbitrary: fc.constant('own' as const) }, { weight: 1, arbitrary: fc.nat({ max: INPUTS.length - 1 }) }),
      // The same check again: after this one (a replay), or at the same time (two tool calls of one turn).
      again: fc.constantFrom('no' as const, 'no' as const, 'after' as const, 'at-once' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), input: fc.nat({ max: INPUTS.length - 1 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('clock' as const),
      by: fc.constantFrom('minute' as const, 'minute' as const, 'past-form-tokens' as const, 'past-requests' as const),
      // Someone opened the page just before, and answers one request from it once the time has passed.
      pageOpen: fc.boolean(),
      answerAfter: fc.option(index, { nil: undefined }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('page' as const), principal, session: fc.constantFrom<Listed>('all', 'all', 'tenant-a', 'markup'), cookie: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('list' as const), principal, session: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), principal, target }) },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('form' as const),
      principal: answerer,
      target,
      answer: fc.constantFrom('approve' as const, 'reject' as const),
      csrf: fc.oneof({ weight: 5, arbitrary: fc.constant<Csrf>('fresh') }, { weight: 4, arbitrary: fc.constantFrom<Csrf>('none', 'no-cookie', 'other-principal', 'other-cookie', 'garbage', 'tampered') }),
      body: fc.oneof({ weight: 8, arbitrary: fc.constant<FormBody>('ok') }, { weight: 2, arbitrary: fc.constantFrom<FormBody>('duplicate', 'wrong-type', 'oversized', 'bad-answer', 'invalid-utf8', 'no-answer') }),
      reason,
      origin,
      path: pathShape,
      // Load the page first (as a person does before answering on it).
      reload: fc.boolean(),
      listed: fc.constantFrom<Listed>('all', 'all', 'tenant-a', 'markup'),
      // Which instance of the handler the form is posted to (the page is always loaded from the first).
      instance: fc.nat({ max: 1 }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('json' as const),
      principal: answerer,
      target,
      answer: fc.constantFrom('approve' as const, 'reject' as const),
      body: fc.oneof({ weight: 8, arbitrary: fc.constant<JsonBody>('ok') }, { weight: 2, arbitrary: fc.constantFrom<JsonBody>('duplicate', 'wrong-type', 'oversized', 'bad-answer', 'malformed', 'non-string', 'array') }),
      reason,
      origin,
      path: pathShape,
      instance: fc.nat({ max: 1 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('link-view' as const), request: index, token: linkToken, other: index }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('link' as const), via: fc.constantFrom('form' as const, 'json' as const), request: index, token: linkToken, other: index, reason, origin }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('method' as const), route: fc.nat({ max: 7 }), method: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'POST'), request: index }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('abort' as const), request: index, via: fc.constantFrom('form' as const, 'json' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('forget' as const), request: index }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('race' as const), request: index, channels: fc.uniqueArray(fc.nat({ max: 5 }), { minLength: 2, maxLength: 4 }) }) },
);

// ---- the handler on a real server ---------------------------------------------------------------------------------

/** A store that judges time by the test's clock, whatever time its caller passes (core's sessions pass Date.now). */
/**
 * A store that judges time by the test's clock, whatever time its caller passes (core's sessions pass Date.now), and
 * that can forget a request (as a bounded store does, or a shared store whose key was evicted).
 */
class ClockedStore implements ApprovalStore {
  readonly forgotten = new Set<string>();
  constructor(
    readonly inner: InMemoryApprovalStore,
    private readonly clock: () => number,
  ) {}
  create(request: Parameters<ApprovalStore['create']>[0]): void {
    this.inner.create(request);
  }
  get(id: string): ApprovalState | undefined {
    return this.forgotten.has(id) ? undefined : this.inner.get(id, this.clock());
  }
  listPending(sessionId: string | undefined): readonly ApprovalState[] {
    return this.inner.listPending(sessionId, this.clock()).filter((state) => !this.forgotten.has(state.id));
  }
  resolve(id: string, resolution: ApprovalResolution): ResolveResult {
    return this.forgotten.has(id) ? { ok: false, problem: 'unknown' } : this.inner.resolve(id, resolution, this.clock());
  }
  consume(id: string, fingerprint: string): boolean {
    return !this.forgotten.has(id) && this.inner.consume(id, fingerprint, this.clock());
  }
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 });
// Two instances of the handler (as two processes of a web app would run), each on its own server, one store.
const servers: Server[] = [];
const ports: number[] = [];
const origins: string[] = [];
const closed: ApprovalsHandler = async () => new Response(null, { status: 503 });
let current: ApprovalsHandler[] = [closed, closed];
const reached = new Map<string, number>();
const reach = (path: string) => void reached.set(path, (reached.get(path) ?? 0) + 1);
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  for (const instance of [0, 1]) {
    const server = createServer(toNodeHandler((request) => (current[instance] as ApprovalsHandler)(request)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    ports.push((server.address() as AddressInfo).port);
    origins.push(`http://127.0.0.1:${ports[instance]}`);
  }
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  agent.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

/** Sends the path as written (no client normalising `..` or `%2e`), reads the whole reply and checks it. */
async function send(method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer, instance = 0): Promise<Reply> {
  const reply = await exchange(ports[instance] as number, method, path, headers, body);
  checkReply(reply);
  return reply;
}

function exchange(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const request = httpRequest(
      { host: '127.0.0.1', port, method, path, agent, headers: { ...headers, ...(payload ? { 'content-length': String(payload.length) } : {}) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(payload);
  });
}

// ---- one run --------------------------------------------------------------------------------------------------------

class Run {
  // The test's clock starts at the real time (core's sessions stamp requests with it) and only the test moves it.
  clock = Date.now();
  readonly inner = new InMemoryApprovalStore();
  readonly store = new ClockedStore(this.inner, () => this.clock);
  readonly requests: ModelRequest[] = [];
  /** The open request of each (session, input) raised without an approver, as core's session keeps it. */
  readonly open = new Map<string, string>();
  readonly fingerprints = new Map<number, string>();
  readonly forms = new Map<Principal, FormToken>();
  readonly cookies = new Map<Principal, string>();
  readonly sessions: PolicySession[];
  readonly waiting: PolicySession;
  lastLink: string | undefined;
  /** What the handlers reported to `onError`: nothing fails here (no store is down, the hook never throws). */
  readonly errors: unknown[] = [];
  /** The request answered last. */
  answered: ModelRequest | undefined;
  /** Each agent session's last recorded decision (its audit trail's newest entry). */
  readonly decided: (Decision | undefined)[] = [];
  private raisedByWaiter: ((id: string) => void) | undefined;

  constructor() {
    const policy = AgentPolicy.fromDict({ tools: { allow: ['transfer'] }, approval: { require_for: [{ tool: 'transfer' }] } });
    this.sessions = SESSIONS.map((id, i) =>
      policy.session({ id, approvals: this.store, approvalSecret: SECRET, approvalTtlMs: TTL, onDecision: (decision) => void (this.decided[i] = decision) }),
    );
    this.waiting = policy.session({
      id: 'tenant-c',
      approvals: this.store,
      approvalSecret: SECRET,
      approvalTimeoutMs: TTL,
      approver: createWaitingApprover({ store: this.store, intervalMs: 10, onRequest: (request) => this.raisedByWaiter?.(request.id) }),
    });
    const handler = () => createApprovalsHandler({
      store: this.store,
      secret: SECRET,
      basePath: '/approvals',
      maxBodyBytes: MAX_BODY,
      maxReasonLength: MAX_REASON,
      csrfMaxAgeMs: CSRF_AGE,
      now: () => this.clock,
      onError: (error) => void this.errors.push(error),
      authorize: (request, access) => {
        if (access.kind === 'link') return { id: 'link' };
        const who = /^Bearer (\w+)$/.exec(request.headers.get('authorization') ?? '')?.[1];
        if (who === 'guest') return new Response('sign in first', { status: 401, headers: { 'www-authenticate': 'Bearer' } });
        if (who === 'alice' || who === 'bob') return { id: who };
        if (who === 'reader' && (access.kind === 'list' || access.kind === 'read')) return { id: who };
        return null;
      },
    });
    current = [handler(), handler()];
  }

  // ---- the model's reading of time ----

  statusOf(request: ModelRequest): Status | 'expired' | 'forgotten' {
    if (request.forgotten) return 'forgotten';
    return (request.status === 'pending' || request.status === 'approved') && this.clock > request.expiresAt ? 'expired' : request.status;
  }

  pick(index: number): ModelRequest | undefined {
    return this.requests.length === 0 ? undefined : this.requests[index % this.requests.length];
  }

  idOf(target: Target): { id: string; request: ModelRequest | undefined; valid: boolean } {
    const request = target.kind === 'unknown' ? undefined : this.pick(target.index);
    if (target.kind === 'request' && request) return { id: request.id, request: request.forgotten ? undefined : request, valid: true };
    if (target.kind === 'lookalike' && request) {
      // A full-width letter in place of an ASCII one: not an id shape the handler reads.
      const id = request.id.replace(/[a-z]/, (c) => String.fromCodePoint((c.codePointAt(0) as number) - 0x61 + 0xff41));
      return { id: encodeURIComponent(id), request: undefined, valid: id === request.id };
    }
    return { id: 'apr_AAAAAAAAAAAAAAAAAAAAAA', request: undefined, valid: true };
  }

  // ---- agent side ----

  /** What core's session does for a check without a usable answer: the open request of this action, or a new one. */
  expectRaise(session: number, input: number, decision: Decision): void {
    expect(decision.decision).toBe('require_approval');
    const id = decision.approvalRequest?.id as string;
    const key = `${session}:${input}`;
    const openId = this.open.get(key);
    const open = openId === undefined ? undefined : this.requests.find((r) => r.id === openId);
    if (open !== undefined && this.statusOf(open) === 'pending') {
      expect(id, 'the open request of the same action is the one to answer').toBe(open.id);
      return;
    }
    expect(this.requests.some((r) => r.id === id), 'a new request').toBe(false);
    const fingerprint = decision.fingerprint;
    const known = this.fingerprints.get(input);
    if (known !== undefined) expect(fingerprint).toBe(known);
    this.fingerprints.set(input, fingerprint);
    this.requests.push({ id, session: SESSIONS[session] as string, input, fingerprint, expiresAt: Date.parse(decision.approvalRequest?.expiresAt as string), status: 'pending', executions: 0 });
    this.open.set(key, id);
  }

  async runTool(session: number, input: number, approval?: { requestId: string }): Promise<{ decision: Decision; ran: boolean; ranFor?: string }> {
    let ranFor: string | undefined;
    let decision: Decision | undefined;
    try {
      await this.sessions[session]?.runTool('transfer', { input: INPUTS[input], ...(approval ? { approval } : {}) }, () => {
        ranFor = 'ran';
      });
    } catch (error) {
      if (!AgentPolicyError.isInstance(error)) throw error;
      decision = (error as { decision?: Decision }).decision;
      if (decision === undefined) throw error;
      expect(ranFor).toBeUndefined();
      return { decision, ran: false };
    }
    decision = this.decided[session];
    if (decision === undefined) throw new Error('no decision recorded for the run');
    return { decision, ran: ranFor !== undefined, ...(decision.approval?.requestId ? { ranFor: decision.approval.requestId } : {}) };
  }

  async raise(step: Extract<Step, { kind: 'raise' }>): Promise<void> {
    const { decision, ran } = await this.runTool(step.session, step.input);
    expect(ran, 'an action that needs approval never runs unanswered').toBe(false);
    this.expectRaise(step.session, step.input, decision);
    reach('raise');
  }

  async recheck(step: Extract<Step, { kind: 'recheck' }>): Promise<void> {
    const request = step.request === -1 ? (this.answered ?? this.pick(0)) : this.pick(step.request);
    if (request === undefined || request.session === 'tenant-c') return this.raise({ kind: 'raise', session: step.session, input: step.input === 'own' ? 0 : step.input });
    const input = step.input === 'own' ? request.input : step.input;
    const session = SESSIONS[step.session] as string;
    if (step.again === 'at-once' && request.session === session && request.input === input && this.statusOf(request) === 'approved') {
      // Two checks with one approval at once: exactly one runs, the other is refused as used and asks again.
      const both = await Promise.all([this.runTool(step.session, input, { requestId: request.id }), this.runTool(step.session, input, { requestId: request.id })]);
      expect(both.filter((one) => one.ran).length, 'one approval, one execution').toBe(1);
      const refused = both.find((one) => !one.ran) as { decision: Decision };
      expect(refused.decision.unusedAnswer?.problem).toBe('already_used');
      request.status = 'used';
      request.executions++;
      this.expectRaise(step.session, input, refused.decision);
      reach('recheck: one approval used at once by two checks');
      return;
    }
    await this.recheckOnce(step, request, input, session);
    if (step.again !== 'no') await this.recheckOnce(step, request, input, session);
  }

  async recheckOnce(step: Extract<Step, { kind: 'recheck' }>, request: ModelRequest, input: number, session: string): Promise<void> {
    const { decision, ran } = await this.runTool(step.session, input, { requestId: request.id });
    const status = this.statusOf(request);
    if (status === 'forgotten') {
      expect(ran, 'an answer the store no longer has allows nothing').toBe(false);
      expect(decision.unusedAnswer?.problem).toBe('unknown_request');
      this.expectRaise(step.session, input, decision);
      reach('recheck: forgotten request');
      return;
    }
    if (request.session !== session || request.input !== input) {
      expect(ran, 'an answer for another session or action allows nothing').toBe(false);
      expect(decision.unusedAnswer?.problem).toBe(request.session !== session ? 'other_session' : 'other_action');
      this.expectRaise(step.session, input, decision);
      reach(request.session !== session ? 'recheck: other session' : 'recheck: other action');
      return;
    }
    switch (status) {
      case 'pending':
        expect(ran).toBe(false);
        expect(decision).toMatchObject({ decision: 'require_approval', approvalRequest: { id: request.id } });
        reach('recheck: still pending');
        return;
      case 'approved': {
        expect(ran, 'an approval runs its action').toBe(true);
        const by = request.resolution?.by as string;
        expect(decision).toMatchObject({ decision: 'allow', approved: true, approval: { via: 'request', requestId: request.id, by } });
        expect(decision.approval?.reason).toBe(request.resolution?.reason);
        expect(decision.reason).toContain(`approved by ${by}`);
        request.status = 'used';
        request.executions++;
        reach('recheck: approved runs once');
        return;
      }
      case 'rejected':
        expect(ran, 'a rejection never allows').toBe(false);
        expect(decision.decision).toBe('deny');
        expect(decision.rule).toMatchObject({ section: 'approver', outcome: 'rejected', requestId: request.id });
        expect(decision.reason).toContain(`rejected by ${request.resolution?.by}`);
        reach('recheck: rejected denies');
        return;
      case 'expired':
        expect(ran, 'an expired request allows nothing').toBe(false);
        expect(decision.decision).toBe('deny');
        expect(decision.rule, 'expired is recorded as expired, not as a rejection').toMatchObject({ section: 'approver', outcome: 'expired', requestId: request.id });
        reach('recheck: expired denies as expired');
        return;
      case 'used':
        expect(ran, 'an approval runs one execution only').toBe(false);
        expect(decision.unusedAnswer?.problem).toBe('already_used');
        this.expectRaise(step.session, input, decision);
        reach('recheck: used approval refused');
        return;
    }
  }

  async wait(step: Extract<Step, { kind: 'wait' }>): Promise<void> {
    const raised = new Promise<string>((resolve) => (this.raisedByWaiter = resolve));
    let ran = false;
    const waiter: Promise<WaitResult> = this.waiting
      .runTool('transfer', { input: INPUTS[step.input] }, () => {
        ran = true;
      })
      .then(
        () => ({ ran }) as WaitResult,
        (error: unknown) => ({ ran: false, error }),
      );
    const id = await Promise.race([raised, waiter.then((result) => Promise.reject(new Error(`the waiting run ended before raising: ${String((result as { error?: unknown }).error)}`)))]);
    const state = this.inner.get(id, this.clock) as ApprovalState;
    this.requests.push({ id, session: 'tenant-c', input: step.input, fingerprint: state.fingerprint, expiresAt: Date.parse(state.expiresAt), status: 'pending', executions: 0, waiter });
    reach('wait: raised');
  }

  /** A waiting run whose request was answered or expired ends as the model says. */
  async settleWaiters(): Promise<void> {
    for (const request of this.requests) {
      if (request.waiter === undefined || request.waited) continue;
      const status = this.statusOf(request);
      if (status === 'pending') continue;
      request.waited = true;
      const result = await Promise.race([request.waiter, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 5_000))]);
      expect(result, 'the waiting run ends once its request is answered').not.toBe('late');
      const ended = result as WaitResult;
      if (status === 'approved') {
        expect(ended.ran, 'an approval the run waited for runs it').toBe(true);
        request.status = 'used';
        request.executions++;
        reach('wait: approved runs');
      } else {
        expect(ended.ran).toBe(false);
        const decision = (ended as { error: { decision?: Decision } }).error.decision;
        if (status === 'forgotten') {
          expect(decision?.rule, 'a request the store forgot was rejected by no one').toMatchObject({ section: 'approver', outcome: 'error' });
          expect(decision?.reason).toContain(request.id);
          reach('wait: forgotten request denied as an error');
        } else if (status === 'expired') {
          expect(decision?.rule, 'expired is recorded as expired, not as a rejection').toMatchObject({ outcome: 'expired' });
          reach('wait: expired denies as expired');
        } else {
          expect(decision?.rule).toMatchObject({ outcome: 'rejected' });
          expect(decision?.reason).toContain(`rejected by ${request.resolution?.by}`);
          reach('wait: rejected denies');
        }
      }
    }
  }

  // ---- reading ----

  pendingIds(session?: string): string[] {
    return this.requests.filter((r) => this.statusOf(r) === 'pending' && (session === undefined || r.session === session)).map((r) => r.id).sort();
  }

  auth(who: Principal): Record<string, string> {
    return who === 'nobody' ? {} : { authorization: `Bearer ${who}` };
  }

  refused(reply: Reply, who: Principal): void {
    expect(reply.status).toBe(who === 'guest' ? 401 : 403);
    if (who === 'guest') expect(reply.headers['www-authenticate']).toBe('Bearer');
  }

  async page(step: Extract<Step, { kind: 'page' }>): Promise<void> {
    const session = step.session === 'all' ? undefined : LISTED[step.session];
    const cookie = step.cookie ? this.cookies.get(step.principal) : undefined;
    const reply = await send('GET', `/approvals/${session !== undefined ? `?session=${encodeURIComponent(session)}` : ''}`, { ...this.auth(step.principal), ...(cookie ? { cookie: `agentpolicy_approvals_csrf=${cookie}` } : {}) });
    if (!READERS.has(step.principal)) return this.refused(reply, step.principal);
    expect(reply.status).toBe(200);
    const shown = [...reply.body.matchAll(/<article data-request-id="([^"]+)"/g)].map((m) => m[1] as string).sort();
    expect(shown, 'the page lists exactly the pending requests').toEqual(this.pendingIds(session));
    const token = /name="csrf" value="([^"]+)"/.exec(reply.body)?.[1];
    const setCookie = reply.headers['set-cookie']?.[0];
    if (cookie !== undefined) expect(setCookie, 'a valid cookie is kept').toBeUndefined();
    const nonce = cookie ?? /agentpolicy_approvals_csrf=([^;]+)/.exec(setCookie ?? '')?.[1];
    expect(nonce).toBeDefined();
    if (setCookie !== undefined) expect(setCookie).toMatch(/HttpOnly; SameSite=Strict/);
    this.cookies.set(step.principal, nonce as string);
    if (token !== undefined) {
      this.forms.set(step.principal, { token, principal: step.principal, nonce: nonce as string, issuedAt: this.clock });
      reach('page: form token');
    }
    if (shown.some((id) => (this.requests.find((r) => r.id === id)?.input ?? 0) > 0)) reach('page: markup input shown escaped');
  }

  async list(step: Extract<Step, { kind: 'list' }>): Promise<void> {
    const session = step.session ? 'tenant-b' : undefined;
    const reply = await send('GET', `/approvals/api/requests${session ? `?session=${session}` : ''}`, this.auth(step.principal));
    if (!READERS.has(step.principal)) return this.refused(reply, step.principal);
    expect(reply.status).toBe(200);
    const listed = (JSON.parse(reply.body) as { requests: ApprovalState[] }).requests.map((r) => r.id).sort();
    expect(listed).toEqual(this.pendingIds(session));
    reach('list');
  }

  async read(step: Extract<Step, { kind: 'read' }>): Promise<void> {
    const { id, request, valid } = this.idOf(step.target);
    const reply = await send('GET', `/approvals/api/requests/${id}`, this.auth(step.principal));
    if (!valid) return void expect(reply.status).toBe(404);
    if (!READERS.has(step.principal)) return this.refused(reply, step.principal);
    if (request === undefined) return void expect(reply.status).toBe(404);
    expect(reply.status).toBe(200);
    const state = (JSON.parse(reply.body) as { request: ApprovalState }).request;
    expect(state.status).toBe(this.statusOf(request));
    reach('read');
  }

  // ---- answering ----

  reasonText(reason: Reason): string | undefined {
    switch (reason) {
      case 'none':
        return undefined;
      case 'plain':
        return 'checked the invoice';
      case 'markup':
        return '<b onmouseover=alert(1)>"ok"</b>';
      case 'blank':
        return '   ';
      case 'too-long':
        return 'x'.repeat(MAX_REASON + 1);
    }
  }

  recorded(reason: Reason): string | undefined {
    const text = this.reasonText(reason)?.trim();
    return text ? text : undefined;
  }

  originHeaders(origin: Origin, instance = 0): Record<string, string> {
    switch (origin) {
      case 'same':
        return { origin: origins[instance] as string, 'sec-fetch-site': 'same-origin' };
      case 'none':
        return {};
      case 'cross':
        return { origin: 'http://evil.example' };
      case 'fetch-cross':
        return { origin: origins[instance] as string, 'sec-fetch-site': 'cross-site' };
    }
  }

  shaped(path: string, shape: PathShape): { path: string; routed: boolean } {
    switch (shape) {
      case 'plain':
        return { path, routed: true };
      case 'query':
        return { path: `${path}?answer=approve&by=ceo&_method=PUT`, routed: true };
      case 'trailing-slash':
        return { path: `${path}/`, routed: false };
      case 'encoded-slash':
        return { path: path.replace(/\/([^/]+)$/, '%2F$1'), routed: false };
      case 'dot-segment':
        return { path: path.replace('/approvals/', '/approvals/link/%2e%2e/'), routed: false };
      case 'double-slash':
        return { path: path.replace('/approvals/', '/approvals//'), routed: false };
    }
  }

  /** Applies an answer the store should have taken, and returns what the handler reports for it. */
  answer(request: ModelRequest, approved: boolean, by: string, reason: string | undefined): 'ok' | 'answered' | 'expired' {
    const status = this.statusOf(request);
    if (status === 'expired') return 'expired';
    if (status !== 'pending') return 'answered';
    request.status = approved ? 'approved' : 'rejected';
    request.resolution = { approved, by, ...(reason !== undefined ? { reason } : {}), at: new Date(this.clock).toISOString() };
    this.answered = request;
    return 'ok';
  }

  csrfFields(who: Principal, csrf: Csrf): { field?: string | undefined; cookie?: string | undefined; valid: boolean } {
    const own = this.forms.get(who);
    const other = this.forms.get(who === 'alice' ? 'bob' : 'alice');
    const ownCookie = this.cookies.get(who);
    const fresh = (form: FormToken | undefined, cookie: string | undefined) =>
      form !== undefined && form.principal === who && cookie === form.nonce && this.clock - form.issuedAt <= CSRF_AGE;
    switch (csrf) {
      case 'fresh':
        return own ? { field: own.token, cookie: ownCookie, valid: fresh(own, ownCookie) } : { cookie: ownCookie, valid: false };
      case 'none':
        return { cookie: ownCookie, valid: false };
      case 'no-cookie':
        return own ? { field: own.token, valid: false } : { valid: false };
      case 'other-principal':
        return other ? { field: other.token, cookie: this.cookies.get(other.principal), valid: false } : { cookie: ownCookie, valid: false };
      case 'other-cookie': {
        const cookie = other ? this.cookies.get(other.principal) : 'AAAAAAAAAAAAAAAAAAAAAA';
        return own ? { field: own.token, cookie, valid: fresh(own, cookie) } : { cookie, valid: false };
      }
      case 'garbage':
        return { field: 'a.b.c', cookie: ownCookie, valid: false };
      case 'tampered': {
        if (!own) return { cookie: ownCookie, valid: false };
        const [nonce, , signature] = own.token.split('.');
        return { field: `${nonce}.${this.clock.toString(36)}.${signature}`, cookie: ownCookie, valid: this.clock === own.issuedAt && fresh(own, ownCookie) };
      }
    }
  }

  async form(step: Extract<Step, { kind: 'form' }>): Promise<void> {
    if (step.reload) await this.page({ kind: 'page', principal: step.principal, session: 'all', cookie: true });
    const { id, request, valid } = this.idOf(step.target);
    const csrf = this.csrfFields(step.principal, step.csrf);
    const reasonText = this.reasonText(step.reason);
    const fields: [string, string][] = [];
    if (step.body !== 'no-answer') fields.push(['answer', step.body === 'bad-answer' ? 'yes' : step.answer]);
    if (step.body === 'duplicate') fields.push(['answer', step.answer === 'approve' ? 'reject' : 'approve']);
    if (csrf.field !== undefined) fields.push(['csrf', csrf.field]);
    if (reasonText !== undefined) fields.push(['reason', reasonText]);
    const listed = step.listed === 'all' ? undefined : LISTED[step.listed];
    if (listed !== undefined) fields.push(['session', listed]);
    if (step.body === 'oversized') fields.push(['pad', 'p'.repeat(MAX_BODY)]);
    let body: string | Buffer = new URLSearchParams(fields).toString();
    if (step.body === 'invalid-utf8') body = Buffer.concat([Buffer.from(body), Buffer.from('&note=\xff', 'latin1')]);
    const shaped = this.shaped(`/approvals/requests/${id}`, step.path);
    const headers = {
      ...this.auth(step.principal),
      ...this.originHeaders(step.origin, step.instance),
      'content-type': step.body === 'wrong-type' ? 'text/plain' : 'application/x-www-form-urlencoded',
      ...(csrf.cookie !== undefined ? { cookie: `agentpolicy_approvals_csrf=${csrf.cookie}` } : {}),
    };
    const reply = await send('POST', shaped.path, headers, body, step.instance);
    // A dot segment is refused before anything; a cross-site post before routing.
    if (step.path === 'dot-segment') return void expect(reply.status).toBe(400);
    if (step.origin === 'cross' || step.origin === 'fetch-cross') {
      expect(reply.status).toBe(403);
      reach('form: cross-site refused');
      return;
    }
    if (!shaped.routed || !valid) return void expect(reply.status).toBe(404);
    if (step.body === 'wrong-type') return void expect(reply.status).toBe(415);
    if (step.body === 'oversized') return void expect(reply.status).toBe(413);
    if (step.body === 'duplicate' || step.body === 'invalid-utf8' || step.body === 'bad-answer' || step.body === 'no-answer') {
      expect(reply.status).toBe(400);
      reach(`form: ${step.body} refused`);
      return;
    }
    if (!ANSWERERS.has(step.principal)) return this.refused(reply, step.principal);
    if (!csrf.valid) {
      expect(reply.status, `form token ${step.csrf}`).toBe(403);
      reach(`form: csrf ${step.csrf} refused`);
      const own = this.forms.get(step.principal);
      if (step.csrf === 'fresh' && own !== undefined && this.clock - own.issuedAt > CSRF_AGE) reach('form: stale csrf refused');
      return;
    }
    if (step.reason === 'too-long') return void expect(reply.status).toBe(400);
    expect(reply.status).toBe(303);
    const location = reply.headers.location as string;
    if (request === undefined) return void expect(location.endsWith('notice=unknown')).toBe(true);
    const outcome = this.answer(request, step.answer === 'approve', step.principal, this.recorded(step.reason));
    // Back to the list the form was on, on this handler, whatever the form says it came from.
    const back = listed === undefined ? '/approvals/?' : `/approvals/?session=${encodeURIComponent(listed)}&`;
    expect(location).toBe(`${back}notice=${outcome === 'ok' ? (step.answer === 'approve' ? 'approved' : 'rejected') : outcome}`);
    reach(`form: ${outcome}`);
  }

  async json(step: Extract<Step, { kind: 'json' }>): Promise<void> {
    const { id, request, valid } = this.idOf(step.target);
    const reasonText = this.reasonText(step.reason);
    const members: Record<string, unknown> = { answer: step.body === 'bad-answer' ? 'approve ' : step.answer, ...(reasonText !== undefined ? { reason: reasonText } : {}) };
    if (step.body === 'non-string') members['reason'] = 42;
    if (step.body === 'oversized') members['pad'] = 'p'.repeat(MAX_BODY);
    let body = JSON.stringify(members);
    if (step.body === 'duplicate') body = body.replace('{', `{"answer":"${step.answer === 'approve' ? 'reject' : 'approve'}",`);
    if (step.body === 'malformed') body = body.slice(0, -1);
    if (step.body === 'array') body = `[${body}]`;
    const shaped = this.shaped(`/approvals/api/requests/${id}/resolve`, step.path);
    const headers = { ...this.auth(step.principal), ...this.originHeaders(step.origin, step.instance), 'content-type': step.body === 'wrong-type' ? 'text/plain;charset=UTF-8' : 'application/json' };
    const reply = await send('POST', shaped.path, headers, body, step.instance);
    if (step.path === 'dot-segment') return void expect(reply.status).toBe(400);
    if (step.origin === 'cross' || step.origin === 'fetch-cross') {
      expect(reply.status).toBe(403);
      expect(JSON.parse(reply.body).error.code).toBe('cross_site');
      reach('json: cross-site refused');
      return;
    }
    if (!shaped.routed || !valid) return void expect(reply.status).toBe(404);
    if (step.body === 'wrong-type') {
      expect(reply.status).toBe(415);
      reach('json: wrong media type refused');
      return;
    }
    if (step.body === 'oversized') return void expect(reply.status).toBe(413);
    if (step.body !== 'ok') {
      expect(reply.status).toBe(400);
      reach(`json: ${step.body} refused`);
      return;
    }
    if (!ANSWERERS.has(step.principal)) return this.refused(reply, step.principal);
    if (step.reason === 'too-long') return void expect(reply.status).toBe(400);
    if (request === undefined) return void expect(reply.status).toBe(404);
    const outcome = this.answer(request, step.answer === 'approve', step.principal, this.recorded(step.reason));
    expect(reply.status).toBe(outcome === 'ok' ? 200 : outcome === 'answered' ? 409 : 410);
    reach(`json: ${outcome}`);
  }

  /** A link token and what the handler should make of it. */
  link(kind: LinkToken, requestIndex: number, otherIndex: number): { token: string; expect: 'ok' | 'forged' | 'expired' | 'unknown' | 'other-action'; request?: ModelRequest; approve?: boolean } {
    const request = this.pick(requestIndex);
    if (kind === 'garbage' || request === undefined) return { token: 'not-a-token', expect: 'forged' };
    if (kind === 'replay' && this.lastLink !== undefined) return this.link(this.lastLink as LinkToken, requestIndex, otherIndex);
    const sign = (claims: { requestId: string; fingerprint: string; expiresAt: number; answer: 'approve' | 'reject' }, secret = SECRET) => signApprovalToken(claims, secret);
    const approve = kind !== 'reject';
    const claims = { requestId: request.id, fingerprint: request.fingerprint, expiresAt: request.expiresAt, answer: approve ? ('approve' as const) : ('reject' as const) };
    const judged = (token: string, target: ModelRequest | undefined, fingerprint: string, expiresAt: number) => {
      if (this.clock > expiresAt) return { token, expect: 'expired' as const };
      if (target === undefined || target.forgotten) return { token, expect: 'unknown' as const };
      if (target.fingerprint !== fingerprint) return { token, expect: 'other-action' as const };
      return { token, expect: 'ok' as const, request: target, approve };
    };
    switch (kind) {
      case 'approve':
      case 'reject':
      case 'replay':
        return judged(sign(claims), request, claims.fingerprint, claims.expiresAt);
      case 'expired': {
        const expiresAt = Math.min(request.expiresAt, this.clock - 1);
        return judged(sign({ ...claims, expiresAt }), request, claims.fingerprint, expiresAt);
      }
      case 'forged': {
        const token = sign(claims);
        const signature = token.split('.')[2] as string;
        return { token: `${token.slice(0, -signature.length)}${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`, expect: 'forged' };
      }
      case 'other-secret':
        return { token: sign(claims, OTHER_SECRET), expect: 'forged' };
      case 'other-request': {
        // Signed for this request's action, naming another request.
        const other = this.pick(otherIndex) as ModelRequest;
        return judged(sign({ ...claims, requestId: other.id }), other, claims.fingerprint, claims.expiresAt);
      }
      case 'other-action':
        return judged(sign({ ...claims, fingerprint: 'f'.repeat(64) }), request, 'f'.repeat(64), claims.expiresAt);
      case 'unknown-request':
        return judged(sign({ ...claims, requestId: 'apr_AAAAAAAAAAAAAAAAAAAAAA' }), undefined, claims.fingerprint, claims.expiresAt);
    }
  }

  async linkView(step: Extract<Step, { kind: 'link-view' }>): Promise<void> {
    const link = this.link(step.token, step.request, step.other);
    const reply = await send('GET', `/approvals/link/${encodeURIComponent(link.token)}`);
    const statuses = { forged: 403, 'other-action': 403, expired: 410, unknown: 404 } as const;
    if (link.expect !== 'ok') {
      expect(reply.status, link.expect).toBe(statuses[link.expect]);
      reach(`link view: ${link.expect}`);
      return;
    }
    const status = this.statusOf(link.request as ModelRequest);
    expect(reply.status, 'a GET never answers').toBe(status === 'pending' ? 200 : status === 'expired' ? 410 : 409);
    if (status === 'pending') expect(reply.body).toContain(`data-request-id="${link.request?.id}"`);
    reach('link view: shown');
  }

  async linkRedeem(step: Extract<Step, { kind: 'link' }>): Promise<void> {
    const link = this.link(step.token, step.request, step.other);
    const reasonText = this.reasonText(step.reason);
    const headers = this.originHeaders(step.origin);
    const reply =
      step.via === 'json'
        ? await send('POST', '/approvals/api/links/redeem', { ...headers, 'content-type': 'application/json' }, JSON.stringify({ token: link.token, ...(reasonText !== undefined ? { reason: reasonText } : {}) }))
        : await send('POST', '/approvals/link', { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, new URLSearchParams({ token: link.token, ...(reasonText !== undefined ? { reason: reasonText } : {}) }).toString());
    if (step.origin === 'cross' || step.origin === 'fetch-cross') {
      expect(reply.status).toBe(403);
      reach('link: cross-site refused');
      return;
    }
    const statuses = { forged: 403, 'other-action': 403, expired: 410, unknown: 404 } as const;
    if (link.expect !== 'ok') {
      expect(reply.status, link.expect).toBe(statuses[link.expect]);
      reach(`link: ${step.token === 'replay' ? 'replayed' : step.token} refused`);
      return;
    }
    if (step.reason === 'too-long') return void expect(reply.status).toBe(400);
    const outcome = this.answer(link.request as ModelRequest, link.approve as boolean, 'link', this.recorded(step.reason));
    expect(reply.status).toBe(outcome === 'ok' ? 200 : outcome === 'answered' ? 409 : 410);
    if (outcome === 'ok') this.lastLink = link.approve ? 'approve' : 'reject';
    reach(`link: ${outcome}${step.token === 'replay' ? ' (replayed)' : ''}`);
  }

  async method(step: Extract<Step, { kind: 'method' }>): Promise<void> {
    const id = this.pick(step.request)?.id ?? 'apr_AAAAAAAAAAAAAAAAAAAAAA';
    const routes: [string, 'GET' | 'POST'][] = [
      ['/approvals/', 'GET'],
      [`/approvals/requests/${id}`, 'POST'],
      ['/approvals/link', 'POST'],
      ['/approvals/link/some-token', 'GET'],
      ['/approvals/api/requests', 'GET'],
      [`/approvals/api/requests/${id}`, 'GET'],
      [`/approvals/api/requests/${id}/resolve`, 'POST'],
      ['/approvals/api/links/redeem', 'POST'],
    ];
    const [path, allowed] = routes[step.route] as [string, 'GET' | 'POST'];
    if (step.method === allowed || (step.method === 'POST' && allowed === 'POST')) return;
    const body = step.method === 'GET' || step.method === 'HEAD' ? undefined : '{"answer":"approve"}';
    const reply = await send(step.method, path, { ...this.auth('alice'), 'content-type': 'application/json', origin: origins[0] as string, 'x-http-method-override': allowed }, body);
    expect(reply.status, `${step.method} ${path}`).toBe(405);
    expect(reply.headers.allow).toBe(allowed);
    reach('wrong method');
  }

  async race(step: Extract<Step, { kind: 'race' }>): Promise<void> {
    const request = this.pick(step.request);
    if (request === undefined) return;
    if (!this.forms.has('alice') || this.clock - (this.forms.get('alice') as FormToken).issuedAt > CSRF_AGE) await this.page({ kind: 'page', principal: 'alice', session: 'all', cookie: true });
    // With nothing pending the page has no form (and no fresh token): the form channel sits this race out.
    const latest = this.forms.get('alice');
    const form = latest !== undefined && this.clock - latest.issuedAt <= CSRF_AGE && this.cookies.get('alice') === latest.nonce ? latest : undefined;
    const approveToken = signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: request.expiresAt, answer: 'approve' }, SECRET);
    const rejectToken = signApprovalToken({ requestId: request.id, fingerprint: request.fingerprint, expiresAt: request.expiresAt, answer: 'reject' }, SECRET);
    const json = { 'content-type': 'application/json' };
    // Each channel: the answer it gives, who it is recorded as, and its request, to either instance of the handler.
    const channels: { approved: boolean; by: string; send: () => Promise<Reply>; won: (reply: Reply) => boolean }[] = [
      { approved: true, by: 'alice', send: () => send('POST', `/approvals/api/requests/${request.id}/resolve`, { ...json, ...this.auth('alice') }, '{"answer":"approve"}'), won: (r) => r.status === 200 },
      { approved: false, by: 'bob', send: () => send('POST', `/approvals/api/requests/${request.id}/resolve`, { ...json, ...this.auth('bob') }, '{"answer":"reject"}', 1), won: (r) => r.status === 200 },
      { approved: true, by: 'link', send: () => send('POST', '/approvals/api/links/redeem', json, JSON.stringify({ token: approveToken }), 1), won: (r) => r.status === 200 },
      { approved: false, by: 'link', send: () => send('POST', '/approvals/link', { 'content-type': 'application/x-www-form-urlencoded' }, `token=${rejectToken}`), won: (r) => r.status === 200 },
      {
        approved: true,
        by: 'alice',
        send: () => send('POST', `/approvals/requests/${request.id}`, { ...this.auth('alice'), 'content-type': 'application/x-www-form-urlencoded', cookie: `agentpolicy_approvals_csrf=${form?.nonce}` }, `answer=approve&csrf=${encodeURIComponent(form?.token ?? '')}`, 1),
        won: (r) => r.status === 303 && (r.headers.location ?? '').endsWith('notice=approved'),
      },
      { approved: false, by: 'bob', send: () => send('POST', `/approvals/api/requests/${request.id}/resolve`, { ...json, ...this.auth('bob') }, '{"answer":"reject","reason":"second look"}'), won: (r) => r.status === 200 },
    ];
    const chosen = step.channels.filter((i) => i !== 4 || form !== undefined).map((i) => channels[i] as (typeof channels)[number]);
    const replies = await Promise.all(chosen.map((channel) => channel.send()));
    const winners = chosen.filter((channel, i) => channel.won(replies[i] as Reply));
    const status = this.statusOf(request);
    if (status !== 'pending') {
      expect(winners, 'no answer counts for a request already answered, expired or forgotten').toEqual([]);
      for (const reply of replies) expect(status === 'forgotten' ? [303, 404] : [303, 409, 410]).toContain(reply.status);
      reach('race: nothing to answer');
      return;
    }
    expect(winners.length, 'exactly one of the answers given at once counts').toBe(1);
    for (const [i, reply] of replies.entries()) if (!chosen[i]?.won(reply)) expect([303, 409]).toContain(reply.status);
    const winner = winners[0] as (typeof channels)[number];
    const stored = this.inner.get(request.id, this.clock)?.resolution;
    expect(stored, 'what stands is the winning answer').toMatchObject({ approved: winner.approved, by: winner.by });
    request.status = winner.approved ? 'approved' : 'rejected';
    request.resolution = { approved: winner.approved, by: winner.by, ...(stored?.reason !== undefined ? { reason: stored.reason } : {}), at: new Date(this.clock).toISOString() };
    this.answered = request;
    reach('race: one answer wins');
  }

  /** A client that sends half an answer and goes away: nothing is answered, and nothing rejects unhandled. */
  async abort(step: Extract<Step, { kind: 'abort' }>): Promise<void> {
    const id = this.pick(step.request)?.id ?? 'apr_AAAAAAAAAAAAAAAAAAAAAA';
    const form = step.via === 'form';
    const head = `POST /approvals/${form ? `requests/${id}` : `api/requests/${id}/resolve`} HTTP/1.1\r\nHost: 127.0.0.1:${ports[0]}\r\nAuthorization: Bearer alice\r\nContent-Type: ${form ? 'application/x-www-form-urlencoded' : 'application/json'}\r\nContent-Length: 200\r\n\r\n`;
    await new Promise<void>((resolve) => {
      const socket = connect(ports[0] as number, '127.0.0.1', () => {
        socket.write(`${head}${form ? 'answer=approve&csrf=' : '{"answer":"approve"'}`);
        setTimeout(() => socket.destroy(), 5);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
    // Let the handler see the close before the store is compared.
    await new Promise((resolve) => setTimeout(resolve, 5));
    reach('abort: half a body');
  }

  /** The store forgets a request a run is waiting on (or, when none, any request). */
  async forget(step: Extract<Step, { kind: 'forget' }>): Promise<void> {
    const waited = this.requests.filter((r) => r.waiter !== undefined && !r.waited && !r.forgotten);
    const candidates = waited.length > 0 ? waited : this.requests.filter((r) => !r.forgotten);
    const request = candidates.length === 0 ? undefined : candidates[step.request % candidates.length];
    if (request === undefined) return;
    this.store.forgotten.add(request.id);
    request.forgotten = true;
    reach('forget: the store forgot a request');
  }

  async clockStep(step: Extract<Step, { kind: 'clock' }>): Promise<void> {
    if (step.pageOpen) await this.page({ kind: 'page', principal: 'alice', session: 'all', cookie: true });
    this.clock += step.by === 'minute' ? MINUTE : step.by === 'past-form-tokens' ? CSRF_AGE + MINUTE : TTL + MINUTE;
    if (step.pageOpen && step.answerAfter !== undefined) {
      const target = { kind: 'request' as const, index: step.answerAfter };
      await this.form({ kind: 'form', principal: 'alice', target, answer: 'approve', csrf: 'fresh', body: 'ok', reason: 'plain', origin: 'same', path: 'plain', reload: false, listed: 'all', instance: 1 });
    }
    reach(`clock: ${step.by}`);
  }

  async do(step: Step): Promise<void> {
    switch (step.kind) {
      case 'raise':
        return this.raise(step);
      case 'recheck':
        return this.recheck(step);
      case 'wait':
        return this.wait(step);
      case 'clock':
        return this.clockStep(step);
      case 'page':
        return this.page(step);
      case 'list':
        return this.list(step);
      case 'read':
        return this.read(step);
      case 'form':
        return this.form(step);
      case 'json':
        return this.json(step);
      case 'link-view':
        return this.linkView(step);
      case 'link':
        return this.linkRedeem(step);
      case 'method':
        return this.method(step);
      case 'race':
        return this.race(step);
      case 'abort':
        return this.abort(step);
      case 'forget':
        return this.forget(step);
    }
  }

  /** The store against the model: status, who answered and why. */
  check(): void {
    expect(this.errors, 'nothing is reported as a store or hook failure').toEqual([]);
    for (const request of this.requests) {
      if (request.forgotten) {
        expect(this.store.get(request.id)).toBeUndefined();
        continue;
      }
      const state = this.inner.get(request.id, this.clock) as ApprovalState;
      expect(state.status, `request ${request.id}`).toBe(this.statusOf(request));
      if (request.resolution === undefined) expect(state.resolution).toBeUndefined();
      else {
        // Who answered, when (the handler's clock), and why, as the answer was given.
        expect(state.resolution).toMatchObject({ approved: request.resolution.approved, by: request.resolution.by, at: request.resolution.at });
        expect(state.resolution?.reason).toBe(request.resolution.reason);
      }
      expect(request.executions, 'an approval runs at most one execution').toBeLessThanOrEqual(request.resolution?.approved ? 1 : 0);
    }
  }

  /** Ends the run: every request past its expiry, every waiting run ended. */
  async end(): Promise<void> {
    this.clock += 10 * TTL;
    await this.settleWaiters();
  }
}

/** Every response: a status the handler means, its security headers, nothing leaked, and pages that escape input. */
function checkReply(reply: Reply): void {
  expect(reply.status, reply.body.slice(0, 200)).toBeLessThan(500);
  expect(reply.headers['content-security-policy'] ?? 'none', `security headers on a ${reply.status}`).toMatch(/default-src 'none'/);
  expect(reply.headers['content-security-policy'] ?? 'none').toMatch(/frame-ancestors 'none'/);
  expect(reply.headers['cache-control']).toBe('no-store');
  expect(reply.headers['x-content-type-options']).toBe('nosniff');
  expect(reply.headers['referrer-policy']).toBe('same-origin');
  expect(reply.headers['x-frame-options']).toBe('DENY');
  expect(reply.headers['access-control-allow-origin']).toBeUndefined();
  expect(reply.body).not.toContain(SECRET);
  expect(reply.body).not.toMatch(/\n\s+at \S+ \(|node_modules|\.ts:\d+/);
  if (/text\/html/.test(reply.headers['content-type'] ?? '')) {
    for (const markup of RAW_MARKUP) expect(reply.body, 'a page shows input escaped').not.toContain(markup);
    expect(reply.body).not.toContain('<b onmouseover');
  }
}

describe('the approvals handler over HTTP, against a model (seeded fuzz)', () => {
  it(`keeps every invariant for ${RUNS} random sequences (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), async (steps) => {
        unhandled = [];
        const run = new Run();
        try {
          for (const one of steps) {
            await run.do(one);
            await run.settleWaiters();
            run.check();
          }
          await run.end();
          run.check();
        } finally {
          run.clock += 10 * TTL;
          current = [closed, closed];
        }
        await new Promise((resolve) => setImmediate(resolve));
        expect(unhandled, 'nothing rejects unhandled').toEqual([]);
      }),
      fuzzOptions,
    );
  }, 120_000);

  afterAll(() => {
    if (process.env['FUZZ_PATH']) return;
    const paths = [
      'raise',
      'recheck: still pending',
      'recheck: approved runs once',
      'recheck: rejected denies',
      'recheck: expired denies as expired',
      'recheck: used approval refused',
      'recheck: one approval used at once by two checks',
      'recheck: other session',
      'recheck: other action',
      'recheck: forgotten request',
      'wait: raised',
      'wait: approved runs',
      'wait: rejected denies',
      'wait: expired denies as expired',
      'wait: forgotten request denied as an error',
      'forget: the store forgot a request',
      'page: form token',
      'page: markup input shown escaped',
      'list',
      'read',
      'form: ok',
      'form: answered',
      'form: expired',
      'form: cross-site refused',
      'form: duplicate refused',
      'form: invalid-utf8 refused',
      'form: csrf none refused',
      'form: csrf no-cookie refused',
      'form: csrf other-principal refused',
      'form: csrf other-cookie refused',
      'form: csrf garbage refused',
      'form: csrf tampered refused',
      'form: stale csrf refused',
      'json: ok',
      'json: answered',
      'json: expired',
      'json: cross-site refused',
      'json: wrong media type refused',
      'json: duplicate refused',
      'link view: shown',
      'link view: forged',
      'link view: expired',
      'link: ok',
      'link: answered',
      'link: answered (replayed)',
      'link: expired refused',
      'link: forged refused',
      'link: other-request refused',
      'link: other-action refused',
      'link: unknown-request refused',
      'link: other-secret refused',
      'link: cross-site refused',
      'wrong method',
      'race: one answer wins',
      'abort: half a body',
      'clock: past-form-tokens',
      'clock: past-requests',
    ];
    console.log(`seed ${SEED}, paths reached:`, Object.fromEntries(paths.map((path) => [path, reached.get(path) ?? 0])));
    for (const path of paths) expect(reached.get(path) ?? 0, `the fuzz never reached: ${path}`).toBeGreaterThan(0);
  });
});
