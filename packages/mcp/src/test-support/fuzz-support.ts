// What the protocol fuzzes share: letting queued work run, money in tenths, unhandled rejections, reached paths.
import type { PolicySession } from '@agentpolicy/core';
import { afterAll, beforeAll, expect } from 'vitest';

/** Lets queued callbacks and promise chains run (a few turns of the event loop). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 6; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Spend and reservations in tenths of a dollar, as the session reports them (the fuzzes count in tenths). */
export function moneyInTenths(session: PolicySession): { spent: number; reserved: number } {
  const report = session.report();
  return { spent: Math.round(report.spent * 10 * 1e6) / 1e6, reserved: Math.round(report.reserved * 10 * 1e6) / 1e6 };
}

/** Collects unhandled rejections while the file's tests run; `reset()` at the start of each run. */
export function unhandledRejections(): { readonly list: () => readonly unknown[]; reset: () => void } {
  let seen: unknown[] = [];
  const onUnhandled = (reason: unknown) => void seen.push(reason);
  beforeAll(() => void process.on('unhandledRejection', onUnhandled));
  afterAll(() => void process.off('unhandledRejection', onUnhandled));
  return { list: () => seen, reset: () => void (seen = []) };
}

/**
 * Counts the paths a fuzz's runs reach; `expectReached` (in an afterAll) prints the counts with the seed and fails for
 * a path never reached, since a fuzz that never gets there checks nothing there. Skipped for one replayed run.
 */
export function pathCounter(seed: number): { reach: (path: string) => void; expectReached: (paths: readonly string[]) => void } {
  const reached = new Map<string, number>();
  return {
    reach: (path) => void reached.set(path, (reached.get(path) ?? 0) + 1),
    expectReached: (paths) => {
      if (process.env['FUZZ_PATH']) return;
      console.log(`seed ${seed}, paths reached (runs per path):`, Object.fromEntries(paths.map((path) => [path, reached.get(path) ?? 0])));
      for (const path of paths) expect(reached.get(path) ?? 0, `the fuzz never reached: ${path}`).toBeGreaterThan(0);
    },
  };
}
