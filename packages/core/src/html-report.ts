import type { AuditLogReport, SpendPoint } from './audit-report.js';
import type { Decision } from './decision.js';
import { actionTarget, decisionsByRule, ruleId } from './format-report.js';
import { formatUsd } from './money.js';
import type { SessionReport } from './audit-trail.js';

/** Options of {@link renderHtmlReport}. */
export interface HtmlReportOptions {
  /** The page title. Default "agentpolicy report". */
  title?: string;
  /** Most denied and escalated actions listed (the latest are kept). Default 1,000. */
  maxListed?: number;
}

const SERIES_COLORS = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#dc2626', '#0891b2', '#4d7c0f', '#be185d'];
const MAX_SERIES = SERIES_COLORS.length;

const usd = (amount: number): string => formatUsd(Math.round(Math.max(0, amount) * 1e9));

/** Escapes text for HTML (element content and quoted attributes). */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** Spend after each decision of a live session's report (settled reservations at what they finally cost). */
function spendFromDecisions(report: SessionReport): SpendPoint[] {
  let spent = 0;
  const points: SpendPoint[] = [];
  for (const d of report.decisions) {
    if (d.decision !== 'allow') continue;
    spent += d.settlement ? (d.settlement.status === 'pending' ? 0 : d.settlement.actual) : d.action.cost;
    points.push({ time: d.timestamp, spent });
  }
  return points;
}

function chart(reports: readonly SessionReport[], spend: Readonly<Record<string, readonly SpendPoint[]>>): string {
  const width = 760;
  const height = 280;
  const left = 72;
  const right = 16;
  const top = 16;
  const bottom = 40;
  const shown = [...reports].sort((a, b) => b.spent - a.spent).slice(0, MAX_SERIES);
  const series = shown.map((report) => ({ report, points: (spend[report.sessionId] ?? []).filter((p) => Number.isFinite(Date.parse(p.time))) }));
  const times = series.flatMap((s) => s.points.map((p) => Date.parse(p.time)));
  const budgets = [...new Set(shown.map((r) => r.budget).filter((b): b is number => b !== null))];
  const maxSpent = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.spent)), ...shown.map((r) => r.spent));
  const top$ = Math.max(maxSpent, ...budgets) * 1.1 || 1;
  const t0 = times.length > 0 ? Math.min(...times) : 0;
  const t1 = times.length > 0 ? Math.max(...times) : 1;
  const span = t1 - t0 || 1000;
  const x = (t: number) => left + ((t - t0) / span) * (width - left - right);
  const y = (amount: number) => top + (1 - amount / top$) * (height - top - bottom);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const amount = (top$ * i) / 4;
    parts.push(`<line class="grid" x1="${left}" x2="${width - right}" y1="${y(amount).toFixed(1)}" y2="${y(amount).toFixed(1)}"/>`);
    parts.push(`<text class="axis" x="${left - 6}" y="${(y(amount) + 4).toFixed(1)}" text-anchor="end">${escapeHtml(usd(amount))}</text>`);
  }
  parts.push(`<text class="axis" x="${left}" y="${height - 12}">${escapeHtml(new Date(t0).toISOString().replace('T', ' ').slice(0, 19))}</text>`);
  parts.push(`<text class="axis" x="${width - right}" y="${height - 12}" text-anchor="end">${escapeHtml(new Date(t0 + span).toISOString().replace('T', ' ').slice(0, 19))} UTC</text>`);
  for (const budget of budgets) {
    parts.push(`<line class="budget" x1="${left}" x2="${width - right}" y1="${y(budget).toFixed(1)}" y2="${y(budget).toFixed(1)}"/>`);
    parts.push(`<text class="budget-label" x="${width - right - 4}" y="${(y(budget) - 5).toFixed(1)}" text-anchor="end">budget ${escapeHtml(usd(budget))}</text>`);
  }
  series.forEach(({ report, points }, i) => {
    if (points.length === 0) return;
    // A step line: spend holds its level until the next record changes it.
    let d = `M${x(Date.parse(points[0]!.time)).toFixed(1)},${y(0).toFixed(1)}`;
    let level = 0;
    for (const point of points) {
      const px = x(Date.parse(point.time)).toFixed(1);
      d += ` L${px},${y(level).toFixed(1)} L${px},${y(point.spent).toFixed(1)}`;
      level = point.spent;
    }
    d += ` L${(width - right).toFixed(1)},${y(level).toFixed(1)}`;
    parts.push(`<path class="series" data-session="${escapeHtml(report.sessionId)}" d="${d}" stroke="${SERIES_COLORS[i]}"><title>${escapeHtml(report.sessionId)}: ${escapeHtml(usd(report.spent))}</title></path>`);
  });
  const legend = series
    .map(({ report }, i) => `<li><span class="swatch" style="background:${SERIES_COLORS[i]}"></span>${escapeHtml(report.sessionId)}: ${escapeHtml(usd(report.spent))}${report.budget !== null ? ` of ${escapeHtml(usd(report.budget))}` : ''}</li>`)
    .join('');
  const omitted = reports.length > shown.length ? `<p class="note">The ${shown.length} sessions that spent most are drawn; ${reports.length - shown.length} more are in the table above.</p>` : '';
  return `<svg class="spend-chart" role="img" aria-label="Spend against budget over time" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">${parts.join('')}</svg><ul class="legend">${legend}</ul>${omitted}`;
}

function outcomeBars(reports: readonly SessionReport[]): string {
  const totals = { allow: 0, deny: 0, require_approval: 0 };
  for (const r of reports) {
    totals.allow += r.decisionSummary.allow;
    totals.deny += r.decisionSummary.deny;
    totals.require_approval += r.decisionSummary.require_approval;
  }
  const max = Math.max(1, totals.allow, totals.deny, totals.require_approval);
  const rows = (Object.keys(totals) as (keyof typeof totals)[])
    .map(
      (outcome) =>
        `<tr class="outcome-${outcome}"><th scope="row">${outcome}</th><td class="num">${totals[outcome]}</td><td class="barcell"><svg class="bar" viewBox="0 0 300 14" width="300" height="14"><rect width="${((totals[outcome] / max) * 300).toFixed(1)}" height="14"/></svg></td></tr>`,
    )
    .join('');
  return `<table class="outcomes"><thead><tr><th>decision</th><th>count</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

function ruleTable(decisions: readonly Decision[]): string {
  const rows = decisionsByRule(decisions)
    .map((row) => `<tr class="outcome-${row.decision}"><td><code>${escapeHtml(row.rule)}</code></td><td>${row.decision}</td><td class="num">${row.count}</td></tr>`)
    .join('');
  return `<table class="rules"><thead><tr><th>rule</th><th>decision</th><th>count</th></tr></thead><tbody>${rows || '<tr><td colspan="3">no decisions</td></tr>'}</tbody></table>`;
}

function flaggedTable(decisions: readonly Decision[], max: number): string {
  const flagged = decisions.filter((d) => d.decision !== 'allow');
  const listed = flagged.slice(Math.max(0, flagged.length - max));
  const rows = listed
    .map(
      (d) =>
        `<tr class="outcome-${d.decision}"><td class="time">${escapeHtml(d.timestamp.replace('T', ' ').replace('Z', ''))}</td><td>${escapeHtml(d.sessionId)}</td><td>${d.decision}</td><td>${d.action.type}</td><td class="target">${escapeHtml(actionTarget(d.action))}</td><td class="num">${escapeHtml(usd(d.action.cost))}</td><td><code>${escapeHtml(ruleId(d.rule))}</code></td><td class="reason">${escapeHtml(d.reason)}</td></tr>`,
    )
    .join('');
  const note = flagged.length > listed.length ? `<p class="note">The latest ${listed.length} of ${flagged.length} are listed.</p>` : '';
  return `${note}<table class="flagged"><thead><tr><th>time (UTC)</th><th>session</th><th>decision</th><th>type</th><th>action</th><th>cost</th><th>rule</th><th>reason</th></tr></thead><tbody>${rows || '<tr><td colspan="8">none: every action was allowed</td></tr>'}</tbody></table>`;
}

function sessionTable(reports: readonly SessionReport[]): string {
  const rows = reports
    .map((r) => {
      const used = r.budget ? ` (${(((r.spent + r.reserved) / r.budget) * 100).toFixed(1)}%)` : '';
      return `<tr><td>${escapeHtml(r.sessionId)}</td><td><code>${escapeHtml(r.policyHash.slice(0, 12))}</code></td><td class="num">${r.decisionSummary.total}</td><td class="num">${r.decisionSummary.allow}</td><td class="num">${r.decisionSummary.deny}</td><td class="num">${r.decisionSummary.require_approval}</td><td class="num">${escapeHtml(usd(r.spent))}${used}</td><td class="num">${r.budget === null ? 'none' : escapeHtml(usd(r.budget))}</td></tr>`;
    })
    .join('');
  return `<table class="sessions"><thead><tr><th>session</th><th>policy</th><th>decisions</th><th>allow</th><th>deny</th><th>require_approval</th><th>spent</th><th>budget</th></tr></thead><tbody>${rows}</tbody></table>`;
}

const STYLE = `
:root{color-scheme:light;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2937;background:#fff}
body{margin:24px auto;max-width:1100px;padding:0 16px;line-height:1.4}
h1{font-size:1.5rem;margin:0 0 4px}h2{font-size:1.15rem;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta,.note{color:#6b7280;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #f3f4f6;vertical-align:top}
th{background:#f9fafb;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.outcomes{width:auto}.barcell{width:310px}.outcome-allow .bar rect{fill:#059669}.outcome-deny .bar rect{fill:#dc2626}.outcome-require_approval .bar rect{fill:#d97706}
tr.outcome-deny td:nth-child(3),.rules tr.outcome-deny td:nth-child(2){color:#b91c1c;font-weight:600}
tr.outcome-require_approval td:nth-child(3),.rules tr.outcome-require_approval td:nth-child(2){color:#b45309;font-weight:600}
.target{word-break:break-all;max-width:260px}.reason{max-width:380px}.time{white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.8rem}
.spend-chart{max-width:100%;height:auto;border:1px solid #e5e7eb;border-radius:6px}
.spend-chart .grid{stroke:#f3f4f6}.spend-chart .axis{fill:#6b7280;font-size:11px}
.spend-chart .budget{stroke:#dc2626;stroke-dasharray:6 4}.spend-chart .budget-label{fill:#b91c1c;font-size:11px}
.spend-chart .series{fill:none;stroke-width:2}
.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:.85rem}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
`;

/**
 * One self-contained HTML page (inline CSS and SVG, no script, no external font or asset) for a session report or
 * an audit log: spend against budget over time, decisions by outcome and rule, and the denied and escalated actions
 * with their reasons.
 *
 * @example
 * ```ts
 * writeFileSync('report.html', renderHtmlReport(session.report()));
 * writeFileSync('audit.html', renderHtmlReport(readAuditLog('audit/agent.jsonl')));
 * ```
 */
export function renderHtmlReport(source: SessionReport | AuditLogReport, options: HtmlReportOptions = {}): string {
  const fromLog = 'sessions' in source;
  const reports = fromLog ? source.sessions : [source];
  const spend = fromLog ? source.spend : { [source.sessionId]: spendFromDecisions(source) };
  const decisions = reports.flatMap((r) => r.decisions).sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  const dropped = reports.reduce((n, r) => n + r.decisionsDropped, 0);
  const title = options.title ?? 'agentpolicy report';
  const spent = reports.reduce((n, r) => n + r.spent, 0);
  const meta = [
    `${reports.length} session${reports.length === 1 ? '' : 's'}`,
    `${reports.reduce((n, r) => n + r.decisionSummary.total, 0)} decisions`,
    `${usd(spent)} spent`,
    fromLog ? `from ${source.files.map((f) => escapeHtml(f)).join(', ')}` : '',
    dropped > 0 ? `rule and action tables cover the ${decisions.length} decisions kept (${dropped} older ones dropped)` : '',
    fromLog && source.unreadableLines > 0 ? `${source.unreadableLines} unreadable lines skipped (run agentpolicy audit verify)` : '',
  ].filter(Boolean);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="meta">${meta.join(' · ')}</p>
<h2>Sessions</h2>
${sessionTable(reports)}
<h2>Spend against budget over time</h2>
${chart(reports, spend)}
<h2>Decisions by outcome</h2>
${outcomeBars(reports)}
<h2>Decisions by rule</h2>
${ruleTable(decisions)}
<h2>Denied and escalated actions</h2>
${flaggedTable(decisions, options.maxListed ?? 1000)}
</body>
</html>
`;
}
