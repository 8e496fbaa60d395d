import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { Decision, DecisionValue } from './decision.js';
import type { DecisionSink } from './decision-sink.js';
import { ruleId } from './format-report.js';
import type { PolicySession } from './session.js';

// OpenTelemetry is an optional peer: loaded once, synchronously, the first time a session is created. Without the
// package nothing is loaded; without a registered provider a decision costs one global lookup.
//
// Attribute names follow the GenAI guardrail conventions (open-telemetry/semantic-conventions-genai,
// docs/gen-ai/gen-ai-security.md, status Development, built on semantic conventions v1.43.0): a decision is a
// `run_guardrail` evaluation of an `input` (the action about to run). Names the conventions do not cover are under
// `agentpolicy.*`.

/** The key under which every copy of `@opentelemetry/api` 1.x registers its global providers. */
const GLOBAL_KEY = Symbol.for('opentelemetry.js.api.1');
const SCOPE = '@agentpolicy/core';
const SPAN_NAME = 'run_guardrail agentpolicy';

type Api = typeof OtelApi;
type Registry = { readonly trace?: unknown; readonly metrics?: unknown } | undefined;

const VERDICT: Record<DecisionValue, string> = { allow: 'allow', deny: 'deny', require_approval: 'escalate' };
const ENFORCED: Record<DecisionValue, string> = { allow: 'allow', deny: 'block', require_approval: 'escalate' };

let api: Api | null | undefined;
let shared: TelemetrySink | null | undefined;

function loadApi(): Api | null {
  if (api === undefined) {
    try {
      api = createRequire(import.meta.url)('@opentelemetry/api') as Api;
    } catch {
      api = null;
    }
  }
  return api;
}

/** The one OpenTelemetry sink every session shares, or `undefined` when `@opentelemetry/api` is not installed. */
export function telemetrySink(): DecisionSink | undefined {
  if (shared === undefined) {
    const loaded = loadApi();
    shared = loaded ? new TelemetrySink(loaded) : null;
  }
  return shared ?? undefined;
}

interface Instruments {
  readonly decisions: OtelApi.Counter;
  readonly spend: OtelApi.Counter;
  readonly open: OtelApi.UpDownCounter;
}

class TelemetrySink implements DecisionSink {
  private tracerProvider: unknown;
  private tracer: OtelApi.Tracer | undefined;
  private meterProvider: unknown;
  private instruments: Instruments | undefined;

  constructor(private readonly api: Api) {}

  decision(decision: Decision, session: PolicySession): void {
    const registry = (globalThis as Record<symbol, Registry>)[GLOBAL_KEY];
    // Nothing registered (the usual case without OpenTelemetry set up): nothing to do.
    if (registry === undefined) return;
    if (registry.trace !== undefined) this.trace(decision, session);
    if (registry.metrics !== undefined) this.count(decision);
  }

  settlement(decision: Decision): void {
    const registry = (globalThis as Record<symbol, Registry>)[GLOBAL_KEY];
    if (registry === undefined) return;
    const settlement = decision.settlement;
    if (settlement === undefined) return;
    if (registry.trace !== undefined) {
      const span = this.api.trace.getActiveSpan();
      if (span?.isRecording()) {
        const metadata = decision.action.metadata;
        const attributes: OtelApi.Attributes = {
          'agentpolicy.decision.id': decision.id,
          'agentpolicy.session.id': decision.sessionId,
          'agentpolicy.settlement.status': settlement.status,
          'agentpolicy.settlement.estimated_usd': settlement.estimated,
          'agentpolicy.settlement.actual_usd': settlement.actual,
        };
        if (typeof metadata?.['inputTokens'] === 'number') attributes['gen_ai.usage.input_tokens'] = metadata['inputTokens'];
        if (typeof metadata?.['outputTokens'] === 'number') attributes['gen_ai.usage.output_tokens'] = metadata['outputTokens'];
        if (typeof metadata?.['model'] === 'string') attributes['gen_ai.request.model'] = metadata['model'];
        span.addEvent('agentpolicy.settlement', attributes);
      }
    }
    if (registry.metrics !== undefined) {
      const instruments = this.meter();
      if (settlement.status === 'committed' && settlement.actual > 0) instruments.spend.add(settlement.actual, { 'agentpolicy.action.type': decision.action.type });
      instruments.open.add(-1, { 'agentpolicy.action.type': decision.action.type });
    }
  }

  private trace(decision: Decision, session: PolicySession): void {
    const trace = this.api.trace;
    const active = trace.getActiveSpan();
    const attributes = decisionAttributes(decision, session);
    // On the span of the work being decided when there is one; otherwise on a short span of its own.
    if (active?.isRecording()) {
      active.addEvent('agentpolicy.decision', attributes);
      return;
    }
    const provider = trace.getTracerProvider();
    if (provider !== this.tracerProvider || this.tracer === undefined) {
      this.tracerProvider = provider;
      this.tracer = provider.getTracer(SCOPE);
    }
    const span = this.tracer.startSpan(SPAN_NAME, { kind: this.api.SpanKind.INTERNAL, attributes });
    if (decision.rule.section === 'error') span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: decision.rule.message });
    span.end();
  }

  private count(decision: Decision): void {
    const instruments = this.meter();
    const type = decision.action.type;
    instruments.decisions.add(1, { 'agentpolicy.decision': decision.decision, 'agentpolicy.action.type': type, 'agentpolicy.rule.section': decision.rule.section });
    if (decision.decision !== 'allow') return;
    if (decision.settlement === undefined) {
      if (decision.action.cost > 0) instruments.spend.add(decision.action.cost, { 'agentpolicy.action.type': type });
    } else if (decision.settlement.status === 'pending') {
      instruments.open.add(1, { 'agentpolicy.action.type': type });
    }
  }

  private meter(): Instruments {
    const provider = this.api.metrics.getMeterProvider();
    if (provider !== this.meterProvider || this.instruments === undefined) {
      const meter = provider.getMeter(SCOPE);
      this.meterProvider = provider;
      this.instruments = {
        decisions: meter.createCounter('agentpolicy.decisions', { description: 'Decisions recorded, by outcome, action type and rule section.', unit: '{decision}' }),
        spend: meter.createCounter('agentpolicy.spend', { description: 'Money charged to session budgets.', unit: 'USD' }),
        open: meter.createUpDownCounter('agentpolicy.reservations.open', { description: 'Reservations held and not yet committed or released.', unit: '{reservation}' }),
      };
    }
    return this.instruments;
  }
}

/** The attributes of one decision, as set on its span or span event. */
export function decisionAttributes(decision: Decision, session: PolicySession): OtelApi.Attributes {
  const action = decision.action;
  const attributes: OtelApi.Attributes = {
    'gen_ai.operation.name': 'run_guardrail',
    'gen_ai.guardrail.component.name': 'agentpolicy',
    'gen_ai.guardrail.target.type': 'input',
    'gen_ai.guardrail.target.subtype': action.type === 'tool' ? 'tool_call' : action.type === 'cost' && action.source.startsWith('model:') ? 'llm' : 'action',
    'gen_ai.guardrail.verdict.type': VERDICT[decision.decision],
    'gen_ai.guardrail.action.type': ENFORCED[decision.decision],
    'gen_ai.guardrail.verdict.reason': decision.reason,
    'gen_ai.guardrail.security.policy.id': session.policy.hash,
    'gen_ai.guardrail.security.policy.rule.id': ruleId(decision.rule),
    'agentpolicy.decision': decision.decision,
    'agentpolicy.decision.id': decision.id,
    'agentpolicy.session.id': decision.sessionId,
    'agentpolicy.rule.section': decision.rule.section,
    'agentpolicy.action.type': action.type,
    'agentpolicy.action.cost_usd': action.cost,
  };
  const metadata = action.metadata;
  if (action.type === 'tool') {
    attributes['gen_ai.tool.name'] = action.name;
    const callId = metadata?.['toolCallId'];
    if (typeof callId === 'string') {
      attributes['gen_ai.tool.call.id'] = callId;
      attributes['gen_ai.guardrail.target.id'] = callId;
    }
  } else if (action.type === 'http') {
    attributes['agentpolicy.http.host'] = action.domain;
    if (action.method !== undefined) attributes['http.request.method'] = action.method;
  } else {
    attributes['agentpolicy.cost.source'] = action.source;
    if (typeof metadata?.['model'] === 'string' && metadata['model'] !== '') attributes['gen_ai.request.model'] = metadata['model'];
  }
  if (decision.approved) {
    attributes['agentpolicy.approved'] = true;
    if (decision.approval?.by !== undefined) attributes['agentpolicy.approval.by'] = decision.approval.by;
  }
  if (decision.rule.section === 'error') attributes['error.type'] = '_OTHER';
  return attributes;
}
