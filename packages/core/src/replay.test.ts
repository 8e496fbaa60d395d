import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, createAuditLog, replayAuditLog, type ReplayChange } from './index.js';
import { parseRecord, readLines } from './audit-verify.js';
import type { AuditDecisionRecord } from './audit-log.js';
import { ruleId } from './format-report.js';
import { main } from './run-cli.js';
import { useTempDirs } from './test-support/temp-dirs.js';

const OLD = `budget:\n  max_spend: 50\ntools:\n  block: ["delete_*"]\nnetwork:\n  block: [evil.example]\napproval:\n  require_for:\n    - tool: send_email\n    - cost_gt: 2\n`;
const NEW = `budget:\n  max_spend: 20\ntools:\n  allow: [search, read_file, send_email, deploy]\nnetwork:\n  block: [evil.example, api.github.com]\napproval:\n  require_for:\n    - tool: deploy\n    - cost_gt: 2\nrules:\n  - deny: late reads are refused\n    tool: read_file\n    if: { input.i: { gt: 400 } }\nlimits:\n  - tool: search\n    max_calls: 30\n    per: session\n`;

const tempDir = useTempDirs('agentpolicy-replay-');

// A small deterministic generator (mulberry32), so the recorded traffic is the same on every run.
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOOLS = ['search', 'read_file', 'send_email', 'deploy', 'delete_db', 'shell'];
const URLS = ['https://api.github.com/repos/a/b', 'https://docs.python.org/3/', 'https://evil.example/x', 'https://uploads.api.github.com/x', 'https://example.com/'];
const COSTS = [0, 0, 0.01, 0.25, 0.5, 3];

/** Records `sessions × perSession` decisions under OLD into an audit log; returns its path. */
async function recordTraffic(dir: string, sessions: number, perSession: number): Promise<string> {
  const path = join(dir, 'audit.jsonl');
  const log = createAuditLog(path);
  const policy = AgentPolicy.fromYamlString(OLD);
  const next = random(7);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;
  for (let s = 0; s < sessions; s++) {
    const session = policy.session({ id: `s${s}`, sinks: [log], telemetry: false });
    for (let i = 0; i < perSession; i++) {
      const roll = next();
      const approved = next() < 0.2;
      const cost = pick(COSTS);
      if (roll < 0.5) await session.checkTool(pick(TOOLS), { cost, approved, input: { i } });
      else if (roll < 0.85) await session.checkHttp(pick(URLS), { cost, approved, method: next() < 0.5 ? 'GET' : 'POST' });
      else await session.checkCost(cost, { source: 'model:openai/gpt-4o', approved });
    }
  }
  log.close();
  return path;
}

describe('replay', () => {
  it('re-decides 10,400 recorded decisions under a changed policy exactly as deciding each action directly would', async () => {
    const dir = tempDir();
    const path = await recordTraffic(dir, 20, 520);
    const changes: ReplayChange[] = [];
    const policy = AgentPolicy.fromYamlString(NEW);
    const report = replayAuditLog(path, policy, { onChange: (change) => changes.push(change) });
    expect(report.decisions).toBe(10_400);
    expect(report.sessions).toBe(20);
    expect(report.recordedPolicies).toEqual([AgentPolicy.fromYamlString(OLD).hash]);

    // Decide every recorded action directly, in order, with a fresh session of the new policy per recorded session.
    const direct = new Map<string, ReturnType<AgentPolicy['session']>>();
    const transitions: Record<string, number> = {};
    const expected = new Map<string, { decision: string; rule: string; reason: string }>();
    let refused = 0;
    for (const line of readLines(path)) {
      const parsed = parseRecord(line.text);
      if (parsed.record === null || parsed.record.kind !== 'decision') continue;
      const record = parsed.record as AuditDecisionRecord;
      const old = record.decision;
      let session = direct.get(record.sessionId);
      if (!session) direct.set(record.sessionId, (session = policy.session({ telemetry: false })));
      const action = old.action;
      const approved = old.approved;
      const decision =
        action.type === 'tool'
          ? await session.checkTool(action.name, { cost: action.cost, approved, input: action.input })
          : action.type === 'http'
            ? await session.checkHttp(action.url, { cost: action.cost, approved, ...(action.method ? { method: action.method } : {}) })
            : await session.checkCost(action.cost, { source: action.source, approved });
      const key = `${old.decision} → ${decision.decision}`;
      transitions[key] = (transitions[key] ?? 0) + 1;
      if (decision.decision !== old.decision) {
        expected.set(old.id, { decision: decision.decision, rule: ruleId(decision.rule), reason: decision.reason });
        if (old.decision === 'allow') refused += Math.round(action.cost * 1e9);
      }
    }
    expect(report.transitions).toEqual(transitions);
    expect(report.changed).toBe(expected.size);
    expect(changes).toHaveLength(expected.size);
    for (const change of changes) expect(change.new).toEqual(expected.get(change.decisionId));
    expect(report.refusedSpend).toBe(refused / 1e9);
    // The changed policy changes a lot, in every direction the rules give.
    expect(report.changed).toBeGreaterThan(1000);
    const rules = report.byRule.map((group) => group.rule);
    expect(rules).toEqual(expect.arrayContaining(['network.block:api.github.com', 'tools.allow', 'budget.max_spend', 'approval[0]']));
    // Conditions read the recorded input; limits count per session.
    expect(rules.some((rule) => rule.startsWith('rules[0]'))).toBe(true);
    expect(rules.some((rule) => rule.startsWith('limits[0]'))).toBe(true);
    expect(report.byRule.reduce((sum, group) => sum + group.count, 0)).toBe(report.changed);
    expect(report.byRule.find((group) => group.rule === 'network.block:api.github.com')?.examples[0]?.new.reason).toContain('api.github.com');
  });

  it('is pure: the log is unchanged and no store or approver is involved; settlements and recorded usage count as spent', async () => {
    const dir = tempDir();
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const session = new AgentPolicy({ budget: 100, pricing: { m: { input: 1, output: 1 } } }).session({ id: 'x', sinks: [log], telemetry: false });
    const reservation = await session.reserve(1, { source: 'model:m' });
    await reservation.commit(9); // the real cost was far above the estimate
    await session.recordUsage({ model: 'm', inputTokens: 1_000_000, outputTokens: 0 });
    await session.checkTool('search', { cost: 0.5 });
    log.close();
    const before = readFileSync(path, 'utf8');
    const report = replayAuditLog(path, new AgentPolicy({ budget: 10 }));
    expect(readFileSync(path, 'utf8')).toBe(before);
    // $9 settled + $1 usage = $10 of $10: the $0.50 tool call no longer fits.
    expect(report.transitions).toEqual({ 'allow → allow': 2, 'allow → deny': 1 });
    expect(report.kept).toBe(1);
    expect(report.refusedSpend).toBe(0.5);
  });

  it('CLI: counts, changes by rule, refused spend, --json and --html; a missing policy or log is exit 2', async () => {
    const dir = tempDir();
    const path = await recordTraffic(dir, 2, 200);
    writeFileSync(join(dir, 'new.yaml'), NEW);
    const out: string[] = [];
    const err: string[] = [];
    const html = join(dir, 'replay.html');
    expect(await main(['replay', '--policy', join(dir, 'new.yaml'), path, '--html', html], (line) => out.push(line), (line) => err.push(line))).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/^replayed 400 decisions of 2 sessions/);
    expect(text).toContain('old → new');
    expect(text).toContain('changes by rule');
    expect(text).toMatch(/network\.block:api\.github\.com: \d+ \(allow → deny \d+/);
    expect(text).toMatch(/spend that would have been refused: \$\d+\.\d\d/);
    const page = readFileSync(html, 'utf8');
    expect(page).toContain('<h2>Old → new</h2>');
    expect(page).not.toMatch(/<script/);
    const json: string[] = [];
    expect(await main(['replay', '--json', '--policy', join(dir, 'new.yaml'), path], (line) => json.push(line))).toBe(0);
    expect(JSON.parse(json.join('\n'))).toMatchObject({ decisions: 400, sessions: 2 });
    expect(await main(['replay', path], () => undefined, () => undefined)).toBe(2);
    expect(await main(['replay', '--policy', join(dir, 'none.yaml'), path], () => undefined, () => undefined)).toBe(2);
    expect(await main(['replay', '--policy', join(dir, 'new.yaml'), join(dir, 'none.jsonl')], () => undefined, () => undefined)).toBe(2);
  });

  it('a forged or garbled line is skipped and counted, never replayed as if real', async () => {
    const dir = tempDir();
    const path = await recordTraffic(dir, 1, 10);
    writeFileSync(path, `${readFileSync(path, 'utf8')}{"kind":"decision","decision":null}\nnot json\n`);
    const report = replayAuditLog(path, AgentPolicy.fromYamlString(NEW));
    expect(report.decisions).toBe(10);
    expect(report.unreadableLines).toBe(2);
  });
});
