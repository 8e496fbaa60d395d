import type { AuditDecisionRecord, AuditRecord, AuditSettlementRecord } from './audit-log.js';
import { parseRecord, readLines } from './audit-verify.js';
import type { Decision, DecisionValue, RuleRef } from './decision.js';
import { parseTarget } from './domain.js';
import { actionTarget, printable, ruleId } from './format-report.js';
import { formatUsd, nanosToUsd, readCost } from './money.js';
import { escapeHtml } from './html-report.js';
import type { AgentPolicy } from './policy.js';
import type { PreparedAction, Verdict } from './policy-evaluator.js';
import { limitVerdict } from './limit-counter.js';

/** One recorded action whose decision the new policy changes. */
export interface ReplayChange {
  readonly seq: number;
  readonly sessionId: string;
  readonly decisionId: string;
  readonly type: Decision['action']['type'];
  /** The tool name, `METHOD url`, or the cost source. */
  readonly target: string;
  /** USD the action cost (its settled amount when it was settled). */
  readonly cost: number;
  readonly old: { readonly decision: DecisionValue; readonly rule: string; readonly reason: string };
  readonly new: { readonly decision: DecisionValue; readonly rule: string; readonly reason: string };
}

/** The changes one rule accounts for: the new policy's rule when it now stops the action, else the old rule it no longer applies. */
export interface ReplayRuleGroup {
  readonly rule: string;
  readonly count: number;
  /** Counts by `old → new` decision within this rule. */
  readonly transitions: Readonly<Record<string, number>>;
  /** USD of actions allowed before that this rule would now refuse (deny or hold for approval). */
  readonly refusedSpend: number;
  /** Up to `examples` of its changes, in log order. */
  readonly examples: readonly ReplayChange[];
}

/** What replaying an audit log under another policy would change. */
export interface ReplayReport {
  readonly policyHash: string;
  /** The hashes of the policies that made the recorded decisions, in the order first seen. */
  readonly recordedPolicies: readonly string[];
  readonly sessions: number;
  /** Decisions read and replayed. */
  readonly decisions: number;
  /** Decisions whose outcome the new policy changes. */
  readonly changed: number;
  /** Counts by `old → new` decision (e.g. `allow → deny`), every decision included. */
  readonly transitions: Readonly<Record<string, number>>;
  /** The changes grouped by rule, most changes first. */
  readonly byRule: readonly ReplayRuleGroup[];
  /** USD of actions that were allowed and would now be refused (denied or held for approval). */
  readonly refusedSpend: number;
  /** USD of actions that were refused and would now be allowed. */
  readonly newlyAllowedSpend: number;
  /**
   * Decisions that were not the policy's to make and are kept as recorded: invalid input, an ended session, a halt,
   * a failed check, recorded usage (spend that happened), an unpriced model.
   */
  readonly kept: number;
  /** Lines that were not readable records (run `agentpolicy audit verify`). */
  readonly unreadableLines: number;
}

/** Options of {@link replayAuditLog}. */
export interface ReplayOptions {
  /** Changes kept as examples per rule. Default 5. */
  examples?: number;
  /** Called with every change, in log order (all of them, not only the examples). */
  onChange?: (change: ReplayChange) => void;
}

const DECISION_VALUES: readonly DecisionValue[] = ['allow', 'deny', 'require_approval'];
const DECISION_INDEX: Readonly<Record<string, number | undefined>> = { allow: 0, deny: 1, require_approval: 2 };

function transitionsOf(counts: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  DECISION_VALUES.forEach((from, row) =>
    DECISION_VALUES.forEach((to, column) => {
      const count = counts[row * 3 + column] as number;
      if (count > 0) out[`${from} → ${to}`] = count;
    }),
  );
  return out;
}

const KEPT_SECTIONS = new Set<RuleRef['section']>(['input', 'session', 'error', 'halt', 'pricing']);

/** The address a session.lookup refusal names (`rule.address` of a network rule), or undefined. */
function lookupAddress(rule: RuleRef | null | undefined): string | undefined {
  const address = (rule as { address?: unknown } | null | undefined)?.address;
  return rule?.section === 'network' && typeof address === 'string' ? address : undefined;
}

interface SessionState {
  spentNanos: number;
  /** Spend went past the budget (usage recorded after the fact, a settlement above its estimate): every check is denied. */
  exceeded: boolean;
  /** The recorded times of the calls each limit (by index) counted in this session. */
  limits: Map<number, number[]>;
  /** Nanos charged under replay for each decision id that reserved (its settlement adjusts it). */
  held: Map<string, number>;
}

interface Group {
  rule: string;
  count: number;
  counts: Float64Array;
  refused: number;
  examples: ReplayChange[];
}

/**
 * Re-decides every recorded action under `policy`, in log order, one budget per session as the new policy sets it,
 * and reports what would change. Pure: no store is touched, no approver is asked, nothing is recorded. A recorded
 * approval counts as given (a human said yes to exactly that action); a recorded refusal by a human or an approver
 * stands wherever the new policy would still ask.
 */
export class Replayer {
  private readonly sessions = new Map<string, SessionState>();
  private readonly groups = new Map<string, Group>();
  // Counts by old × new decision (allow, deny, require_approval).
  private readonly counts = new Float64Array(9);
  private readonly recorded: string[] = [];
  private readonly examples: number;
  // Verdicts that fit the budget depend on the action, its cost and the approval only: memoised (bounded).
  private readonly verdicts = new Map<string, Verdict>();
  private readonly ruleIds = new WeakMap<object, string>();
  private readonly memoable: boolean;
  private decisions = 0;
  private changed = 0;
  private kept = 0;
  private refusedNanos = 0;
  private allowedNanos = 0;
  unreadableLines = 0;

  constructor(
    readonly policy: AgentPolicy,
    private readonly options: ReplayOptions = {},
  ) {
    this.examples = options.examples ?? 5;
    // Rules with conditions read the input, method and path: such verdicts are not memoised by name.
    this.memoable = policy.normalized.rules.length === 0;
  }

  /** Replays one record (decision or settlement; other kinds are skipped). */
  add(record: AuditRecord): void {
    if (record.kind === 'decision') this.decision(record);
    else if (record.kind === 'settlement') this.settlement(record);
  }

  /** The report so far. */
  report(): ReplayReport {
    const byRule = [...this.groups.values()]
      .sort((a, b) => b.count - a.count || a.rule.localeCompare(b.rule))
      .map((group) => ({ rule: group.rule, count: group.count, transitions: transitionsOf(group.counts), refusedSpend: nanosToUsd(group.refused), examples: group.examples }));
    return {
      policyHash: this.policy.hash,
      recordedPolicies: [...this.recorded],
      sessions: this.sessions.size,
      decisions: this.decisions,
      changed: this.changed,
      transitions: transitionsOf(this.counts),
      byRule,
      refusedSpend: nanosToUsd(this.refusedNanos),
      newlyAllowedSpend: nanosToUsd(this.allowedNanos),
      kept: this.kept,
      unreadableLines: this.unreadableLines,
    };
  }

  private state(sessionId: string): SessionState {
    let state = this.sessions.get(sessionId);
    if (state === undefined) {
      state = { spentNanos: 0, exceeded: false, limits: new Map(), held: new Map() };
      this.sessions.set(sessionId, state);
    }
    return state;
  }

  private decision(record: AuditDecisionRecord): void {
    const old = record.decision;
    if (typeof old !== 'object' || old === null || typeof old.action !== 'object' || old.action === null || DECISION_INDEX[old.decision] === undefined) {
      this.unreadableLines++;
      return;
    }
    this.decisions++;
    if (this.recorded[this.recorded.length - 1] !== record.policyHash && !this.recorded.includes(record.policyHash)) this.recorded.push(record.policyHash);
    const state = this.state(record.sessionId);
    const costRead = readCost(old.action.cost);
    const costNanos = costRead.ok ? costRead.nanos : 0;
    const verdict = this.redecide(old, state, costNanos);
    if (verdict === undefined) {
      // Kept as recorded; spend that happened still counts against the replayed budget.
      this.kept++;
      if (old.decision === 'allow' && costNanos > 0) this.charge(state, old.id, costNanos);
      this.count(old.decision, old.decision);
      return;
    }
    if (verdict.decision === 'allow' && costNanos > 0) this.charge(state, old.id, costNanos);
    this.count(old.decision, verdict.decision);
    if (verdict.decision === old.decision) return;
    this.changed++;
    if (old.decision === 'allow') this.refusedNanos += costNanos;
    else if (verdict.decision === 'allow') this.allowedNanos += costNanos;
    const key = verdict.decision === 'allow' ? ruleId(old.rule) : this.ruleIdOf(verdict.rule);
    let group = this.groups.get(key);
    if (group === undefined) {
      group = { rule: key, count: 0, counts: new Float64Array(9), refused: 0, examples: [] };
      this.groups.set(key, group);
    }
    group.count++;
    (group.counts[(DECISION_INDEX[old.decision] as number) * 3 + (DECISION_INDEX[verdict.decision] as number)] as number)++;
    if (old.decision === 'allow') group.refused += costNanos;
    const listener = this.options.onChange;
    if (group.examples.length >= this.examples && listener === undefined) return;
    const change: ReplayChange = {
      seq: record.seq,
      sessionId: record.sessionId,
      decisionId: old.id,
      type: old.action.type,
      target: actionTarget(old.action),
      cost: nanosToUsd(costNanos),
      old: { decision: old.decision, rule: ruleId(old.rule), reason: old.reason },
      new: { decision: verdict.decision, rule: this.ruleIdOf(verdict.rule), reason: verdict.reason },
    };
    if (group.examples.length < this.examples) group.examples.push(change);
    listener?.(change);
  }

  private ruleIdOf(rule: RuleRef): string {
    let id = this.ruleIds.get(rule);
    if (id === undefined) {
      id = ruleId(rule);
      this.ruleIds.set(rule, id);
    }
    return id;
  }

  // The new policy's verdict, or undefined when the recorded decision was not the policy's to make.
  private redecide(old: Decision, state: SessionState, costNanos: number): Verdict | undefined {
    const rule = old.rule;
    if (rule === null || typeof rule !== 'object' || KEPT_SECTIONS.has(rule.section)) return undefined;
    const action = old.action;
    // Spend recorded after the fact (a model's usage): it happened, whatever the policy says now.
    if (action.type === 'cost' && rule.section === 'default' && typeof old.reason === 'string' && old.reason.startsWith('usage of ')) return undefined;
    let prepared: PreparedAction;
    if (action.type === 'tool') {
      const info = this.policy.toolInfo(action.name);
      if (info.problem !== undefined) return undefined;
      prepared = { type: 'tool', name: action.name, folded: info.folded, costNanos, input: action.input };
    } else if (action.type === 'http') {
      // A connection decided by the address its name resolved to (session.lookup): refused, or let through under
      // shadow mode with the refusal as its shadow. That address is decided again, as a lookup decides it.
      const address = lookupAddress(rule) ?? (old.shadow ? lookupAddress(old.shadow.rule) : undefined);
      if (address !== undefined) {
        const hostname = action.metadata?.['hostname'];
        const name = typeof hostname === 'string' ? hostname : address;
        return this.policy.decideAddress(name, address) ?? { decision: 'allow', reason: `${JSON.stringify(name)} resolves to ${address}, allowed`, rule: { section: 'default' }, approvedRule: false };
      }
      const target = parseTarget(action.url);
      if (!target.ok) return undefined;
      prepared = { type: 'http', host: target.host, isIp: target.isIp, costNanos, method: action.method, path: target.path };
    } else if (action.type === 'cost') {
      if (typeof action.source !== 'string' || action.source === '') return undefined;
      prepared = { type: 'cost', source: action.source, costNanos };
    } else {
      return undefined;
    }
    const budget = this.policy.normalized.budget;
    if (state.exceeded && budget !== null) {
      return {
        decision: 'deny',
        reason: `spending has passed the budget (spent ${formatUsd(state.spentNanos)} of max_spend ${formatUsd(budget.maxSpendNanos)}); every further call is denied`,
        rule: { section: 'budget', maxSpend: nanosToUsd(budget.maxSpendNanos), spent: nanosToUsd(state.spentNanos), reserved: 0, requested: nanosToUsd(costNanos) },
        approvedRule: false,
      };
    }
    const approved = old.approved === true;
    let verdict: Verdict;
    if (!approved && (costNanos === 0 || (costNanos <= this.policy.costRuleFloor && this.fits(state, costNanos)))) {
      verdict = this.policy.decideFree(prepared);
    } else if (this.memoable && this.fits(state, costNanos)) {
      // Within the budget the verdict does not depend on what was spent: one per action, cost and approval.
      const name = prepared.type === 'tool' ? prepared.name : prepared.type === 'http' ? prepared.host : prepared.source;
      const key = `${prepared.type}${approved ? '+' : '-'}${costNanos}:${name}`;
      const known = key.length <= 1024 ? this.verdicts.get(key) : undefined;
      if (known !== undefined) verdict = known;
      else {
        verdict = this.policy.decide(prepared, state.spentNanos, 0, approved);
        if (key.length <= 1024) {
          if (this.verdicts.size >= 16_384) this.verdicts.clear();
          this.verdicts.set(key, verdict);
        }
      }
    } else {
      verdict = this.policy.decide(prepared, state.spentNanos, 0, approved);
    }
    // A human (or the approver) refused: that answer stands wherever the new policy still asks for one.
    if (rule.section === 'approver' && verdict.decision === 'require_approval') return { decision: old.decision, reason: old.reason, rule, approvedRule: false };
    if (verdict.afterLimits === true) return this.countLimits(prepared, verdict, state, old);
    return verdict;
  }

  // The policy's limits, counted at the recorded times: a full limit denies; an allowed action takes its slots. A
  // withdraw is not in the log (a call that never ran is recorded as the allow it was), so it counts here: a replay
  // may deny a call the live session allowed after a withdraw, never allow one it denied for a full limit.
  private countLimits(prepared: PreparedAction, verdict: Verdict, state: SessionState, old: Decision): Verdict {
    const limits = this.policy.limitsFor(prepared);
    if (limits.length === 0) return verdict;
    const now = Date.parse(old.timestamp);
    const at = Number.isFinite(now) ? now : 0;
    const windows: number[][] = [];
    for (const limit of limits) {
      if (!limit.enforced) continue;
      let calls = state.limits.get(limit.index);
      if (calls === undefined) {
        calls = [];
        state.limits.set(limit.index, calls);
      }
      if (limit.windowMs !== null) {
        const from = at - limit.windowMs;
        let drop = 0;
        while (drop < calls.length && (calls[drop] as number) <= from) drop++;
        if (drop > 0) calls.splice(0, drop);
      }
      if (calls.length >= limit.maxCalls) {
        if (limit.windowMs === null) return limitVerdict(limit, null, old.action);
        const resetAt = limit.windowMs === null ? null : new Date((calls[0] as number) + limit.windowMs).toISOString();
        return {
          decision: 'deny',
          reason: `reached limits[${limit.index}]: ${limit.maxCalls} call${limit.maxCalls === 1 ? '' : 's'} ${limit.windowMs === null ? `per ${limit.scope === 'budget' ? 'budget' : 'session'}` : `per ${limit.per}`} (counted at the recorded times)`,
          rule: { section: 'limits', index: limit.index, maxCalls: limit.maxCalls, per: limit.per, scope: limit.scope, resetAt },
          approvedRule: false,
        };
      }
      windows.push(calls);
    }
    if (verdict.decision === 'allow') for (const calls of windows) calls.push(at);
    return verdict;
  }

  private fits(state: SessionState, costNanos: number): boolean {
    const budget = this.policy.normalized.budget;
    return budget === null || state.spentNanos + costNanos <= budget.maxSpendNanos;
  }

  private charge(state: SessionState, decisionId: string, nanos: number): void {
    state.spentNanos += nanos;
    state.held.set(decisionId, nanos);
    this.checkExceeded(state);
  }

  private checkExceeded(state: SessionState): void {
    const budget = this.policy.normalized.budget;
    if (budget !== null && state.spentNanos > budget.maxSpendNanos) state.exceeded = true;
  }

  // A reservation settled: the replayed charge becomes what it finally cost.
  private settlement(record: AuditSettlementRecord): void {
    const state = this.sessions.get(record.sessionId);
    const held = state?.held.get(record.decisionId);
    if (state === undefined || held === undefined) return;
    const actual = readCost(record.settlement?.actual);
    if (!actual.ok) return;
    state.spentNanos += actual.nanos - held;
    state.held.delete(record.decisionId);
    this.checkExceeded(state);
  }

  private count(from: DecisionValue, to: DecisionValue): void {
    const row = DECISION_INDEX[from];
    if (row === undefined) return;
    (this.counts[row * 3 + (DECISION_INDEX[to] as number)] as number)++;
  }

}

/**
 * Replays audit log files (rotated files oldest first) under `policy`: see {@link Replayer}. Reads the files line by
 * line; it does not verify the chain (`agentpolicy audit verify` does).
 *
 * @example
 * ```ts
 * const report = replayAuditLog('audit/agent.jsonl', AgentPolicy.fromYaml('policy.new.yaml'));
 * console.log(report.transitions, report.refusedSpend);
 * ```
 */
export function replayAuditLog(files: string | readonly string[], policy: AgentPolicy, options: ReplayOptions = {}): ReplayReport {
  const replayer = new Replayer(policy, options);
  for (const file of typeof files === 'string' ? [files] : files) {
    for (const line of readLines(file)) {
      if (line.text === '') continue;
      const parsed = parseRecord(line.text);
      if (parsed.record === null) replayer.unreadableLines++;
      else replayer.add(parsed.record);
    }
  }
  return replayer.report();
}

/** The replay report as text: the counts by old → new decision, the changes by rule with examples, the spend refused. */
export function formatReplayReport(report: ReplayReport, options: { source?: string; policyFile?: string } = {}): string[] {
  const lines: string[] = [];
  const usd = (amount: number) => formatUsd(Math.round(amount * 1e9));
  lines.push(
    `replayed ${report.decisions.toLocaleString('en-US')} decisions of ${report.sessions} session${report.sessions === 1 ? '' : 's'}${options.source ? ` from ${options.source}` : ''} under ${options.policyFile ?? 'the new policy'} (sha256 ${report.policyHash.slice(0, 12)}); recorded under ${report.recordedPolicies.map((hash) => hash.slice(0, 12)).join(', ') || 'no policy'}`,
  );
  lines.push(`${report.changed.toLocaleString('en-US')} would change${report.kept > 0 ? `; ${report.kept} kept as recorded (not the policy's to decide: invalid input, halts, failures, recorded usage)` : ''}`);
  lines.push('', 'old → new');
  const width = Math.max(...Object.keys(report.transitions).map((key) => key.length), 10);
  for (const [key, count] of Object.entries(report.transitions).sort((a, b) => b[1] - a[1])) {
    const [from, to] = key.split(' → ');
    lines.push(`  ${key.padEnd(width)}  ${count.toLocaleString('en-US').padStart(9)}${from !== to ? '  changed' : ''}`);
  }
  if (report.byRule.length > 0) {
    lines.push('', 'changes by rule');
    for (const group of report.byRule) {
      const transitions = Object.entries(group.transitions)
        .map(([key, count]) => `${key} ${count}`)
        .join(', ');
      lines.push(`  ${group.rule}: ${group.count.toLocaleString('en-US')} (${transitions})${group.refusedSpend > 0 ? `, ${usd(group.refusedSpend)} refused` : ''}`);
      for (const change of group.examples) {
        lines.push(`      #${change.seq} ${change.sessionId} ${change.type} ${change.target}${change.cost > 0 ? ` ${usd(change.cost)}` : ''}: ${change.old.decision} → ${change.new.decision} — ${change.new.reason}`);
      }
    }
  }
  lines.push('', `spend that would have been refused: ${usd(report.refusedSpend)}${report.newlyAllowedSpend > 0 ? `; spend newly allowed: ${usd(report.newlyAllowedSpend)}` : ''}`);
  if (report.unreadableLines > 0) lines.push(`${report.unreadableLines} unreadable lines skipped; run agentpolicy audit verify`);
  // Names, reasons and session ids come from the log: shown, never acted on by the terminal.
  return lines.map(printable);
}

/** The replay report as one self-contained HTML page (no scripts, no external resources). */
export function renderReplayHtml(report: ReplayReport, options: { source?: string; policyFile?: string } = {}): string {
  const usd = (amount: number) => escapeHtml(formatUsd(Math.round(amount * 1e9)));
  const transitions = Object.entries(report.transitions)
    .sort((a, b) => b[1] - a[1])
    .map(([key, count]) => {
      const [from, to] = key.split(' → ');
      return `<tr${from !== to ? ' class="changed"' : ''}><td>${escapeHtml(from)}</td><td>${escapeHtml(to)}</td><td class="n">${count}</td></tr>`;
    })
    .join('');
  const groups = report.byRule
    .map(
      (group) => `<section><h3>${escapeHtml(group.rule)} <small>${group.count} changed${group.refusedSpend > 0 ? `, ${usd(group.refusedSpend)} refused` : ''}</small></h3>
<p>${Object.entries(group.transitions)
        .map(([key, count]) => `${escapeHtml(key)}: ${count}`)
        .join(' · ')}</p>
<table><thead><tr><th>#</th><th>session</th><th>action</th><th>cost</th><th>was</th><th>now</th><th>reason now</th></tr></thead><tbody>${group.examples
        .map(
          (change) =>
            `<tr><td class="n">${change.seq}</td><td>${escapeHtml(change.sessionId)}</td><td>${escapeHtml(`${change.type} ${change.target}`)}</td><td class="n">${usd(change.cost)}</td><td>${escapeHtml(change.old.decision)}</td><td>${escapeHtml(change.new.decision)}</td><td>${escapeHtml(change.new.reason)}</td></tr>`,
        )
        .join('')}</tbody></table></section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>agentpolicy replay</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}.n{text-align:right;font-variant-numeric:tabular-nums}.changed{background:#fef3c7}small{color:#555;font-weight:normal}</style>
</head><body>
<h1>Replay${options.policyFile ? ` under ${escapeHtml(options.policyFile)}` : ''}</h1>
<p>${report.decisions} decisions of ${report.sessions} sessions${options.source ? ` from ${escapeHtml(options.source)}` : ''}; new policy sha256 <code>${escapeHtml(report.policyHash.slice(0, 12))}</code>, recorded under <code>${escapeHtml(report.recordedPolicies.map((hash) => hash.slice(0, 12)).join(', '))}</code>.</p>
<p><strong>${report.changed}</strong> decisions would change. Spend that would have been refused: <strong>${usd(report.refusedSpend)}</strong>; newly allowed: ${usd(report.newlyAllowedSpend)}.</p>
<h2>Old → new</h2>
<table><thead><tr><th>old</th><th>new</th><th>decisions</th></tr></thead><tbody>${transitions}</tbody></table>
<h2>Changes by rule</h2>
${groups || '<p>No decision changes.</p>'}
</body></html>
`;
}
