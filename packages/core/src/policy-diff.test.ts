import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, diffPolicies } from './index.js';
import { main } from './run-cli.js';
import { useTempDirs } from './test-support/temp-dirs.js';

const OLD = `budget:\n  max_spend: 5\ntools:\n  allow: [search, read_file]\n  block: [rm]\nnetwork:\n  block: [twitter.com]\napproval:\n  require_for:\n    - tool: send_email\n    - cost_gt: 1\npricing:\n  m:\n    input: 1\n    output: 2\n`;
const NEW = `budget:\n  max_spend: 2\ntools:\n  allow: [search, deploy]\n  block: [rm, "delete_*"]\nnetwork:\n  block: [twitter.com, api.github.com]\napproval:\n  require_for:\n    - cost_gt: 1\n    - domain: example.com\npricing:\n  m:\n    input: 1\n    output: 3\n`;

const tempDir = useTempDirs('agentpolicy-diff-');

const effects = (a: string, b: string) => diffPolicies(AgentPolicy.fromYamlString(a), AgentPolicy.fromYamlString(b)).changes.map((change) => `${change.direction} ${change.path}: ${change.effect}`);

describe('policy diff', () => {
  it('names every entry and rule added, removed or changed, with its effect in words', () => {
    expect(effects(OLD, NEW)).toEqual([
      'stricter budget.max_spend: budget per session $5.00 → $2.00: sessions may spend less',
      'stricter tools.block: tools matching "delete_*": now blocked (case-insensitive, look-alikes folded)',
      'looser tools.allow: tool deploy: now allowed (was outside the allow-list)',
      'stricter tools.allow: tool read_file: now denied (no longer in the allow-list)',
      'stricter network.block: api.github.com: now blocked, including subdomains',
      'stricter approval.require_for[1]: requests to example.com (and subdomains): now requires approval',
      'looser approval.require_for[0]: tool send_email: no longer requires approval (unless another rule matches)',
      'stricter pricing.m.output: m output: 2 → 3 (costs more, budgets run out sooner)',
    ]);
  });

  it('equal policies written differently have no difference; allow-lists appearing and going are described', () => {
    const reordered = `# same policy\napproval:\n  require_for:\n    - tool: send_email\n    - cost_gt: 1.00\nnetwork:\n  block: [TWITTER.com.]\ntools:\n  block: [rm]\n  allow: [read_file, search]\nbudget:\n  max_spend: "$5.00"\npricing:\n  m: { output: 2, input: 1 }\n`;
    const same = diffPolicies(AgentPolicy.fromYamlString(OLD), AgentPolicy.fromYamlString(reordered));
    expect(same).toMatchObject({ same: true, changes: [] });
    expect(effects('tools:\n  block: [x]\n', 'network:\n  allow: [a.com]\n')).toEqual([
      'looser tools.block: tool x: no longer blocked',
      'stricter network.allow: allow-list introduced: only 1 host entry (a.com) may be used; every other host is now denied',
    ]);
    expect(effects('tools:\n  allow: [a]\n', '{}\n')).toEqual(['looser tools.allow: allow-list removed: every tool not blocked may now be used']);
    expect(effects('{}\n', 'budget:\n  max_spend: 1\n')).toEqual(['stricter budget.max_spend: every session now has a budget of $1.00 (was unlimited)']);
    expect(effects('approval:\n  require_for: [{ tool: a }, { tool: b }]\n', 'approval:\n  require_for: [{ tool: b }, { tool: a }]\n')).toEqual([
      'neutral approval.require_for: the approval rules are in another order: the same actions need approval, but another rule may be the one reported',
    ]);
  });

  it('rules, limits and the mode are compared too', () => {
    const before = 'rules:\n  - deny: no refunds over 100\n    tool: refund\n    if: { input.amount: { gt: 100 } }\n';
    const after = 'mode: shadow\nlimits:\n  - tool: search\n    max_calls: 10\n    per: 1m\n';
    expect(effects(before, after)).toEqual([
      'looser mode: the policy now only reports what it would deny (shadow): nothing is stopped',
      'looser rules[0]: no longer in force: deny tool refund if {"input.amount":{"gt":100}} ("no refunds over 100")',
      'stricter limits[0]: now in force: at most 10 calls per 1m for tool search',
    ]);
  });

  it('CLI: exit 0 when alike, 1 when they differ, 1 for an invalid policy, 2 for a missing file; --json', async () => {
    const dir = tempDir();
    const [a, b, bad] = ['old.yaml', 'new.yaml', 'bad.yaml'].map((name) => join(dir, name)) as [string, string, string];
    writeFileSync(a, OLD);
    writeFileSync(b, NEW);
    writeFileSync(bad, 'tools:\n  block: rm\n');
    const out: string[] = [];
    expect(await main(['diff', a, b], (line) => out.push(line))).toBe(1);
    expect(out).toContain('+ network.block: api.github.com: now blocked, including subdomains');
    expect(out.at(-1)).toBe('8 changes: 6 stricter, 2 looser, 0 neutral');
    expect(await main(['diff', a, a], () => undefined)).toBe(0);
    const json: string[] = [];
    expect(await main(['diff', '--json', a, b], (line) => json.push(line))).toBe(1);
    expect(JSON.parse(json.join('\n')).changes).toHaveLength(8);
    expect(await main(['diff', a, bad], () => undefined, () => undefined)).toBe(1);
    expect(await main(['diff', a, join(dir, 'none.yaml')], () => undefined, () => undefined)).toBe(2);
  });
});
