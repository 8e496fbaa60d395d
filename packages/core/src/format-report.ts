import type { Action, Decision, DecisionValue, RuleRef } from './decision.js';
import { formatUsd } from './money.js';
import type { SessionReport } from './audit-trail.js';

/** Options of {@link formatReport}. */
export interface FormatReportOptions {
  /** How many of the latest decisions to list in full after the summary (0 lists none). Default 0. */
  decisions?: number;
  /** Longest cell width before a value is cut with `…`. Default 60. */
  maxWidth?: number;
}

const usd = (amount: number): string => formatUsd(Math.round(amount * 1e9));

/** A short, stable name of the rule that decided, e.g. `tools.block:delete_*`, `budget.max_spend`, `approval[0]`. */
export function ruleId(rule: RuleRef): string {
  switch (rule.section) {
    case 'tools':
    case 'network':
      return `${rule.section}.${rule.list}${rule.entry === null ? '' : `:${rule.entry}`}`;
    case 'budget':
      return 'budget.max_spend';
    case 'approval':
      return `approval[${rule.index}]`;
    case 'approver':
      return `approver.${rule.outcome}`;
    case 'input':
      return `input.${rule.check}`;
    case 'session':
      return `session.${rule.check}`;
    case 'rules':
      return `rules[${rule.index}]`;
    case 'limits':
      return `limits[${rule.index}]`;
    case 'halt':
      return rule.budgetKey === undefined ? 'halt' : `halt:${rule.budgetKey}`;
    default:
      return rule.section;
  }
}

/** What an action was aimed at: the tool name, `METHOD url` of a request, or the cost source. */
export function actionTarget(action: Action): string {
  if (action.type === 'tool') return action.name;
  if (action.type === 'http') return `${action.method ?? 'GET'} ${action.url}`;
  return action.source;
}

// Controls (C0, DEL, C1) and bidi overrides, as a terminal would act on them: an escape sequence in a tool name
// could clear the line, recolour a deny as an allow, set the clipboard or reverse the text around it.
// oxlint-disable-next-line no-control-regex -- control characters are what this matches
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
// oxlint-disable-next-line no-control-regex -- control characters are what this matches
const UNPRINTABLE_ALL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from a record made safe to print: line breaks and tabs become spaces, every other control or bidi character
 * is shown as its `\uXXXX` escape, so what a tool name or reason holds is seen, never acted on by the terminal.
 */
export function printable(text: string): string {
  const flat = text.replace(/[\r\n\t]+/g, ' ');
  return UNPRINTABLE.test(flat) ? flat.replace(UNPRINTABLE_ALL, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`) : flat;
}

function cut(text: string, width: number): string {
  const flat = printable(text);
  return flat.length <= width ? flat : `${flat.slice(0, Math.max(1, width - 1))}…`;
}

/**
 * One decision as one line: outcome, action, cost, rule and reason.
 *
 * @example
 * ```ts
 * console.log(formatDecision(await session.checkTool('delete_prod_db')));
 * // deny  tool delete_prod_db  $0.00  tools.block:delete_*  tool "delete_prod_db" is blocked by …
 * ```
 */
export function formatDecision(decision: Decision, options: { maxWidth?: number } = {}): string {
  const width = options.maxWidth ?? 60;
  return [printable(String(decision.decision)), `${printable(String(decision.action.type))} ${cut(actionTarget(decision.action), width)}`, usd(decision.action.cost), printable(ruleId(decision.rule)), printable(decision.reason)].join('  ');
}

/** Decisions as an aligned text table (outcome, action, cost, rule, reason), one row each, oldest first. */
export function formatDecisions(decisions: readonly Decision[], options: { maxWidth?: number } = {}): string {
  const width = options.maxWidth ?? 60;
  const rows = decisions.map((d) => [
    printable(String(d.decision)) + (d.approved ? ' (approved)' : ''),
    printable(String(d.action.type)),
    cut(actionTarget(d.action), width),
    usd(d.settlement && d.settlement.status !== 'pending' ? d.settlement.actual : d.action.cost),
    cut(ruleId(d.rule), 32),
    cut(d.reason, width * 2),
  ]);
  return table(['decision', 'type', 'action', 'cost', 'rule', 'reason'], rows, [false, false, false, true, false, false]);
}

function table(head: readonly string[], rows: readonly (readonly string[])[], right: readonly boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : right[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function bar(fraction: number, width = 30): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** Decisions counted by outcome and the rule that decided, most frequent first. */
export function decisionsByRule(decisions: readonly Decision[]): { rule: string; decision: DecisionValue; count: number }[] {
  const counts = new Map<string, { rule: string; decision: DecisionValue; count: number }>();
  for (const d of decisions) {
    const rule = ruleId(d.rule);
    const key = `${d.decision}\u0000${rule}`;
    const entry = counts.get(key);
    if (entry) entry.count++;
    else counts.set(key, { rule, decision: d.decision, count: 1 });
  }
  return [...counts.values()].sort((a, b) => b.count - a.count || a.rule.localeCompare(b.rule));
}

/**
 * A session report as text a person reads in ten seconds: budget and spend, decisions by outcome and by rule, and
 * every denied or escalated action with its reason. `console.log(session.report())` prints this.
 *
 * @example
 * ```ts
 * console.log(formatReport(session.report(), { decisions: 20 }));
 * ```
 */
export function formatReport(report: SessionReport, options: FormatReportOptions = {}): string {
  const width = options.maxWidth ?? 60;
  const out: string[] = [];
  const summary = report.decisionSummary;
  out.push(`agentpolicy report: session ${printable(report.sessionId)}, policy ${printable(report.policyHash.slice(0, 12))}`);
  if (report.budget === null) {
    out.push(`spent ${usd(report.spent)}${report.reserved > 0 ? `, reserved ${usd(report.reserved)}` : ''} (no budget)`);
  } else {
    const used = report.budget > 0 ? (report.spent + report.reserved) / report.budget : 1;
    out.push(
      `budget ${usd(report.budget)}: spent ${usd(report.spent)}${report.reserved > 0 ? `, reserved ${usd(report.reserved)}` : ''}, remaining ${usd(report.remaining ?? 0)} ${bar(used)} ${(used * 100).toFixed(1)}%`,
    );
  }
  out.push(`decisions ${summary.total}: allow ${summary.allow}, deny ${summary.deny}, require_approval ${summary.require_approval}`);
  const types = (['tool', 'http', 'cost'] as const)
    .map((type) => ({ type, counts: summary.byActionType[type] }))
    .filter(({ counts }) => counts.allow + counts.deny + counts.require_approval > 0)
    .map(({ type, counts }) => `${type} ${counts.allow}/${counts.deny}/${counts.require_approval}`);
  if (types.length > 0) out.push(`by action type (allow/deny/require_approval): ${types.join(', ')}`);
  const shadow = report.shadowSummary;
  if (shadow !== undefined && shadow.total > 0) {
    const parts = Object.entries(shadow.byRule).map(([rule, count]) => `${printable(rule)} ${count}`);
    out.push(`shadow (what enforcing would change) ${shadow.total}: deny ${shadow.deny}, require_approval ${shadow.require_approval}; by ${parts.join(', ')}`);
  }
  const decisions = report.decisions;
  const partial = report.decisionsDropped > 0 ? ` (of the ${decisions.length} decisions kept; ${report.decisionsDropped} older ones dropped)` : '';
  const byRule = decisionsByRule(decisions);
  if (byRule.length > 0) {
    out.push('', `by rule${partial}:`);
    out.push(
      table(
        ['rule', 'decision', 'count'],
        byRule.map((row) => [cut(row.rule, 40), printable(String(row.decision)), String(row.count)]),
        [false, false, true],
      )
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
  }
  const flagged = decisions.filter((d) => d.decision !== 'allow');
  if (flagged.length > 0) {
    out.push('', `denied and escalated (${flagged.length})${partial}:`);
    out.push(
      formatDecisions(flagged, { maxWidth: width })
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
  }
  const listed = Math.max(0, Math.min(options.decisions ?? 0, decisions.length));
  if (listed > 0) {
    out.push('', `last ${listed} decisions:`);
    out.push(
      formatDecisions(decisions.slice(decisions.length - listed), { maxWidth: width })
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
  }
  out.push('', `started ${printable(String(report.startedAt))}${report.endedAt ? `, ended ${printable(String(report.endedAt))}` : ''}, ${report.durationSeconds.toFixed(1)} s`);
  return out.join('\n');
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

/** Makes `console.log(report)` print {@link formatReport}'s text (a non-enumerable hook: JSON and spreads are unchanged). */
export function withReportInspect<T extends SessionReport>(report: T): T {
  Object.defineProperty(report, INSPECT, {
    value(this: SessionReport) {
      return formatReport(this);
    },
    enumerable: false,
  });
  return report;
}
