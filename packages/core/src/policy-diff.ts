import { canonicalJson } from './policy.js';
import type { AgentPolicy } from './policy.js';
import { formatUsd } from './money.js';
import { priceDocument, type NormalizedApprovalRule, type NormalizedPolicy } from './policy-document.js';
import { foldToolName } from './tool-matcher.js';
import { normalizeDomainEntry } from './domain.js';

/** One semantic difference between two policies. */
export interface PolicyChange {
  /** The part of the policy, in the file format: `budget.max_spend`, `tools.block`, `approval.require_for`, `pricing.<model>`… */
  readonly path: string;
  readonly kind: 'added' | 'removed' | 'changed';
  /** The entry concerned (a tool, a domain, a rule, a model), when the change is to one entry of a list or map. */
  readonly entry?: string;
  readonly before?: unknown;
  readonly after?: unknown;
  /** What the change does, in words (e.g. `api.github.com: now blocked, including subdomains`). */
  readonly effect: string;
  /** Whether it lets more through (`looser`), less (`stricter`), or neither clearly (`neutral`). */
  readonly direction: 'stricter' | 'looser' | 'neutral';
}

/** The semantic difference of two policies. */
export interface PolicyDiff {
  readonly oldHash: string;
  readonly newHash: string;
  /** True when the two decide alike (same normalised policy): formatting, order of list entries and comments aside. */
  readonly same: boolean;
  readonly changes: readonly PolicyChange[];
}

const usd = (nanos: number): string => formatUsd(nanos);

function toolKey(entry: string): string {
  try {
    return foldToolName(entry);
  } catch {
    return entry;
  }
}

// Domains compare as they match: lowercased, IDNA, trailing dot dropped, IPs canonical.
function domainKey(entry: string): string {
  const read = normalizeDomainEntry(entry);
  return read.ok ? `${read.wildcard ? '*.' : ''}${read.host}` : entry;
}

function describeRule(rule: NormalizedApprovalRule): string {
  const parts: string[] = [];
  if (rule.action !== undefined) parts.push(`${rule.action} actions`);
  if (rule.tool !== undefined) parts.push(rule.tool.includes('*') ? `tools matching ${JSON.stringify(rule.tool)}` : `tool ${rule.tool}`);
  if (rule.domain !== undefined) parts.push(`requests to ${rule.domain} (and subdomains)`);
  if (rule.costGtNanos !== undefined) parts.push(`cost over ${usd(rule.costGtNanos)}`);
  return parts.length === 0 ? 'every action' : parts.join(' with ');
}

function ruleSpec(rule: NormalizedApprovalRule): Record<string, unknown> {
  return {
    ...(rule.tool !== undefined ? { tool: rule.tool } : {}),
    ...(rule.domain !== undefined ? { domain: rule.domain } : {}),
    ...(rule.action !== undefined ? { action: rule.action } : {}),
    ...(rule.costGtNanos !== undefined ? { cost_gt: rule.costGtNanos / 1e9 } : {}),
  };
}

/**
 * The semantic difference between two policies: entries and rules added, removed or changed, each with its effect
 * in words and its direction (stricter, looser). Compares the normalised policies, so formatting, comments and the
 * order of list entries do not show (the order of approval rules does: the first match is the one reported).
 *
 * @example
 * ```ts
 * for (const change of diffPolicies(AgentPolicy.fromYaml('old.yaml'), AgentPolicy.fromYaml('new.yaml')).changes) {
 *   console.log(`${change.path}: ${change.effect}`);
 * }
 * ```
 */
export function diffPolicies(before: AgentPolicy, after: AgentPolicy): PolicyDiff {
  const a = before.normalized;
  const b = after.normalized;
  const changes: PolicyChange[] = [];
  diffBudget(a, b, changes);
  diffTools(a, b, changes);
  diffNetwork(a, b, changes);
  diffApprovals(a, b, changes);
  diffPricing(a, b, changes);
  diffRulesAndLimits(before, after, changes);
  // Same hash, or entries that differ only in how they are written (case, trailing dot): they decide alike.
  return { oldHash: before.hash, newHash: after.hash, same: before.hash === after.hash || (changes.length === 0 && sameOtherwise(a, b)), changes };
}

// What the comparison does not look at entry by entry: the rest of the normalised policy, as written.
function sameOtherwise(a: NormalizedPolicy, b: NormalizedPolicy): boolean {
  const rest = (policy: NormalizedPolicy) => canonicalJson({ ...policy, tools: null, network: null, approvalRules: null, pricing: [...policy.pricing.keys()] });
  return rest(a) === rest(b);
}

function diffBudget(a: NormalizedPolicy, b: NormalizedPolicy, out: PolicyChange[]): void {
  const old = a.budget;
  const next = b.budget;
  if (old === null && next !== null) {
    out.push({ path: 'budget.max_spend', kind: 'added', after: next.maxSpendNanos / 1e9, effect: `every session now has a budget of ${usd(next.maxSpendNanos)} (was unlimited)`, direction: 'stricter' });
  } else if (old !== null && next === null) {
    out.push({ path: 'budget.max_spend', kind: 'removed', before: old.maxSpendNanos / 1e9, effect: `sessions no longer have a budget (was ${usd(old.maxSpendNanos)}): spending is unlimited`, direction: 'looser' });
  } else if (old !== null && next !== null && old.maxSpendNanos !== next.maxSpendNanos) {
    const lower = next.maxSpendNanos < old.maxSpendNanos;
    out.push({
      path: 'budget.max_spend',
      kind: 'changed',
      before: old.maxSpendNanos / 1e9,
      after: next.maxSpendNanos / 1e9,
      effect: `budget per session ${usd(old.maxSpendNanos)} → ${usd(next.maxSpendNanos)}: sessions may spend ${lower ? 'less' : 'more'}`,
      direction: lower ? 'stricter' : 'looser',
    });
  }
  const softOld = old?.softLimit ?? null;
  const softNew = next?.softLimit ?? null;
  if (softOld !== softNew) {
    const kind = softOld === null ? 'added' : softNew === null ? 'removed' : 'changed';
    out.push({
      path: 'budget.soft_limit',
      kind,
      ...(softOld !== null ? { before: softOld } : {}),
      ...(softNew !== null ? { after: softNew } : {}),
      effect: softNew === null ? 'no soft-limit warning any more' : `the soft-limit warning fires at ${Math.round(softNew * 100)}% of the budget${softOld !== null ? ` (was ${Math.round(softOld * 100)}%)` : ''}`,
      direction: 'neutral',
    });
  }
}

function listDiff(old: readonly string[], next: readonly string[], key: (entry: string) => string): { added: string[]; removed: string[] } {
  const oldKeys = new Set(old.map(key));
  const newKeys = new Set(next.map(key));
  return { added: next.filter((entry) => !oldKeys.has(key(entry))), removed: old.filter((entry) => !newKeys.has(key(entry))) };
}

function diffTools(a: NormalizedPolicy, b: NormalizedPolicy, out: PolicyChange[]): void {
  const name = (entry: string) => (entry.includes('*') ? `tools matching ${JSON.stringify(entry)}` : `tool ${entry}`);
  const blocks = listDiff(a.tools.block, b.tools.block, toolKey);
  for (const entry of blocks.added) out.push({ path: 'tools.block', kind: 'added', entry, effect: `${name(entry)}: now blocked (case-insensitive, look-alikes folded)`, direction: 'stricter' });
  const allowAfter = b.tools.allow ? new Set(b.tools.allow.map(toolKey)) : null;
  for (const entry of blocks.removed) {
    const still = allowAfter !== null && !entry.includes('*') && !allowAfter.has(toolKey(entry));
    out.push({ path: 'tools.block', kind: 'removed', entry, effect: `${name(entry)}: no longer blocked${still ? ', but still denied: not in tools.allow' : ''}`, direction: still ? 'neutral' : 'looser' });
  }
  diffAllowList('tools.allow', a.tools.allow, b.tools.allow, toolKey, (entry) => name(entry), 'tool', out);
}

function diffNetwork(a: NormalizedPolicy, b: NormalizedPolicy, out: PolicyChange[]): void {
  const blocks = listDiff(a.network.block, b.network.block, domainKey);
  for (const entry of blocks.added) out.push({ path: 'network.block', kind: 'added', entry, effect: `${entry}: now blocked, including subdomains`, direction: 'stricter' });
  const allowAfter = b.network.allow ? new Set(b.network.allow.map(domainKey)) : null;
  for (const entry of blocks.removed) {
    const still = allowAfter !== null && !allowAfter.has(domainKey(entry));
    out.push({ path: 'network.block', kind: 'removed', entry, effect: `${entry}: no longer blocked${still ? ', but still denied: not in network.allow' : ' (nor its subdomains)'}`, direction: still ? 'neutral' : 'looser' });
  }
  const host = (entry: string) => (entry.startsWith('*.') ? `subdomains of ${entry.slice(2)}` : entry);
  diffAllowList('network.allow', a.network.allow, b.network.allow, domainKey, host, 'host', out);
}

function diffAllowList(
  path: string,
  old: readonly string[] | null,
  next: readonly string[] | null,
  key: (entry: string) => string,
  name: (entry: string) => string,
  noun: 'tool' | 'host',
  out: PolicyChange[],
): void {
  if (old === null && next === null) return;
  if (old === null && next !== null) {
    out.push({ path, kind: 'added', after: [...next], effect: `allow-list introduced: only ${next.length} ${noun} entr${next.length === 1 ? 'y' : 'ies'} (${next.join(', ')}) may be used; every other ${noun} is now denied`, direction: 'stricter' });
    return;
  }
  if (old !== null && next === null) {
    out.push({ path, kind: 'removed', before: [...old], effect: `allow-list removed: every ${noun} not blocked may now be used`, direction: 'looser' });
    return;
  }
  const entries = listDiff(old as readonly string[], next as readonly string[], key);
  for (const entry of entries.added) out.push({ path, kind: 'added', entry, effect: `${name(entry)}: now allowed (was outside the allow-list)`, direction: 'looser' });
  for (const entry of entries.removed) out.push({ path, kind: 'removed', entry, effect: `${name(entry)}: now denied (no longer in the allow-list)`, direction: 'stricter' });
}

function diffApprovals(a: NormalizedPolicy, b: NormalizedPolicy, out: PolicyChange[]): void {
  const key = (rule: NormalizedApprovalRule) => canonicalJson(ruleSpec({ ...rule, ...(rule.domain !== undefined ? { domain: domainKey(rule.domain) } : {}), ...(rule.tool !== undefined ? { tool: toolKey(rule.tool) } : {}) }));
  const oldKeys = a.approvalRules.map(key);
  const newKeys = b.approvalRules.map(key);
  b.approvalRules.forEach((rule, index) => {
    if (!oldKeys.includes(newKeys[index] as string)) {
      out.push({ path: `approval.require_for[${index}]`, kind: 'added', entry: newKeys[index] as string, after: ruleSpec(rule), effect: `${describeRule(rule)}: now requires approval`, direction: 'stricter' });
    }
  });
  a.approvalRules.forEach((rule, index) => {
    if (!newKeys.includes(oldKeys[index] as string)) {
      out.push({ path: `approval.require_for[${index}]`, kind: 'removed', entry: oldKeys[index] as string, before: ruleSpec(rule), effect: `${describeRule(rule)}: no longer requires approval (unless another rule matches)`, direction: 'looser' });
    }
  });
  const kept = (keys: string[], other: string[]) => keys.filter((k) => other.includes(k));
  const oldOrder = kept(oldKeys, newKeys);
  const newOrder = kept(newKeys, oldKeys);
  if (oldOrder.join('\n') !== newOrder.join('\n')) {
    out.push({ path: 'approval.require_for', kind: 'changed', before: oldOrder, after: newOrder, effect: 'the approval rules are in another order: the same actions need approval, but another rule may be the one reported', direction: 'neutral' });
  }
}

function diffPricing(a: NormalizedPolicy, b: NormalizedPolicy, out: PolicyChange[]): void {
  const models = new Set([...a.pricing.keys(), ...b.pricing.keys()]);
  for (const model of [...models].sort()) {
    const old = a.pricing.get(model);
    const next = b.pricing.get(model);
    const path = `pricing.${model}`;
    if (old === undefined && next !== undefined) {
      out.push({ path, kind: 'added', entry: model, after: priceDocument(next), effect: `${model}: priced by this policy now (instead of the catalog)`, direction: 'neutral' });
    } else if (old !== undefined && next === undefined) {
      out.push({ path, kind: 'removed', entry: model, before: priceDocument(old), effect: `${model}: priced by the catalog now (this policy's price removed)`, direction: 'neutral' });
    } else if (old !== undefined && next !== undefined) {
      const before = priceDocument(old) as Record<string, unknown>;
      const after = priceDocument(next) as Record<string, unknown>;
      for (const field of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
        const x = before[field];
        const y = after[field];
        if (canonicalJson(x) === canonicalJson(y)) continue;
        const higher = typeof x === 'number' && typeof y === 'number' ? y > x : undefined;
        const limit = field.startsWith('max_');
        out.push({
          path: `${path}.${field}`,
          kind: x === undefined ? 'added' : y === undefined ? 'removed' : 'changed',
          entry: model,
          ...(x !== undefined ? { before: x } : {}),
          ...(y !== undefined ? { after: y } : {}),
          effect: `${model} ${field.replace(/_/g, ' ')}: ${x === undefined ? 'unset' : JSON.stringify(x)} → ${y === undefined ? 'unset' : JSON.stringify(y)}${higher === undefined ? '' : limit ? (higher ? ' (larger worst case reserved)' : ' (smaller worst case reserved)') : higher ? ' (costs more, budgets run out sooner)' : ' (costs less)'}`,
          direction: higher === undefined ? 'neutral' : higher ? 'stricter' : 'looser',
        });
      }
    }
  }
}

function diffRulesAndLimits(before: AgentPolicy, after: AgentPolicy, out: PolicyChange[]): void {
  const a = before.toDocument() as Record<string, unknown>;
  const b = after.toDocument() as Record<string, unknown>;
  if ((a.mode ?? 'enforce') !== (b.mode ?? 'enforce')) {
    const shadow = b.mode === 'shadow';
    out.push({ path: 'mode', kind: 'changed', before: a.mode ?? 'enforce', after: b.mode ?? 'enforce', effect: shadow ? 'the policy now only reports what it would deny (shadow): nothing is stopped' : 'the policy is now enforced: what it denies is stopped', direction: shadow ? 'looser' : 'stricter' });
  }
  for (const section of ['rules', 'limits'] as const) {
    const old = Array.isArray(a[section]) ? (a[section] as Record<string, unknown>[]) : [];
    const next = Array.isArray(b[section]) ? (b[section] as Record<string, unknown>[]) : [];
    const oldKeys = old.map(canonicalJson);
    const newKeys = next.map(canonicalJson);
    const describe = (entry: Record<string, unknown>) => {
      if (section === 'limits') return `at most ${String(entry.max_calls)} call${entry.max_calls === 1 ? '' : 's'} per ${String(entry.per)}${entry.scope === 'budget' ? ' per budget' : ''} for ${selectorText(entry)}`;
      const effect = entry.deny !== undefined ? `deny ${selectorText(entry)}` : `require approval for ${selectorText(entry)}`;
      const conditions = entry.if !== undefined ? ` if ${canonicalJson(entry.if)}` : '';
      const unless = entry.unless !== undefined ? ` unless ${canonicalJson(entry.unless)}` : '';
      return `${effect}${conditions}${unless} (${JSON.stringify(entry.deny ?? entry.require_approval)})`;
    };
    next.forEach((entry, index) => {
      if (!oldKeys.includes(newKeys[index] as string)) out.push({ path: `${section}[${index}]`, kind: 'added', after: entry, effect: `now in force: ${describe(entry)}`, direction: entry.mode === 'shadow' ? 'neutral' : 'stricter' });
    });
    old.forEach((entry, index) => {
      if (!newKeys.includes(oldKeys[index] as string)) out.push({ path: `${section}[${index}]`, kind: 'removed', before: entry, effect: `no longer in force: ${describe(entry)}`, direction: entry.mode === 'shadow' ? 'neutral' : 'looser' });
    });
  }
}

function selectorText(entry: Record<string, unknown>): string {
  const parts: string[] = [];
  if (typeof entry.action === 'string') parts.push(`${entry.action} actions`);
  if (typeof entry.tool === 'string') parts.push(`tool ${entry.tool}`);
  if (typeof entry.domain === 'string') parts.push(`requests to ${entry.domain}`);
  return parts.length === 0 ? 'every action' : parts.join(', ');
}

/** The diff as lines: one per change, `+` stricter, `-` looser, `~` neutral. */
export function formatPolicyDiff(diff: PolicyDiff, names: { old?: string; new?: string } = {}): string[] {
  const head = `${names.old ?? 'old'} (sha256 ${diff.oldHash.slice(0, 12)}) → ${names.new ?? 'new'} (sha256 ${diff.newHash.slice(0, 12)})`;
  if (diff.same) return [head, 'no semantic difference: both policies decide every action alike'];
  const mark = { stricter: '+', looser: '-', neutral: '~' } as const;
  const lines = [head];
  for (const change of diff.changes) lines.push(`${mark[change.direction]} ${change.path}: ${change.effect}`);
  if (diff.changes.length === 0) lines.push('~ the policies differ (another hash) in a way this comparison does not describe; compare the files');
  const count = (direction: PolicyChange['direction']) => diff.changes.filter((change) => change.direction === direction).length;
  lines.push(`${diff.changes.length} change${diff.changes.length === 1 ? '' : 's'}: ${count('stricter')} stricter, ${count('looser')} looser, ${count('neutral')} neutral`);
  return lines;
}
