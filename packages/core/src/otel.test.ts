import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const exporter = new InMemorySpanExporter();
const reader = new TestReader();

function policy(): AgentPolicy {
  return AgentPolicy.fromDict({
    budget: { max_spend: 5 },
    tools: { allow: ['search_docs', 'send_email'], block: ['delete_*'] },
    network: { allow: ['docs.python.org'] },
    approval: { require_for: [{ tool: 'send_email' }] },
    pricing: { 'mock-model': { input: 10, output: 20 } },
  });
}

async function metric(name: string): Promise<{ attributes: Record<string, unknown>; value: number }[]> {
  const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics };
  const found = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((m) => m.descriptor.name === name);
  return (found?.dataPoints ?? []).map((point) => ({ attributes: point.attributes, value: point.value as number }));
}

describe('OpenTelemetry', () => {
  it('emits nothing while no provider is registered (and nothing breaks)', async () => {
    const session = policy().session({ id: 'before' });
    expect((await session.checkTool('search_docs')).decision).toBe('allow');
    expect((await session.checkTool('delete_prod')).decision).toBe('deny');
    // Registered afterwards: the earlier decisions were not recorded anywhere.
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  describe('with a provider', () => {
    beforeAll(() => {
      expect(trace.getTracerProvider()).toBeDefined();
    });
    beforeEach(() => exporter.reset());
    afterAll(() => {
      trace.disable();
      metrics.disable();
      context.disable();
    });

    it('records allow, deny and require_approval as run_guardrail spans with the GenAI guardrail attributes', async () => {
      const p = policy();
      const session = p.session({ id: 's1' });
      await session.checkTool('search_docs', { cost: 0.25, metadata: { toolCallId: 'call-1' } });
      await session.checkTool('delete_prod');
      await session.checkTool('send_email');
      await session.checkHttp('https://evil.example.com/x', { method: 'post' });

      const spans = exporter.getFinishedSpans();
      expect(spans.map((s) => s.name)).toEqual(Array(4).fill('run_guardrail agentpolicy'));
      const [allow, deny, escalate, http] = spans.map((s) => s.attributes);
      expect(allow).toMatchObject({
        'gen_ai.operation.name': 'run_guardrail',
        'gen_ai.guardrail.component.name': 'agentpolicy',
        'gen_ai.guardrail.target.type': 'input',
        'gen_ai.guardrail.target.subtype': 'tool_call',
        'gen_ai.guardrail.target.id': 'call-1',
        'gen_ai.guardrail.verdict.type': 'allow',
        'gen_ai.guardrail.action.type': 'allow',
        'gen_ai.guardrail.security.policy.id': p.hash,
        'gen_ai.guardrail.security.policy.rule.id': 'default',
        'gen_ai.tool.name': 'search_docs',
        'gen_ai.tool.call.id': 'call-1',
        'agentpolicy.decision': 'allow',
        'agentpolicy.session.id': 's1',
        'agentpolicy.rule.section': 'default',
        'agentpolicy.action.type': 'tool',
        'agentpolicy.action.cost_usd': 0.25,
      });
      expect(deny).toMatchObject({
        'gen_ai.guardrail.verdict.type': 'deny',
        'gen_ai.guardrail.action.type': 'block',
        'gen_ai.guardrail.security.policy.rule.id': 'tools.block:delete_*',
        'agentpolicy.decision': 'deny',
        'agentpolicy.rule.section': 'tools',
      });
      expect(String(deny?.['gen_ai.guardrail.verdict.reason'])).toContain('blocked by tools.block entry "delete_*"');
      expect(escalate).toMatchObject({
        'gen_ai.guardrail.verdict.type': 'escalate',
        'gen_ai.guardrail.action.type': 'escalate',
        'gen_ai.guardrail.security.policy.rule.id': 'approval[0]',
        'agentpolicy.decision': 'require_approval',
        'agentpolicy.rule.section': 'approval',
      });
      expect(http).toMatchObject({
        'gen_ai.guardrail.target.subtype': 'action',
        'agentpolicy.http.host': 'evil.example.com',
        'http.request.method': 'POST',
        'agentpolicy.decision': 'deny',
        'gen_ai.guardrail.security.policy.rule.id': 'network.allow',
      });
      expect(spans.every((s) => s.kind === 0 /* INTERNAL */ && s.parentSpanContext === undefined)).toBe(true);
    });

    it('puts the decisions of work under an active span on that span, as events, and a model call with its settlement', async () => {
      const tracer = trace.getTracer('test');
      const session = policy().session({ id: 's2' });
      await tracer.startActiveSpan('agent step', async (span) => {
        await session.checkTool('delete_prod');
        const call = await session.reserveModelCall({ model: 'mock-model', inputTokens: 1000, maxOutputTokens: 1000 });
        expect(call.allowed).toBe(true);
        await call.commit({ inputTokens: 1000, outputTokens: 500 });
        span.end();
      });
      const spans = exporter.getFinishedSpans();
      expect(spans.map((s) => s.name)).toEqual(['agent step']);
      const events = spans[0]!.events;
      expect(events.map((e) => e.name)).toEqual(['agentpolicy.decision', 'agentpolicy.decision', 'agentpolicy.settlement']);
      expect(events[0]!.attributes).toMatchObject({ 'agentpolicy.decision': 'deny', 'gen_ai.guardrail.verdict.type': 'deny', 'gen_ai.tool.name': 'delete_prod' });
      expect(events[1]!.attributes).toMatchObject({
        'agentpolicy.decision': 'allow',
        'gen_ai.guardrail.target.subtype': 'llm',
        'gen_ai.request.model': 'mock-model',
        'agentpolicy.cost.source': 'model:mock-model',
        'agentpolicy.action.cost_usd': 0.03,
      });
      expect(events[2]!.attributes).toMatchObject({
        'agentpolicy.settlement.status': 'committed',
        'agentpolicy.settlement.estimated_usd': 0.03,
        'agentpolicy.settlement.actual_usd': 0.02,
        'gen_ai.usage.input_tokens': 1000,
        'gen_ai.usage.output_tokens': 500,
      });
    });

    it('records nothing for a session opened with telemetry: false', async () => {
      const session = policy().session({ id: 'quiet', telemetry: false });
      await session.checkTool('delete_prod');
      await session.checkTool('search_docs');
      expect(exporter.getFinishedSpans()).toHaveLength(0);
    });

    it('marks a check that failed as an error span', async () => {
      const session = policy().session({
        id: 's3',
        store: {
          snapshot: () => ({ spent: 0, reserved: 0 }),
          reserve: () => {
            throw new Error('store down');
          },
          commit: () => undefined,
          release: () => undefined,
          charge: () => undefined,
        } as never,
      });
      const decision = await session.checkTool('search_docs', { cost: 1 });
      expect(decision.rule.section).toBe('error');
      const [span] = exporter.getFinishedSpans();
      expect(span?.status.code).toBe(2 /* ERROR */);
      expect(span?.attributes['error.type']).toBe('_OTHER');
    });

    it('counts decisions by outcome, spend in USD and open reservations', async () => {
      const session = policy().session({ id: 'metrics' });
      await session.checkTool('search_docs', { cost: 0.5 });
      await session.checkTool('delete_prod');
      await session.checkTool('send_email');
      const call = await session.reserveModelCall({ model: 'mock-model', inputTokens: 1000, maxOutputTokens: 1000 });
      const open = await metric('agentpolicy.reservations.open');
      expect(open.reduce((n, p) => n + p.value, 0)).toBe(1);
      await call.commit({ inputTokens: 1000, outputTokens: 500 });

      const decisions = await metric('agentpolicy.decisions');
      const count = (outcome: string) => decisions.filter((p) => p.attributes['agentpolicy.decision'] === outcome).reduce((n, p) => n + p.value, 0);
      // Earlier tests in this file count too: compare with what this session adds on top of them.
      expect(count('deny')).toBeGreaterThanOrEqual(1);
      expect(count('require_approval')).toBeGreaterThanOrEqual(1);
      const spend = await metric('agentpolicy.spend');
      const spent = (type: string) => spend.filter((p) => p.attributes['agentpolicy.action.type'] === type).reduce((n, p) => n + p.value, 0);
      expect(spent('tool')).toBeCloseTo(0.5 + 0.25, 9);
      expect(spent('cost')).toBeCloseTo(0.02 * 2, 9);
      expect((await metric('agentpolicy.reservations.open')).reduce((n, p) => n + p.value, 0)).toBe(0);
    });
  });
});
