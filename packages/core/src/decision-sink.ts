import type { Decision } from './decision.js';
import type { PolicySession } from './session.js';
import { telemetrySink } from './otel.js';

/**
 * Receives a session's record as it is written: every decision, and every settlement of money reserved by one.
 * Called synchronously, in order, before the check returns to its caller. The audit log and the OpenTelemetry
 * integration are sinks; pass your own in {@link SessionOptions.sinks}.
 */
export interface DecisionSink {
  /** Called for every recorded decision. */
  decision(decision: Decision, session: PolicySession): void;
  /** Called when a reservation is settled; `decision.settlement` says how (committed or released, and the amount). */
  settlement?(decision: Decision, session: PolicySession): void;
}

/** The sinks a session writes to: the caller's own, then OpenTelemetry's when `@opentelemetry/api` is installed. */
export function sessionSinks(sinks: readonly DecisionSink[] | undefined, telemetry: boolean): readonly DecisionSink[] {
  const all = sinks ? [...sinks] : [];
  const otel = telemetry ? telemetrySink() : undefined;
  if (otel) all.push(otel);
  return all;
}
