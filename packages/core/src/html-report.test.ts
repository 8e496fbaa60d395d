import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog } from './audit-log.js';
import { readAuditLog, type AuditLogReport } from './audit-report.js';
import { renderHtmlReport } from './html-report.js';
import { AgentPolicy } from './policy.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const hasChromium = existsSync(CHROMIUM);
const inCi = process.env.CI === 'true';
if (!hasChromium && !inCi) {
  process.stderr.write(`\n!!! ${CHROMIUM} is missing: the HTML report browser test is SKIPPED (apt-get install -y chromium; under CI=true this fails) !!!\n\n`);
}

let dir: string;
let report: AuditLogReport;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentpolicy-html-'));
  const policy = AgentPolicy.fromDict({
    budget: { max_spend: 1 },
    tools: { allow: ['search_docs', 'send_email', '<script>alert(1)</script>'], block: ['delete_*'] },
    network: { allow: ['docs.python.org'] },
    approval: { require_for: [{ tool: 'send_email' }] },
    pricing: { 'mock-model': { input: 10, output: 20 } },
  });
  const log = createAuditLog(join(dir, 'audit.jsonl'));
  for (const id of ['agent-a', 'agent-b']) {
    const session = policy.session({ id, sinks: [log] });
    for (let i = 0; i < 12; i++) {
      await session.checkTool('search_docs', { cost: 0.03 });
      if (i % 4 === 0) await session.checkTool('delete_prod');
      if (i % 5 === 0) await session.checkTool('send_email');
      if (i % 6 === 0) await session.checkHttp('https://evil.example.com/exfil?q=1');
      const call = await session.reserveModelCall({ model: 'mock-model', inputTokens: 1000, maxOutputTokens: 1000 });
      await call.commit({ inputTokens: 1000, outputTokens: 200 });
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await session.checkTool('<script>alert(1)</script>', { cost: 5 });
  }
  log.close();
  report = readAuditLog(join(dir, 'audit.jsonl'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('renderHtmlReport', () => {
  it('is one self-contained page: no script, no external resource, every value escaped', () => {
    const html = renderHtmlReport(report);
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\b(src|href)=/i);
    expect(html).not.toMatch(/@import|url\(/i);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain("default-src 'none'");
  });

  it('renders a live session report too', async () => {
    const session = AgentPolicy.fromDict({ budget: { max_spend: 1 }, tools: { block: ['delete_*'] } }).session({ id: 'live' });
    await session.checkTool('search', { cost: 0.25 });
    await session.checkTool('delete_x');
    const html = renderHtmlReport(session.report(), { title: 'Live run' });
    expect(html).toContain('<title>Live run</title>');
    expect(html).toContain('class="series"');
    expect(html).toContain('tools.block:delete_*');
  });
});

describe.skipIf(!hasChromium && !inCi)('the HTML report in headless Chromium', () => {
  it('renders the chart and tables with no console errors; a screenshot is kept', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is required under CI=true (apt-get install -y chromium)`).toBe(true);
    const { chromium } = await import('playwright-core');
    mkdirSync(ARTIFACTS, { recursive: true });
    const page = join(ARTIFACTS, 'report.html');
    writeFileSync(page, renderHtmlReport(report, { title: 'agentpolicy test report' }));
    const profile = mkdtempSync(join(tmpdir(), 'agentpolicy-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      const tab = await context.newPage();
      const problems: string[] = [];
      tab.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
      });
      tab.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
      tab.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
      const requests: string[] = [];
      tab.on('request', (request) => requests.push(request.url()));
      await tab.goto(pathToFileURL(page).href, { waitUntil: 'load' });

      const seen = await tab.evaluate(() => {
        const chart = document.querySelector('svg.spend-chart') as SVGSVGElement | null;
        const series = [...document.querySelectorAll('svg.spend-chart path.series')] as SVGPathElement[];
        const box = chart?.getBoundingClientRect();
        return {
          title: document.title,
          chart: box ? { width: box.width, height: box.height } : null,
          series: series.map((path) => ({ session: path.dataset['session'], length: path.getTotalLength() })),
          budgetLines: document.querySelectorAll('svg.spend-chart line.budget').length,
          outcomes: [...document.querySelectorAll('table.outcomes tbody tr')].map((row) => [row.querySelector('th')?.textContent, row.querySelector('td.num')?.textContent]),
          outcomeBars: [...document.querySelectorAll('table.outcomes rect')].map((rect) => rect.getBoundingClientRect().width),
          rules: [...document.querySelectorAll('table.rules tbody tr')].map((row) => row.textContent),
          flagged: document.querySelectorAll('table.flagged tbody tr').length,
          flaggedText: document.querySelector('table.flagged')?.textContent ?? '',
          sessions: document.querySelectorAll('table.sessions tbody tr').length,
          scripts: document.querySelectorAll('script').length,
        };
      });
      const totals = { allow: 0, deny: 0, require_approval: 0 };
      for (const s of report.sessions) for (const key of Object.keys(totals) as (keyof typeof totals)[]) totals[key] += s.decisionSummary[key];

      expect(seen.title).toBe('agentpolicy test report');
      expect(seen.chart?.width).toBeGreaterThan(300);
      expect(seen.chart?.height).toBeGreaterThan(100);
      expect(seen.series.map((s) => s.session).sort()).toEqual(['agent-a', 'agent-b']);
      expect(seen.series.every((s) => s.length > 100)).toBe(true);
      expect(seen.budgetLines).toBe(1);
      expect(seen.outcomes).toEqual([
        ['allow', String(totals.allow)],
        ['deny', String(totals.deny)],
        ['require_approval', String(totals.require_approval)],
      ]);
      expect(seen.outcomeBars.every((width) => width > 0)).toBe(true);
      expect(seen.rules.some((row) => row?.includes('tools.block:delete_*'))).toBe(true);
      expect(seen.rules.some((row) => row?.includes('budget.max_spend'))).toBe(true);
      expect(seen.flagged).toBe(totals.deny + totals.require_approval);
      expect(seen.flaggedText).toContain('<script>alert(1)</script>');
      expect(seen.flaggedText).toContain('exceeds the remaining budget');
      expect(seen.sessions).toBe(2);
      expect(seen.scripts).toBe(0);
      expect(requests.filter((url) => !url.startsWith('file:'))).toEqual([]);
      await tab.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
      expect(existsSync(join(ARTIFACTS, 'report.png'))).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  }, 90_000);
});
