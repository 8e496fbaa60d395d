import { errorMessage } from './errors.js';
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

/**
 * Hands a session's record to its `onDecision` listener and its sinks, in that order. A listener or sink that throws
 * did not record the decision: for a decision that lets an action go ahead (`gated`) that is a failure the session
 * turns into a deny, unless `onError` is `warn`; otherwise it is reported as a process warning and the record goes on.
 */
export class DecisionPublisher {
  constructor(
    private readonly listener: ((decision: Decision) => void) | undefined,
    private readonly onError: 'deny' | 'warn',
    private readonly sinks: readonly DecisionSink[],
  ) {}

  /** Publishes a decision. Returns the error when one threw and that must stop the action. */
  publish(decision: Decision, session: PolicySession, gated: boolean): unknown {
    const listener = this.listener;
    let failure: unknown;
    if (listener) {
      try {
        listener(decision);
      } catch (error) {
        process.emitWarning(`agentpolicy: onDecision threw: ${errorMessage(error)}`);
        failure = error ?? new Error('onDecision threw');
        // Denied instead: the sinks are given that deny, not this decision.
        if (gated && this.onError !== 'warn') return failure;
      }
    }
    for (const sink of this.sinks) {
      try {
        sink.decision(decision, session);
      } catch (error) {
        process.emitWarning(`agentpolicy: a decision sink threw: ${errorMessage(error)}`);
        failure ??= error ?? new Error('a decision sink threw');
      }
    }
    return failure !== undefined && gated && this.onError !== 'warn' ? failure : undefined;
  }

  /** Publishes a settlement. It is spend that happened: a sink that throws is reported, never undone. */
  settled(decision: Decision, session: PolicySession): void {
    for (const sink of this.sinks) {
      try {
        sink.settlement?.(decision, session);
      } catch (error) {
        process.emitWarning(`agentpolicy: a decision sink threw: ${errorMessage(error)}`);
      }
    }
  }
}
