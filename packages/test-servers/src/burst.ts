import type { BillingServer } from './billing-server.js';

/** The parts of a policy session a burst reads (structural, so this package needs no agentpolicy import). */
export interface BurstSession {
  readonly spent: number;
  report(): { readonly decisions: ReadonlyArray<{ readonly action: { readonly type: string }; readonly settlement?: { readonly estimated: number } }>; readonly overrun: number };
}

/** What a test builds for a budget: a session with that budget and one governed call through the framework. */
export type BurstSetup = (budget: number) => { session: BurstSession; call: () => Promise<unknown> };

/** What a burst did. */
export interface BurstResult {
  /** USD one call reserves (read from a probe call under a large budget). */
  readonly estimate: number;
  /** USD: room for `k` worst cases and half of one more. */
  readonly budget: number;
  /** Requests that reached the server during the burst. */
  readonly hits: number;
  readonly fulfilled: number;
  /** Why the other calls failed. */
  readonly rejections: readonly unknown[];
  readonly spent: number;
  readonly overrun: number;
  /** What the probe call spent (at most its estimate when the estimate holds). */
  readonly probeSpent: number;
  /** Every invariant the burst broke, in words; empty when the budget held. */
  readonly problems: readonly string[];
}

/** Options of {@link runBurst}. */
export interface BurstOptions {
  /** Worst cases the budget fits. Default 3. */
  readonly k?: number;
  /** Whether a failed call failed because the policy denied it (the only acceptable failure). */
  readonly isDenial: (reason: unknown) => boolean;
}

/**
 * Makes one probe call to learn the worst case a call reserves, then fires `3 × k` of the same call at once under a
 * budget that fits `k` worst cases (and half of one more), against `server`, and checks what must hold: the probe
 * spent no more than its estimate, at most `k` calls (and at least one) reached the server, every other call was
 * denied by the policy, nothing was spent past the budget and no reservation was overrun.
 */
export async function runBurst(server: BillingServer, setup: BurstSetup, options: BurstOptions): Promise<BurstResult> {
  const k = options.k ?? 3;
  const probe = setup(1000);
  await probe.call();
  const estimate = probe.session.report().decisions.find((d) => d.action.type === 'cost')?.settlement?.estimated ?? Number.NaN;
  server.reset();
  const budget = Math.round((k * estimate + estimate / 2) * 1e9) / 1e9;
  const { session, call } = setup(budget);
  const results = await Promise.allSettled(Array.from({ length: 3 * k }, () => call()));
  const rejections = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
  const hits = server.hits;
  const fulfilled = results.length - rejections.length;
  const spent = session.spent;
  const overrun = session.report().overrun;
  const probeSpent = probe.session.spent;
  const problems: string[] = [];
  if (!(estimate > 0)) problems.push(`the probe reserved no estimate (${estimate})`);
  if (probeSpent > estimate) problems.push(`the probe spent ${probeSpent}, more than its estimate ${estimate}`);
  if (hits > k) problems.push(`${hits} calls reached the server; the budget fits ${k}`);
  if (hits === 0) problems.push('no call reached the server');
  if (fulfilled !== hits) problems.push(`${fulfilled} calls succeeded but ${hits} reached the server`);
  for (const reason of rejections) if (!options.isDenial(reason)) problems.push(`a call failed other than by a policy denial: ${String(reason)}`);
  if (spent > budget) problems.push(`spent ${spent} past the budget ${budget}`);
  if (overrun !== 0) problems.push(`reservations were overrun by ${overrun}`);
  return { estimate, budget, hits, fulfilled, rejections, spent, overrun, probeSpent, problems };
}
