/** What the fuzz tests share: the failure they throw, USD → nanos, and the spend the engine records past a budget on purpose. */
import type { Decision } from '../decision.js';

/** A broken promise of the engine, found by a fuzz run. */
export class Violation extends Error {}

export const nanos = (usd: number): number => Math.round(usd * 1e9);

/**
 * Spend a decision records past the budget on purpose (so a budget's spent + reserved may pass max_spend by it):
 * usage that already happened (`recordUsage`), and the overrun of a reservation settled above its estimate.
 */
export function pastBudgetNanos(decision: Decision): number {
  let past = 0;
  if (decision.decision === 'allow' && decision.action.type === 'cost' && decision.reason.startsWith('usage of')) past += nanos(decision.action.cost);
  if (decision.settlement?.overrun !== undefined) past += nanos(decision.settlement.overrun);
  return past;
}
