/**
 * @agentpolicy/approvals example: an agent whose `deploy` tool needs a human's approval, and the approvals handler
 * on localhost where that human answers — on the page, by a signed link, or through the JSON API. Offline.
 *
 *   pnpm demo   waits for you: open the printed page (or a link) in a browser and click Approve or Reject.
 *   pnpm test   answers by itself through the handler's JSON API and signed links, and checks what happened.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { AgentPolicy, InMemoryApprovalStore, PolicyDeniedError } from '@agentpolicy/core';
import { approvalLinks, createApprovalsHandler, createWaitingApprover, toNodeHandler } from '@agentpolicy/approvals';

const interactive = process.argv.includes('--wait');
const secret = randomBytes(32);
const store = new InMemoryApprovalStore();
const operatorToken = randomBytes(16).toString('hex');

// The handler: the page and API for the operator (a bearer token here; your app's login in real life), links for anyone holding one.
const handler = createApprovalsHandler({
  store,
  secret,
  basePath: '/approvals',
  authorize: (request, access) => {
    if (access.kind === 'link') return { id: 'link-holder' };
    const cookie = request.headers.get('cookie') ?? '';
    const bearer = request.headers.get('authorization');
    if (bearer === `Bearer ${operatorToken}` || cookie.includes(`operator=${operatorToken}`)) return { id: 'operator' };
    return null;
  },
});
const loginPath = `/login/${operatorToken}`;
const server = createServer((req, res) => {
  // A stand-in for your app's login: visiting this path once sets the operator's cookie.
  if (req.url === loginPath) {
    res.writeHead(303, { location: '/approvals/', 'set-cookie': `operator=${operatorToken}; Path=/; HttpOnly; SameSite=Strict` }).end();
    return;
  }
  void toNodeHandler(handler)(req, res);
});
await new Promise<void>((resolve) => server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const handlerUrl = `${origin}/approvals`;
console.log(`Approvals page: ${origin}${loginPath} (signs you in as the operator)`);

// The agent: deploying needs approval; the session's approver waits for an answer from the handler.
const policy = AgentPolicy.fromDict({ tools: { allow: ['deploy', 'read_logs'] }, approval: { require_for: [{ tool: 'deploy' }] } });
const announced: { id: string; links: { approve: string; reject: string } }[] = [];
const session = policy.session({
  id: 'release-bot',
  approvals: store,
  approvalSecret: secret,
  approvalTimeoutMs: interactive ? 15 * 60_000 : 30_000,
  approver: createWaitingApprover({
    store,
    intervalMs: 100,
    onRequest: (request) => {
      const links = approvalLinks(request, { handlerUrl, secret });
      announced.push({ id: request.id, links });
      console.log(`\n  [agent] waiting for approval of ${request.action.type === 'tool' ? request.action.name : request.action.type} ${JSON.stringify(request.action.type === 'tool' ? request.action.input : '')}`);
      console.log(`          approve: ${links.approve}\n          reject:  ${links.reject}`);
    },
  }),
});
const deployed: string[] = [];
const deploy = (input: { service: string; version: string }) =>
  session.runTool('deploy', { input }, () => {
    deployed.push(`${input.service}@${input.version}`);
    return `deployed ${input.service}@${input.version}`;
  });

/** Plays the human in `pnpm test`: waits for the agent's request, then answers it through the handler. */
async function human(answer: (request: (typeof announced)[number]) => Promise<Response>): Promise<void> {
  if (interactive) return;
  const seen = announced.length;
  while (announced.length === seen) await new Promise((resolve) => setTimeout(resolve, 20));
  const response = await answer(announced[seen] as (typeof announced)[number]);
  console.log(`  [human] ${response.status} ${(await response.text()).slice(0, 120)}`);
}
const api = (path: string, body: unknown) =>
  fetch(`${handlerUrl}/api/${path}`, { method: 'POST', headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const tokenOf = (link: string) => link.slice(link.lastIndexOf('/') + 1);

const outcomes: string[] = [];
async function attempt(input: { service: string; version: string }, humanAnswer: Parameters<typeof human>[0]): Promise<void> {
  const [result] = await Promise.allSettled([deploy(input), human(humanAnswer)]);
  if (result.status === 'fulfilled') outcomes.push(`allowed: ${result.value}`);
  else if (PolicyDeniedError.isInstance(result.reason)) outcomes.push(`denied: ${result.reason.decision.reason}`);
  else throw result.reason;
  console.log(`  [agent] ${outcomes.at(-1)}`);
}

console.log('\n1. Deploy api@2.4.0 (the operator approves through the JSON API)');
await attempt({ service: 'api', version: '2.4.0' }, (request) => api(`requests/${request.id}/resolve`, { answer: 'approve', reason: 'release window' }));

console.log('\n2. Deploy billing@9.0.0 (rejected through a signed link)');
await attempt({ service: 'billing', version: '9.0.0' }, (request) => api('links/redeem', { token: tokenOf(request.links.reject), reason: 'freeze until Monday' }));

console.log('\n3. The same approve link again, after the answer: refused');
const replay = announced[0] ? await api('links/redeem', { token: tokenOf(announced[0].links.approve) }) : undefined;
console.log(`  [human] ${replay?.status} ${(await replay?.text())?.slice(0, 120)}`);

const report = session.end();
server.close();
console.log('\nDecisions:');
for (const d of report.decisions) console.log(`  ${d.decision.padEnd(5)} ${d.action.type === 'tool' ? d.action.name : d.action.type}: ${d.reason}${d.approval?.by ? ` (answered by ${d.approval.by})` : ''}`);

if (!interactive) {
  const ok =
    deployed.join() === 'api@2.4.0' &&
    outcomes[0] === 'allowed: deployed api@2.4.0' &&
    outcomes[1]?.includes('rejected by link-holder: freeze until Monday') === true &&
    replay?.status === 409;
  if (!ok) {
    console.error('\nunexpected outcome', { deployed, outcomes, replay: replay?.status });
    process.exit(1);
  }
  console.log('\nok: one approved deploy ran once, the rejected one never ran, the used link was refused');
}
