import { splitPromptMedia, type PolicySession, type Reservation } from '@agentpolicy/core';
import type { LanguageModelMiddleware } from 'ai';
import { assertSession, commitUsage, reserveModelCall, settleFailure } from './model-call-reservation.js';

/** The call options read from the SDK (spec V3 and V4 alike). */
interface CallParams {
  readonly prompt: unknown;
  readonly maxOutputTokens?: number | undefined;
  readonly tools?: readonly unknown[] | undefined;
  readonly responseFormat?: unknown;
  readonly abortSignal?: AbortSignal | undefined;
}

interface ModelInfo {
  readonly modelId: string;
  readonly provider: string;
}

async function reserve(session: PolicySession, model: ModelInfo, params: CallParams, call: 'generate' | 'stream'): Promise<Reservation> {
  // Tool definitions and a JSON response schema are sent as input tokens too: count them in the worst case.
  const prompt = Array.isArray(params.prompt) ? [...(params.prompt as unknown[])] : [params.prompt];
  if (params.tools && params.tools.length > 0) prompt.push({ tools: params.tools });
  const format = params.responseFormat as { type?: unknown; schema?: unknown } | undefined;
  if (format?.type === 'json' && format.schema !== undefined) prompt.push({ responseFormat: format });
  // Images, audio and documents in the messages are bounded by core's media rules, not counted as text.
  const media = splitPromptMedia(prompt);
  return reserveModelCall(session, {
    model: model.modelId,
    provider: model.provider,
    ...media,
    ...(typeof params.maxOutputTokens === 'number' ? { maxOutputTokens: params.maxOutputTokens } : {}),
    metadata: { via: 'ai-sdk', call },
  }, params.abortSignal);
}

function warn(error: unknown): void {
  process.emitWarning(`agentpolicy: settling a model call failed: ${(error as Error)?.message ?? String(error)}`);
}

/**
 * A language model middleware (use with `wrapLanguageModel`) that puts every model call under the session's
 * budget. Before each call it reserves a worst-case cost (the prompt's size plus `maxOutputTokens`, priced by core
 * from the policy's `pricing:` or the price catalog) and throws the policy error when the budget cannot cover it,
 * so the model is never called. After the call it commits the real cost from the reported usage: the generate
 * result's `usage`, or a stream's `finish` part as soon as it passes. A stream cancelled or aborted before `finish`
 * is charged the estimate; a stream its consumer abandons keeps its reservation until `session.end()` charges it.
 * Under a budget, a model with no known price is denied before the call.
 *
 * The middleware works with ai 7 (spec V4) and ai 6 (spec V3) models alike.
 *
 * @example
 * ```ts
 * const policy = new AgentPolicy({ budget: 1, pricing: { 'my-model': { input: 0.15, output: 0.6 } } });
 * const session = policy.session();
 * const model = wrapLanguageModel({ model: baseModel, middleware: policyMiddleware(session) });
 * const { text } = await generateText({ model, prompt: 'Hello', maxOutputTokens: 500 });
 * console.log(session.report().spent);
 * ```
 */
export function policyMiddleware(session: PolicySession): LanguageModelMiddleware {
  assertSession(session, 'policyMiddleware');
  return {
    // Both ai 6 and ai 7 ignore this tag at run time; ai 6's types require 'v3', ai 7's accept any string.
    specificationVersion: 'v3',

    async wrapGenerate({ doGenerate, params, model }) {
      const reservation = await reserve(session, model, params, 'generate');
      let result;
      try {
        result = await doGenerate();
      } catch (error) {
        await settleFailure(reservation, error, params.abortSignal);
        throw error;
      }
      await commitUsage(reservation, result.usage);
      return result;
    },

    async wrapStream({ doStream, params, model }) {
      const reservation = await reserve(session, model, params, 'stream');
      let result;
      try {
        result = await doStream();
      } catch (error) {
        await settleFailure(reservation, error, params.abortSignal);
        throw error;
      }
      const signal = params.abortSignal;
      // An abort settles at once even if the stream never reaches us again (an abort with no usage: the estimate).
      const onAbort = (): void => void reservation.commit().catch(warn);
      signal?.addEventListener('abort', onAbort, { once: true });
      const settled = (): void => signal?.removeEventListener('abort', onAbort);
      type Part = typeof result.stream extends ReadableStream<infer P> ? P : never;
      // `cancel` (called on consumer cancel and on upstream error) is in the Streams standard and Node, not yet in TS's lib.
      const transformer: Transformer<Part, Part> & { cancel?: (reason: unknown) => Promise<void> } = {
        async transform(part, controller) {
          if (part.type === 'finish') {
            settled();
            await commitUsage(reservation, part.usage).catch(warn);
          }
          controller.enqueue(part);
        },
        async flush() {
          // Ended without a `finish` part: no usage was reported.
          settled();
          await reservation.commit().catch(warn);
        },
        async cancel() {
          // Cancelled by the consumer, or the provider stream failed.
          settled();
          await reservation.commit().catch(warn);
        },
      };
      const stream = result.stream.pipeThrough(new TransformStream<Part, Part>(transformer));
      return { ...result, stream };
    },
  };
}
