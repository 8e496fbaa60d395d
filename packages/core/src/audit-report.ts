import type { ActionType, Decision, DecisionValue } from './decision.js';
import { parseRecord, readLines } from './audit-verify.js';
import { withReportInspect } from './format-report.js';
import { ruleName, type SessionReport } from './audit-trail.js';

/** A session's committed spend at one moment. */
export interface SpendPoint {
  readonly time: string;
  readonly spent: number;
}

/** What an audit log holds, as session reports (the shape `session.report()` returns) and spend over time. */
export interface AuditLogReport {
  readonly files: readonly string[];
  /** One report per session id, in the order the sessions first appear. */
  readonly sessions: readonly SessionReport[];
  /** Committed spend after each decision and settlement, per session id. */
  readonly spend: Readonly<Record<string, readonly SpendPoint[]>>;
  /** Lines that are not readable records (see `agentpolicy audit verify` for why). */
  readonly unreadableLines: number;
}

type Counts = Record<DecisionValue, number>;
const emptyCounts = (): Counts => ({ allow: 0, deny: 0, require_approval: 0 });

interface Accumulator {
  sessionId: string;
  policyHash: string;
  budget: number | null;
  /** Nano-dollars this session charged, and holds in open reservations, by its own records. */
  spent: number;
  held: Map<string, number>;
  counts: Counts;
  byType: Record<ActionType, Counts>;
  allowed: Record<ActionType, number>;
  attempted: Record<ActionType, number>;
  hits: { deniedTools: Set<string>; deniedDomains: Set<string>; approvalRequired: Set<string> };
  /** What shadowed parts of the policy would have decided, counted as in `session.report()`. */
  shadow: Counts;
  shadowByRule: Map<string, number>;
  decisions: Decision[];
  types: Map<string, ActionType>;
  first: string;
  last: string;
  dropped: number;
  /** Nano-dollars settled above their estimates, and how many settlements did. */
  overrun: number;
  overruns: number;
}

/**
 * Reads an audit log (rotated files oldest first) into one report per session, the same shape as
 * `session.report()`, so {@link formatReport} and {@link renderHtmlReport} print it. Reading does not verify the
 * chain: use {@link verifyAuditLog} for that.
 */
export function readAuditLog(files: string | readonly string[], options: { maxDecisions?: number } = {}): AuditLogReport {
  const paths = typeof files === 'string' ? [files] : [...files];
  const keep = options.maxDecisions ?? 10_000;
  const sessions = new Map<string, Accumulator>();
  const spend: Record<string, SpendPoint[]> = {};
  let unreadable = 0;
  for (const file of paths) {
    for (const line of readLines(file)) {
      if (!line.complete) continue;
      const parsed = parseRecord(line.text);
      if (parsed.record === null) {
        unreadable++;
        continue;
      }
      const record = parsed.record;
      if (record.kind !== 'decision' && record.kind !== 'settlement') continue;
      let session = sessions.get(record.sessionId);
      if (session === undefined) {
        session = {
          sessionId: record.sessionId,
          policyHash: record.policyHash,
          budget: record.budget,
          spent: 0,
          held: new Map(),
          counts: emptyCounts(),
          byType: { tool: emptyCounts(), http: emptyCounts(), cost: emptyCounts() },
          allowed: { tool: 0, http: 0, cost: 0 },
          attempted: { tool: 0, http: 0, cost: 0 },
          hits: { deniedTools: new Set(), deniedDomains: new Set(), approvalRequired: new Set() },
          shadow: emptyCounts(),
          shadowByRule: new Map(),
          decisions: [],
          types: new Map(),
          first: record.time,
          last: record.time,
          dropped: 0,
          overrun: 0,
          overruns: 0,
        };
        sessions.set(record.sessionId, session);
        spend[record.sessionId] = [];
      }
      session.policyHash = record.policyHash;
      session.budget = record.budget;
      session.last = record.time;
      // Spend is summed from the records themselves (what each charged or settled), not from the ledger snapshot a
      // record also carries, so it does not depend on when the snapshot was taken.
      if (record.kind === 'settlement') {
        const type = session.types.get(record.decisionId);
        const actual = Math.round(record.settlement.actual * 1e9);
        if (type !== undefined) session.allowed[type] += actual - Math.round(record.settlement.estimated * 1e9);
        session.held.delete(record.decisionId);
        if (record.settlement.status === 'committed') session.spent += actual;
        if (record.settlement.overrun !== undefined && record.settlement.overrun > 0) {
          session.overrun += Math.round(record.settlement.overrun * 1e9);
          session.overruns++;
        }
        (spend[record.sessionId] as SpendPoint[]).push({ time: record.time, spent: session.spent / 1e9 });
        continue;
      }
      const decision = record.decision;
      const action = decision.action;
      const cost = Math.round(action.cost * 1e9);
      if (decision.decision === 'allow') {
        if (decision.settlement === undefined) session.spent += cost;
        else if (decision.settlement.status === 'pending') session.held.set(decision.id, cost);
        else if (decision.settlement.status === 'committed') session.spent += Math.round(decision.settlement.actual * 1e9);
      }
      (spend[record.sessionId] as SpendPoint[]).push({ time: record.time, spent: session.spent / 1e9 });
      session.counts[decision.decision]++;
      session.byType[action.type][decision.decision]++;
      session.attempted[action.type] += cost;
      if (decision.decision === 'allow') {
        session.allowed[action.type] += cost;
        if (decision.settlement !== undefined) session.types.set(decision.id, action.type);
      } else if (action.type === 'tool' && decision.rule.section === 'tools') session.hits.deniedTools.add(action.name);
      else if (action.type === 'http' && decision.rule.section === 'network') session.hits.deniedDomains.add(action.domain);
      if (decision.rule.section === 'approval' || decision.rule.section === 'approver') {
        session.hits.approvalRequired.add(action.type === 'tool' ? action.name : action.type === 'http' ? action.domain : action.source);
      }
      if (decision.shadow !== undefined) {
        session.shadow[decision.shadow.decision]++;
        const name = ruleName(decision.shadow.rule);
        session.shadowByRule.set(name, (session.shadowByRule.get(name) ?? 0) + 1);
      }
      session.decisions.push(decision);
      // Trim in batches: keep the latest `keep` without an O(n) shift per record.
      if (session.decisions.length >= 2 * keep + 1) {
        const excess = session.decisions.length - keep;
        session.decisions.splice(0, excess);
        session.dropped += excess;
      }
    }
  }
  return { files: paths, sessions: [...sessions.values()].map((session) => toReport(session, keep)), spend, unreadableLines: unreadable };
}

function toReport(session: Accumulator, keep: number): SessionReport {
  if (session.decisions.length > keep) {
    const excess = session.decisions.length - keep;
    session.decisions.splice(0, excess);
    session.dropped += excess;
  }
  const usd = (nanos: number) => nanos / 1e9;
  const sum = (values: Record<ActionType, number>) => ({
    tool: usd(values.tool),
    http: usd(values.http),
    cost: usd(values.cost),
    total: usd(values.tool + values.http + values.cost),
  });
  let held = 0;
  for (const nanos of session.held.values()) held += nanos;
  const budget = session.budget === null ? null : Math.round(session.budget * 1e9);
  return withReportInspect({
    sessionId: session.sessionId,
    policyHash: session.policyHash,
    budget: session.budget,
    spent: usd(session.spent),
    reserved: usd(held),
    remaining: budget === null ? null : usd(Math.max(0, budget - session.spent - held)),
    decisionSummary: {
      total: session.counts.allow + session.counts.deny + session.counts.require_approval,
      ...session.counts,
      byActionType: session.byType,
    },
    costSummary: { allowed: sum(session.allowed), attempted: sum(session.attempted) },
    shadowSummary: {
      total: session.shadow.allow + session.shadow.deny + session.shadow.require_approval,
      ...session.shadow,
      byRule: Object.fromEntries(session.shadowByRule),
    },
    policyHits: {
      deniedTools: [...session.hits.deniedTools],
      deniedDomains: [...session.hits.deniedDomains],
      approvalRequired: [...session.hits.approvalRequired],
    },
    startedAt: session.first,
    endedAt: session.last,
    durationSeconds: (Date.parse(session.last) - Date.parse(session.first)) / 1000,
    decisions: session.decisions,
    decisionsDropped: session.dropped,
    overrun: usd(session.overrun),
    overruns: session.overruns,
    // An audit log records decisions, not the budget store: its report is the session's own budget view.
    budgetKey: session.sessionId,
    period: 'session',
    window: 'session',
    previousWindow: null,
    expiredLeases: { count: 0, amount: 0 },
  });
}
