// End to end in a real headless Chromium: agents in their own processes pause on approvals kept in a store shared
// through the file system; a person answers on the handler's page or by a signed link; the agents resume (or not).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApprovalsHandler } from './approvals-handler.js';
import { toNodeHandler } from './node-handler.js';
import { Agent, FileApprovalStore } from './test-support/agent-child.js';

const CHROMIUM = '/usr/bin/chromium';
const SECRET = 'an-end-to-end-secret-of-at-least-32-bytes!';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: the end-to-end approvals test needs Debian's chromium (.ci/run installs it)`);
  console.warn(`\n!!! SKIPPING the Chromium end-to-end approvals test: ${CHROMIUM} is not installed (apt-get install -y chromium) !!!\n`);
}

describe.skipIf(!available)('approvals in a real browser, agents in their own processes', () => {
  let dir: string;
  let toolLog: string;
  let server: Server;
  let base: string;
  let context: BrowserContext;
  let page: Page;
  const agents: Agent[] = [];
  const consoleErrors: string[] = [];

  const startAgent = (input: unknown, timeoutMs = 60_000) => {
    const agent = new Agent([join(dir, 'store'), SECRET, toolLog, `${base}/approvals`, JSON.stringify(input), String(timeoutMs)]);
    agents.push(agent);
    return agent;
  };
  const toolRuns = () => (existsSync(toolLog) ? readFileSync(toolLog, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line)) : []);
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const article = (id: string) => page.locator(`article[data-request-id="${id}"]`);

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-e2e-'));
    toolLog = join(dir, 'tool.log');
    const store = new FileApprovalStore(join(dir, 'store'));
    // The app's login: a cookie naming the user (a real app checks its own session). Links need no login.
    const handler = createApprovalsHandler({
      store,
      secret: SECRET,
      basePath: '/approvals',
      authorize: (request, access) => {
        if (access.kind === 'link') return { id: 'signed-link' };
        const user = /(?:^|;\s*)demo_user=([a-z]+)/.exec(request.headers.get('cookie') ?? '')?.[1];
        return user ? { id: user } : null;
      },
    });
    server = createServer(toNodeHandler(handler));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    context = await chromium.launchPersistentContext(join(dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    // A strict CSP must not break the page: any violation would show up here.
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
  }, 60_000);

  afterAll(async () => {
    for (const agent of agents) agent.kill();
    await context?.close();
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the page refuses a visitor the app has not signed in', async () => {
    const response = await page.goto(`${base}/approvals/`);
    expect(response?.status()).toBe(403);
    await shot('01-not-signed-in');
  });

  it('Approve on the page resumes the agent and the tool runs exactly once', async () => {
    await context.addCookies([{ name: 'demo_user', value: 'alice', url: base }]);
    const agent = startAgent({ to: 'ops@example.com', body: 'deploy <b>v2</b> <script>alert(1)</script>' });
    const request = await agent.next('request');
    await page.goto(`${base}/approvals/`);
    const item = article(request.id as string);
    await expect.poll(() => item.count()).toBe(1);
    expect(await item.locator('pre').textContent()).toContain('<script>alert(1)</script>');
    expect(await item.innerText()).toMatch(/tool send_email[\s\S]*Cost[\s\S]*\$0\.00[\s\S]*Session[\s\S]*agent-\d+[\s\S]*Requested[\s\S]*ago[\s\S]*Expires[\s\S]*in /);
    expect(toolRuns()).toHaveLength(0);
    await shot('02-pending');
    await item.locator('input[name=reason]').fill('release window is open');
    await item.locator('button[value=approve]').click();
    await page.waitForURL(/notice=approved/);
    expect(await page.locator('[role=status]').textContent()).toContain('Approved');
    await shot('03-approved');
    const result = await agent.next('result');
    expect(result).toMatchObject({ ran: true, decision: 'allow', by: 'alice' });
    expect(result.reason).toContain('release window is open');
    expect(await agent.exited).toBe(0);
    expect(toolRuns()).toEqual([{ to: 'ops@example.com', body: 'deploy <b>v2</b> <script>alert(1)</script>' }]);
    // The browser going back and posting the same form again changes nothing.
    await page.goBack();
    expect(await article(request.id as string).count()).toBe(0);
  });

  it('Reject records the reason; the agent does not run the tool', async () => {
    const agent = startAgent({ to: 'everyone@example.com', body: 'mass mail' });
    const request = await agent.next('request');
    await page.goto(`${base}/approvals/`);
    const item = article(request.id as string);
    await item.locator('input[name=reason]').fill('not to the whole company');
    await item.locator('button[value=reject]').click();
    await page.waitForURL(/notice=rejected/);
    await shot('04-rejected');
    const result = await agent.next('result');
    expect(result).toMatchObject({ ran: false, code: 'ACTION_DENIED', decision: 'deny', rule: { section: 'approver', outcome: 'rejected' } });
    expect(result.reason).toContain('rejected by alice: not to the whole company');
    const stored = await new FileApprovalStore(join(dir, 'store')).get(request.id as string, Date.now());
    expect(stored).toMatchObject({ status: 'rejected', resolution: { by: 'alice', reason: 'not to the whole company' } });
    expect(toolRuns()).toHaveLength(1);
  });

  it('an expired request cannot be approved', async () => {
    const agent = startAgent({ to: 'late@example.com' }, 8_000);
    const request = await agent.next('request');
    await page.goto(`${base}/approvals/`);
    const item = article(request.id as string);
    await expect.poll(() => item.count()).toBe(1);
    // The page stays open past the request's expiry; then someone clicks Approve.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(request.expiresAt as string) - Date.now() + 300)));
    await item.locator('button[value=approve]').click();
    await page.waitForURL(/notice=expired/);
    expect(await page.locator('[role=status]').textContent()).toContain('expired');
    await shot('05-expired');
    const result = await agent.next('result');
    expect(result).toMatchObject({ ran: false, decision: 'deny' });
    expect((await new FileApprovalStore(join(dir, 'store')).get(request.id as string, Date.now()))?.status).toBe('expired');
    expect(toolRuns()).toHaveLength(1);
  });

  it('a signed link works without a login, once; a forged or reused link is refused', async () => {
    await context.clearCookies();
    const agent = startAgent({ to: 'cfo@example.com', body: 'quarterly numbers' });
    const request = await agent.next('request');
    const approve = request.links?.approve as string;
    const reject = request.links?.reject as string;
    // Forged: the same payload with a signature that is not ours.
    const forged = approve.replace(/\.[A-Za-z0-9_-]+$/, `.${'A'.repeat(43)}`);
    expect((await page.goto(forged))?.status()).toBe(403);
    expect(await page.content()).not.toContain('cfo@example.com');
    expect(await page.locator('[role=status]').textContent()).toContain('not valid');
    await shot('06-forged-link');

    expect((await page.goto(approve))?.status()).toBe(200);
    expect(await page.locator('pre').textContent()).toContain('cfo@example.com');
    await shot('07-link');
    await page.locator('input[name=reason]').fill('checked with finance');
    await page.locator('button[type=submit]').click();
    await page.locator('h1', { hasText: 'Approved' }).waitFor();
    await shot('08-link-approved');
    const result = await agent.next('result');
    expect(result).toMatchObject({ ran: true, decision: 'allow', by: 'signed-link' });
    expect(toolRuns()).toHaveLength(2);

    // Reused: the same link, and the other answer's link, are refused now.
    expect((await page.goto(approve))?.status()).toBe(409);
    expect(await page.locator('[role=status]').textContent()).toContain('approved by signed-link: checked with finance');
    await shot('09-link-reused');
    expect((await page.goto(reject))?.status()).toBe(409);
    expect(toolRuns()).toHaveLength(2);
  });

  it('the strict Content-Security-Policy broke nothing (no console errors)', () => {
    expect(consoleErrors.filter((text) => !text.includes('status of 403') && !text.includes('status of 409'))).toEqual([]);
  });
});
