// Attacks on the approvals page, in a real headless Chromium. The model controls the tool names and inputs shown on
// the page; a site of another origin tries to make a signed-in approver's browser answer. The approver here is
// signed in by ambient authority (every request from the browser is alice's, as with HTTP Basic or a trusted
// network): the browser sends that across sites too, so only the handler's own defences stand in the way.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentPolicy, InMemoryApprovalStore, type ApprovalRequest, type ApprovalRequestRef, type ApprovalState, type ApprovalStore } from '@agentpolicy/core';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { approvalLinks } from './approval-links.js';
import { createApprovalsHandler } from './approvals-handler.js';
import { toNodeHandler } from './node-handler.js';

const CHROMIUM = '/usr/bin/chromium';
const SECRET = 'a-page-attack-secret-of-at-least-32-bytes!';
/** A tool name the model made up (names have no spaces; the policy allows it by name). */
const HOSTILE_NAME = 'x"onmouseover="alert(1)"<b>bold</b><svg/onload=alert("name")>';

const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: the approvals page attack tests need Debian's chromium (.ci/run installs it)`);
  console.warn(`\n!!! SKIPPING the Chromium approvals page attack tests: ${CHROMIUM} is not installed (apt-get install -y chromium) !!!\n`);
}

/** A store that shows what a hostile party with write access to it (or on the way to it) made of a request. */
class TamperedStore implements ApprovalStore {
  readonly edits = new Map<string, (state: ApprovalState) => ApprovalState>();
  constructor(private readonly inner: InMemoryApprovalStore) {}
  create(request: ApprovalRequest) {
    return this.inner.create(request);
  }
  async get(id: string, now: number) {
    const state = await this.inner.get(id, now);
    return state && this.edits.has(id) ? this.edits.get(id)?.(state) : state;
  }
  async listPending(sessionId: string | undefined, now: number) {
    return (await this.inner.listPending(sessionId, now)).map((state) => this.edits.get(state.id)?.(state) ?? state);
  }
  resolve(...args: Parameters<InMemoryApprovalStore['resolve']>) {
    return this.inner.resolve(...args);
  }
  consume(...args: Parameters<InMemoryApprovalStore['consume']>) {
    return this.inner.consume(...args);
  }
}

describe.skipIf(!available)('attacks on the approvals page in a real browser', () => {
  const inner = new InMemoryApprovalStore();
  const store = new TamperedStore(inner);
  const session = AgentPolicy.fromDict({ tools: { allow: ['*', HOSTILE_NAME] }, approval: { require_for: [{ tool: '*' }] } }).session({ id: 'session-1', approvals: inner, approvalSecret: SECRET });
  const servers: Server[] = [];
  let dir: string;
  let base: string; // the handler, http://127.0.0.1:<port>
  let crossSite: string; // the attacker, http://localhost:<port> (another site)
  let sameSite: string; // the attacker on another port of the same host (same site, another origin)
  let attackerPage = '';
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];

  const raise = async (name: string, input: unknown) => {
    const decision = await session.checkTool(name, { input });
    if (!decision.approvalRequest) throw new Error(`no approval request: ${decision.reason}`);
    return decision.approvalRequest;
  };
  const status = async (id: string) => (await inner.get(id, Date.now()))?.status;
  const listen = async (listener: Parameters<typeof createServer>[1]) => {
    const server = createServer(listener);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  };
  const article = (id: string) => page.locator(`article[data-request-id="${id}"]`);
  /** Where each character of `text` is drawn, left to right, inside the request's input (or its whole article). */
  const drawnOrder = (id: string, text: string, selector = 'pre') =>
    article(id)
      .locator(selector)
      .first()
      .evaluate((element, wanted) => {
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        const chars: { node: Text; offset: number }[] = [];
        let all = '';
        for (let node = walker.nextNode() as Text | null; node; node = walker.nextNode() as Text | null) {
          for (let i = 0; i < node.data.length; i++) chars.push({ node, offset: i });
          all += node.data;
        }
        const at = all.indexOf(wanted);
        if (at < 0) return null;
        return chars.slice(at, at + wanted.length).map(({ node, offset }) => {
          const range = document.createRange();
          range.setStart(node, offset);
          range.setEnd(node, offset + 1);
          const box = range.getBoundingClientRect();
          return { x: Math.round(box.left), y: Math.round(box.top) };
        });
      }, text);
  const expectDrawnInOrder = (boxes: { x: number; y: number }[] | null, label: string) => {
    expect(boxes, `${label}: not found`).not.toBeNull();
    for (let i = 1; i < (boxes?.length ?? 0); i++) {
      const [a, b] = [boxes?.[i - 1], boxes?.[i]] as [{ x: number; y: number }, { x: number; y: number }];
      expect(b.y > a.y || (b.y === a.y && b.x > a.x), `${label}: character ${i} is drawn before character ${i - 1}`).toBe(true);
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentpolicy-approvals-attacks-'));
    const handler = createApprovalsHandler({ store, secret: SECRET, basePath: '/approvals', authorize: () => ({ id: 'alice' }) });
    const handlerPort = await listen(toNodeHandler(handler));
    base = `http://127.0.0.1:${handlerPort}`;
    const attackerPort = await listen((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(attackerPage);
    });
    crossSite = `http://localhost:${attackerPort}`;
    sameSite = `http://127.0.0.1:${attackerPort}`;
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1000, height: 800 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    dialogs.length = 0;
  });

  describe('what the model wrote is shown as text, exactly', () => {
    it('script, event handlers, closing tags, javascript: URLs, attribute breakouts and CSS stay text', async () => {
      const hostile = [
        '<script>alert("script")</script>',
        '<img src=x onerror=alert("img")>',
        '</textarea><svg onload=alert("svg")>',
        '</pre></article><form action="https://evil.example/"><button>Approve</button></form>',
        '" onmouseover="alert(\'attr\')" x="',
        "' autofocus onfocus='alert(1)' x='",
        '<a href="javascript:alert(\'link\')">details</a>',
        '</style><style>*{display:none!important}</style>',
        '<div style="position:fixed;inset:0;background:white;z-index:9">all clear</div>',
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
        '<!--',
        '<base href="https://evil.example/">',
      ];
      const input = Object.fromEntries(hostile.map((text, i) => [`k${i}${text}`, text]));
      const request = await raise(HOSTILE_NAME, input);
      await page.goto(`${base}/approvals/`);
      const item = article(request.id);
      await expect.poll(() => item.count()).toBe(1);
      // The input reads exactly as its JSON; the name as given.
      expect(await item.locator('pre[data-field="input"]').textContent()).toBe(JSON.stringify(input, null, 2));
      expect(await item.locator('h2').textContent()).toBe(`tool ${HOSTILE_NAME}`);
      // Nothing of it became markup: the page has only its own elements, no handler attributes, no extra forms.
      const markup = await page.evaluate(() => ({
        tags: [...new Set([...document.querySelectorAll('*')].map((element) => element.tagName.toLowerCase()))].sort(),
        handlers: [...document.querySelectorAll('*')].flatMap((element) => [...element.attributes].map((a) => a.name)).filter((name) => name.startsWith('on') || name === 'style' || name === 'href' || name === 'src'),
        forms: [...document.forms].map((form) => form.action),
        styleSheets: document.styleSheets.length,
        hidden: [...document.querySelectorAll('article, button')].filter((element) => getComputedStyle(element).display === 'none').length,
      }));
      expect(markup.tags.filter((tag) => ['script', 'img', 'svg', 'a', 'b', 'i', 'div', 'textarea', 'base', 'iframe'].includes(tag))).toEqual([]);
      expect(markup.handlers).toEqual([]);
      expect(markup.forms.every((action) => action.startsWith(`${base}/approvals/`))).toBe(true);
      expect(markup.styleSheets).toBe(1);
      expect(markup.hidden).toBe(0);
      await item.locator('pre').hover();
      await item.locator('h2').hover();
      expect(dialogs).toEqual([]);
      expect(page.url()).toBe(`${base}/approvals/`);
      expect(await status(request.id)).toBe('pending');
    });

    it('a right-to-left override cannot make an address or amount read differently from what is stored', async () => {
      // Stored: "moc.live@ecila" and "0001". With U+202E in front, a browser draws them as "alice@evil.com" and
      // "1000" — the approver would read an address and an amount that are not the ones approved.
      const input = { to: '\u202Emoc.live@ecila', amount: 'USD \u202E0001', note: 'ok\u2066\u2067', memo: 'pay \u200Fto 42' };
      const request = await raise('send_money', input);
      await page.goto(`${base}/approvals/`);
      const pre = article(request.id).locator('pre[data-field="input"]');
      await expect.poll(() => pre.count()).toBe(1);
      expectDrawnInOrder(await drawnOrder(request.id, 'moc.live@ecila'), 'the address');
      expectDrawnInOrder(await drawnOrder(request.id, '0001'), 'the amount');
      expectDrawnInOrder(await drawnOrder(request.id, 'to 42'), 'the memo');
      // The hidden characters are shown, in JSON's own notation (so the text still reads as the stored value).
      const text = (await pre.textContent()) ?? '';
      expect(text).not.toMatch(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
      expect(text).toContain('"\\u202emoc.live@ecila"');
      expect(JSON.parse(text)).toEqual(input);
      expect(await article(request.id).locator('[data-field="input-hidden"]').isVisible()).toBe(true);
    });

    it('right-to-left letters next to numbers cannot reorder them', async () => {
      // No control character at all: a Hebrew letter before "1000 50" makes the browser draw "50 1000 א".
      const input = { amount: 'א 1000 50', iban: 'DE89 3704 0044 0532 0130 00 ש' };
      const request = await raise('send_money', input);
      await page.goto(`${base}/approvals/`);
      await expect.poll(() => article(request.id).count()).toBe(1);
      expectDrawnInOrder(await drawnOrder(request.id, '1000 50'), 'the amount');
      expectDrawnInOrder(await drawnOrder(request.id, 'DE89 3704 0044 0532 0130 00'), 'the IBAN');
      expect(JSON.parse((await article(request.id).locator('pre').textContent()) ?? '')).toEqual(input);
    });

    it('invisible characters are shown; look-alike letters are marked', async () => {
      // Zero-width space, word joiner, soft hyphen, a tag character and a variation selector hide text; Cyrillic
      // "а" and "о" look like Latin ones.
      const input = { to: 'ceo@pаypal.com', cc: 'bob\u200b@example.com', subject: 'in\u2060voice\u00ad', hidden: 'x\u{E0041}\u{E0042}', vs: 'ok\ufe0f', name: 'Bоb' };
      const request = await raise('send_email', input);
      await page.goto(`${base}/approvals/`);
      const pre = article(request.id).locator('pre[data-field="input"]');
      await expect.poll(() => pre.count()).toBe(1);
      const text = (await pre.textContent()) ?? '';
      expect(JSON.parse(text)).toEqual(input);
      for (const hidden of ['\u200b', '\u2060', '\u00ad', '\ufe0f', '\u{E0041}']) expect(text).not.toContain(hidden);
      for (const escape of ['\\u200b', '\\u2060', '\\u00ad', '\\udb40\\udc41', '\\ufe0f']) expect(text).toContain(escape);
      // Every character outside ASCII is marked, so "pаypal" cannot pass for "paypal".
      const marked = await pre.locator('mark').allTextContents();
      expect(marked).toEqual(expect.arrayContaining(['а', 'о']));
      const [plain, highlighted] = await pre.evaluate((element) => [getComputedStyle(element).backgroundColor, getComputedStyle(element.querySelector('mark') as Element).backgroundColor]);
      expect(highlighted).not.toBe(plain);
      expect(await article(request.id).locator('[data-field="input-hidden"]').isVisible()).toBe(true);
    });

    it('a long input cannot push what matters out of sight: it is all on the page, above the buttons', async () => {
      // 200 harmless keys, then the one that matters; in a box of fixed height it would sit below the fold of the
      // box while the Approve button sits right under it.
      const input: Record<string, string> = {};
      for (let i = 0; i < 200; i++) input[`field${i}`] = 'harmless';
      input.wire_to = 'ATTACKER-ACCOUNT';
      input.note = `${' '.repeat(1000)}AND-DELETE-EVERYTHING`;
      const request = await raise(`deploy_${'x'.repeat(240)}`, input);
      await page.goto(`${base}/approvals/`);
      const item = article(request.id);
      await expect.poll(() => item.count()).toBe(1);
      const layout = await item.evaluate((element) => {
        const pre = element.querySelector('pre') as HTMLElement;
        const approve = element.querySelector('button[value=approve]') as HTMLElement;
        const find = (needle: string) => {
          const node = [...pre.childNodes].find((child) => child.textContent?.includes(needle)) ?? pre.firstChild;
          const range = document.createRange();
          const text = node?.textContent ?? '';
          range.setStart(node as Node, text.indexOf(needle));
          range.setEnd(node as Node, text.indexOf(needle) + needle.length);
          return range.getBoundingClientRect().bottom + window.scrollY;
        };
        return {
          clipped: pre.scrollHeight > pre.clientHeight + 1,
          wire: find('ATTACKER-ACCOUNT'),
          deleted: find('AND-DELETE-EVERYTHING'),
          approve: approve.getBoundingClientRect().top + window.scrollY,
          pageWidth: document.documentElement.scrollWidth,
          viewport: window.innerWidth,
        };
      });
      expect(layout.clipped).toBe(false);
      expect(layout.wire).toBeLessThan(layout.approve);
      expect(layout.deleted).toBeLessThan(layout.approve);
      // A 250-character tool name without a space does not push the page sideways.
      expect(layout.pageWidth).toBeLessThanOrEqual(layout.viewport);
    });

    it('an input cut when recorded says so, visibly, above the buttons', async () => {
      const request = await raise('send_email', { to: 'boss@example.com', body: `${'benign '.repeat(200)}AND WIRE THE MONEY` });
      await page.goto(`${base}/approvals/`);
      const warning = article(request.id).locator('[data-field="input-cut"]');
      expect(await warning.isVisible()).toBe(true);
      expect(await warning.textContent()).toContain('Approving covers the whole input');
      const [warned, button] = await Promise.all([warning.boundingBox(), article(request.id).locator('button[value=approve]').boundingBox()]);
      expect((warned?.y ?? Infinity) < (button?.y ?? 0)).toBe(true);
    });

    it('an input changed in the store after the request was raised is flagged: it is not what approving covers', async () => {
      const request = await raise('send_email', { to: 'attacker@evil.example' });
      // Someone with write access to the store (or between the handler and it) rewrites what the page shows.
      store.edits.set(request.id, (state) => ({ ...state, action: { ...state.action, input: { to: 'boss@example.com' } } as ApprovalState['action'] }));
      await page.goto(`${base}/approvals/`);
      expect(await article(request.id).locator('[data-field="input-cut"]').isVisible()).toBe(true);
      store.edits.delete(request.id);
    });
  });

  describe('another site cannot answer for the signed-in approver', () => {
    let request: ApprovalRequestRef;
    let links: { approve: string; reject: string };
    const token = (link: string) => new URL(link).pathname.split('/').pop() as string;

    beforeAll(async () => {
      request = await raise('transfer', { to: 'attacker', amount: 1_000_000 });
      links = approvalLinks(request, { handlerUrl: `${base}/approvals`, secret: SECRET });
    });

    const attack = async (origin: string, html: string) => {
      attackerPage = `<!doctype html><html><body>${html}</body></html>`;
      await page.goto(`${origin}/`);
      await page.waitForLoadState('load');
      await page.waitForTimeout(300);
    };
    const autoSubmit = (action: string, fields: Record<string, string>, enctype = 'application/x-www-form-urlencoded') =>
      `<form id="f" method="post" enctype="${enctype}" action="${action}">${Object.entries(fields)
        .map(([name, value]) => `<input type="hidden" name='${name}' value='${value}'>`)
        .join('')}</form><script>document.getElementById('f').submit()</script>`;

    for (const [label, site] of [
      ['another site', () => crossSite],
      ['another port of the same host', () => sameSite],
    ] as const) {
      it(`form posts from ${label} (urlencoded, multipart, text/plain) answer nothing`, async () => {
        const target = `${base}/approvals/requests/${request.id}`;
        for (const enctype of ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']) {
          await attack(site(), autoSubmit(target, { answer: 'approve', csrf: 'guessed', reason: 'csrf' }, enctype));
          await page.waitForURL(`${target}`);
          expect(await page.textContent('body')).not.toContain('Approved');
        }
        // JSON smuggled in a text/plain form: {"answer":"approve","x":"="}
        await attack(site(), autoSubmit(`${base}/approvals/api/requests/${request.id}/resolve`, { '{"answer":"approve","x":"': '"}' }, 'text/plain'));
        // A signed link's button, posted from there, is not recorded as alice's answer either.
        await attack(site(), autoSubmit(`${base}/approvals/link`, { token: token(links.approve), reason: 'csrf' }));
        expect(await page.textContent('body')).toMatch(/cross-site|another origin/);
        expect(await status(request.id)).toBe('pending');
      });

      it(`fetch from ${label} (no-cors, text/plain, credentials) answers nothing`, async () => {
        await attack(
          site(),
          `<script>
            const api = ${JSON.stringify(`${base}/approvals/api/requests/${request.id}/resolve`)};
            const body = JSON.stringify({ answer: 'approve', reason: 'fetch' });
            window.done = Promise.allSettled([
              fetch(api, { method: 'POST', mode: 'no-cors', credentials: 'include', body }),
              fetch(api, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body }),
              fetch(api, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'application/json' }, body }),
              fetch(api, { method: 'POST', mode: 'cors', credentials: 'include', headers: { 'content-type': 'application/json' }, body }),
              fetch(${JSON.stringify(`${base}/approvals/api/links/redeem`)}, { method: 'POST', mode: 'no-cors', credentials: 'include', body: JSON.stringify({ token: ${JSON.stringify(token(links.approve))} }) }),
              navigator.sendBeacon(api, new Blob([body], { type: 'text/plain' })),
            ]).then((results) => results.map((r) => r.status + ':' + (r.value?.type ?? r.reason)));
          </script>`,
        );
        const results = await page.evaluate(() => (window as unknown as { done: Promise<string[]> }).done);
        // The CORS request is refused by the browser (no Access-Control-Allow-Origin is ever sent).
        expect(results[3]).toMatch(/^rejected:/);
        expect(await status(request.id)).toBe('pending');
      });
    }

    it('GETs from another site (images, prefetch, a top-level link) answer nothing', async () => {
      await attack(
        crossSite,
        `<img src="${links.approve}"><img src="${base}/approvals/?notice=approved"><link rel="prefetch" href="${links.approve}"><link rel="prerender" href="${links.approve}">
         <iframe src="${links.approve}"></iframe>`,
      );
      await page.goto(links.approve);
      expect(await status(request.id)).toBe('pending');
    });

    it('the page and a link page cannot be framed by another site (clickjacking)', async () => {
      for (const target of [`${base}/approvals/`, links.approve]) {
        await attack(crossSite, `<iframe id="f" src="${target}" style="opacity:0.01;width:800px;height:600px"></iframe>`);
        const framed = page.frames().filter((frame) => frame !== page.mainFrame());
        expect(framed).toHaveLength(1);
        const content = await framed[0]?.content().catch(() => '');
        expect(content ?? '').not.toContain(request.id);
        expect(content ?? '').not.toContain('Approve');
      }
      // The same origin cannot frame it either (frame-ancestors 'none').
      attackerPage = '';
      expect(await status(request.id)).toBe('pending');
    });

    it('a link token does not leave the page in a Referer, and the page loads nothing from anywhere', async () => {
      const requested: string[] = [];
      page.on('request', (r) => requested.push(r.url()));
      await page.goto(links.reject);
      await page.locator('button[type=submit]').waitFor();
      page.removeAllListeners('request');
      expect(requested).toEqual([links.reject]);
      const policy = await page.evaluate(() => document.querySelector('meta[name=referrer]')?.getAttribute('content'));
      expect(policy).toBe('same-origin');
      expect(await status(request.id)).toBe('pending');
    });
  });
});
