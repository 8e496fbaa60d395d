import type { ActionType, Decision, DecisionValue, RuleRef } from './decision.js';
import type { BudgetPeriod } from './budget-store.js';
import { nanosToUsd } from './money.js';

type Counts = Record<DecisionValue, number>;
type ByType<T> = Record<ActionType, T>;

/** The session's audit summary. */
export interface SessionReport {
  readonly sessionId: string;
  readonly policyHash: string;
  /** USD budget, or null without one. */
  readonly budget: number | null;
  readonly spent: number;
  readonly reserved: number;
  /** null without a budget. */
  readonly remaining: number | null;
  /** The budget the session spends from: its id unless a `budgetKey` was given (then shared with other sessions). */
  readonly budgetKey: string;
  /** The policy's `budget.period`. */
  readonly period: BudgetPeriod;
  /** The current window of the budget (`session`, or e.g. `day:2026-11-30`); spent and reserved are this window's. */
  readonly window: string;
  /** The window before it and what was spent in it (null for a session budget, or before the first rollover). */
  readonly previousWindow: { readonly window: string; readonly spent: number } | null;
  /** Reservations that expired unsettled and were charged at their estimate (USD), across the whole budget. */
  readonly expiredLeases: { readonly count: number; readonly amount: number };
  readonly decisionSummary: Counts & { readonly total: number; readonly byActionType: ByType<Counts> };
  readonly costSummary: {
    /** USD allowed (and, for reservations, finally charged) by action type. */
    readonly allowed: ByType<number> & { readonly total: number };
    /** USD requested by every decision, whatever the outcome. */
    readonly attempted: ByType<number> & { readonly total: number };
  };
  readonly policyHits: {
    readonly deniedTools: readonly string[];
    readonly deniedDomains: readonly string[];
    readonly approvalRequired: readonly string[];
  };
  /**
   * What shadowed parts of the policy (`mode: shadow`) would have changed: how many recorded decisions would have
   * been decided otherwise, by the outcome they would have had and by the part that would have decided
   * (`rules[2]`, `limits[0]`, `tools.block`, `budget`, …).
   */
  readonly shadowSummary: Counts & { readonly total: number; readonly byRule: Readonly<Record<string, number>> };
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly durationSeconds: number;
  /** The kept decisions, oldest first. */
  readonly decisions: readonly Decision[];
  /** Decisions recorded but no longer kept (see `maxDecisions`). */
  readonly decisionsDropped: number;
  /**
   * USD charged beyond the estimates of reservations whose real cost exceeded them, over the whole session (each such
   * decision's `settlement.overrun` says by how much). Zero when every estimate held.
   */
  readonly overrun: number;
  /** How many reservations settled above their estimate. */
  readonly overruns: number;
}

/** The part of the report the audit trail itself knows. */
export type AuditSummary = Pick<SessionReport, 'decisionSummary' | 'costSummary' | 'policyHits' | 'shadowSummary' | 'decisions' | 'decisionsDropped' | 'overrun' | 'overruns'>;

/** A short name for the part of the policy a rule reference points at, as counted in `shadowSummary.byRule`. */
export function ruleName(rule: RuleRef): string {
  switch (rule.section) {
    case 'rules':
    case 'limits':
      return `${rule.section}[${rule.index}]`;
    case 'approval':
      return `approval.require_for[${rule.index}]`;
    case 'tools':
    case 'network':
      return `${rule.section}.${rule.list}`;
    default:
      return rule.section;
  }
}

const HIT_LIMIT = 1000;

const emptyCounts = (): Counts => ({ allow: 0, deny: 0, require_approval: 0 });

let lastMs = 0;
let lastIso = '';
/** The current time in ISO 8601, formatted at most once per millisecond. */
export function isoNow(): string {
  return isoAt(Date.now());
}

/** {@link isoNow} for a time already read from `Date.now()`. */
export function isoAt(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

function addHit(set: Set<string>, value: string): void {
  if (set.size < HIT_LIMIT || set.has(value)) set.add(value);
}

/**
 * Every decision a session recorded: exact counters and cost sums over all of them, and the last `maxDecisions`
 * decisions themselves in a ring (the oldest dropped first).
 */
export class AuditTrail {
  private readonly ring: Decision[] = [];
  private ringStart = 0;
  private dropped = 0;
  private readonly counts = emptyCounts();
  private readonly byType: ByType<Counts> = { tool: emptyCounts(), http: emptyCounts(), cost: emptyCounts() };
  private readonly allowedNanos: ByType<number> = { tool: 0, http: 0, cost: 0 };
  private readonly attemptedNanos: ByType<number> = { tool: 0, http: 0, cost: 0 };
  private readonly shadowCounts = emptyCounts();
  private readonly shadowByRule = new Map<string, number>();
  private overrunNanos = 0;
  private overrunCount = 0;
  private readonly hits = { deniedTools: new Set<string>(), deniedDomains: new Set<string>(), approvalRequired: new Set<string>() };

  constructor(private readonly maxDecisions: number) {}

  /** Counts a decision and keeps it. Returns its slot in the ring (-1 when none is kept), for {@link replace}. */
  add(decision: Decision): number {
    const type = decision.action.type;
    const value = decision.decision;
    this.counts[value]++;
    this.byType[type][value]++;
    const costNanos = Math.round(decision.action.cost * 1e9);
    this.attemptedNanos[type] += costNanos;
    if (value === 'allow') this.allowedNanos[type] += costNanos;
    else if (type === 'tool' && decision.rule.section === 'tools') addHit(this.hits.deniedTools, decision.action.name);
    else if (type === 'http' && decision.rule.section === 'network') addHit(this.hits.deniedDomains, decision.action.domain);
    const section = decision.rule.section;
    if (section === 'approver' || section === 'approval') {
      const action = decision.action;
      addHit(this.hits.approvalRequired, action.type === 'tool' ? action.name : action.type === 'http' ? action.domain : action.source);
    }
    const shadow = decision.shadow;
    if (shadow !== undefined) {
      this.shadowCounts[shadow.decision]++;
      const name = ruleName(shadow.rule);
      if (this.shadowByRule.size < HIT_LIMIT || this.shadowByRule.has(name)) this.shadowByRule.set(name, (this.shadowByRule.get(name) ?? 0) + 1);
    }
    if (this.maxDecisions > 0) {
      if (this.ring.length < this.maxDecisions) return this.ring.push(decision) - 1;
      const slot = this.ringStart;
      this.ring[slot] = decision;
      this.ringStart = (slot + 1) % this.maxDecisions;
      this.dropped++;
      return slot;
    }
    this.dropped++;
    return -1;
  }

  /**
   * Puts the settled version of a kept decision in its place (decisions are frozen values: a settlement is a new
   * value with the same id). Does nothing once the ring has moved past it.
   */
  replace(slot: number, previous: Decision, next: Decision): void {
    if (slot >= 0 && this.ring[slot] === previous) this.ring[slot] = next;
  }

  /** Corrects the allowed sum once a reservation settles at another amount than its estimate. */
  adjustAllowed(type: ActionType, deltaNanos: number): void {
    this.allowedNanos[type] += deltaNanos;
  }

  /** Counts a reservation that settled `nanos` above its estimate. */
  addOverrun(nanos: number): void {
    this.overrunNanos += nanos;
    this.overrunCount++;
  }

  summary(): AuditSummary {
    const sum = (values: ByType<number>) => ({
      tool: nanosToUsd(values.tool),
      http: nanosToUsd(values.http),
      cost: nanosToUsd(values.cost),
      total: nanosToUsd(values.tool + values.http + values.cost),
    });
    const ring = this.ring;
    const decisions = this.ringStart === 0 ? ring.slice() : ring.slice(this.ringStart).concat(ring.slice(0, this.ringStart));
    return {
      decisionSummary: {
        total: this.counts.allow + this.counts.deny + this.counts.require_approval,
        ...this.counts,
        byActionType: { tool: { ...this.byType.tool }, http: { ...this.byType.http }, cost: { ...this.byType.cost } },
      },
      costSummary: { allowed: sum(this.allowedNanos), attempted: sum(this.attemptedNanos) },
      policyHits: {
        deniedTools: [...this.hits.deniedTools],
        deniedDomains: [...this.hits.deniedDomains],
        approvalRequired: [...this.hits.approvalRequired],
      },
      shadowSummary: {
        total: this.shadowCounts.allow + this.shadowCounts.deny + this.shadowCounts.require_approval,
        ...this.shadowCounts,
        byRule: Object.fromEntries(this.shadowByRule),
      },
      decisions,
      decisionsDropped: this.dropped,
      overrun: nanosToUsd(this.overrunNanos),
      overruns: this.overrunCount,
    };
  }
}
