import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { generateText, isStepCount, tool, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { policyMiddleware } from './policy-middleware.js';
import { makePolicy, priceOf, textResult, toolCallResult, usage } from './test-utils.js';
import { wrapTools } from './wrap-tools.js';

// Core records every decision with OpenTelemetry when a provider is registered: through the AI SDK adapter, the
// decisions of a generateText run land on the application's own span.
const exporter = new InMemorySpanExporter();
beforeAll(() => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
afterAll(() => {
  trace.disable();
  context.disable();
});

describe('OpenTelemetry through the AI SDK adapter', () => {
  it('records the model call, the denied tool and the settlement on the active span', async () => {
    const session = makePolicy({ budget: 1, blockedTools: ['delete_*'], allowedTools: ['weather'] }).session({ id: 'otel-run' });
    let deleted = 0;
    const tools = wrapTools(
      {
        delete_files: tool({ inputSchema: z.object({ path: z.string() }), execute: async () => ++deleted }),
        weather: tool({ inputSchema: z.object({ city: z.string() }), execute: async ({ city }) => `sunny in ${city}` }),
      },
      session,
    );
    const base = new MockLanguageModelV4({ doGenerate: [toolCallResult('delete_files', 'call-1', { path: '/' }, usage(10, 5)), textResult('cannot', usage(20, 7))] });
    const model = wrapLanguageModel({ model: base, middleware: policyMiddleware(session) });

    await trace.getTracer('app').startActiveSpan('agent run', async (span) => {
      await generateText({ model, tools, stopWhen: isStepCount(3), prompt: 'clean up', maxOutputTokens: 50 });
      span.end();
    });

    expect(deleted).toBe(0);
    const [run] = exporter.getFinishedSpans();
    expect(run?.name).toBe('agent run');
    const events = run!.events.map((e): Record<string, unknown> => ({ name: e.name, ...e.attributes }));
    expect(events.map((e) => `${e.name}:${e['agentpolicy.decision'] ?? e['agentpolicy.settlement.status']}`)).toEqual([
      'agentpolicy.decision:allow',
      'agentpolicy.settlement:committed',
      'agentpolicy.decision:deny',
      'agentpolicy.decision:allow',
      'agentpolicy.settlement:committed',
    ]);
    expect(events[0]).toMatchObject({
      'gen_ai.operation.name': 'run_guardrail',
      'gen_ai.guardrail.target.subtype': 'llm',
      'gen_ai.guardrail.verdict.type': 'allow',
      'gen_ai.request.model': 'mock-model-id',
      'agentpolicy.session.id': 'otel-run',
    });
    expect(events[1]).toMatchObject({ 'agentpolicy.settlement.actual_usd': priceOf(10, 5), 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 });
    expect(events[2]).toMatchObject({
      'gen_ai.guardrail.target.subtype': 'tool_call',
      'gen_ai.guardrail.verdict.type': 'deny',
      'gen_ai.guardrail.action.type': 'block',
      'gen_ai.guardrail.security.policy.rule.id': 'tools.block:delete_*',
      'gen_ai.tool.name': 'delete_files',
      'gen_ai.tool.call.id': 'call-1',
    });
    expect(String(events[2]!['gen_ai.guardrail.verdict.reason'])).toContain('blocked');
  });
});
