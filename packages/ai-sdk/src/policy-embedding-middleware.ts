import type { PolicySession } from '@agentpolicy/core';
import type { EmbeddingModelMiddleware } from 'ai';
import { assertSession, commitUsage, reserveModelCall, settleFailure } from './model-call-reservation.js';

/**
 * An embedding model middleware (use with `wrapEmbeddingModel`) that puts every embedding call under the session's
 * budget. Before each call (one per chunk `embedMany` sends, one per retry attempt) it reserves the worst case of
 * the values it embeds (their size, priced by core from the policy's `pricing:` or the price catalog; embeddings
 * have no output) and throws the policy error when the budget cannot cover it, so nothing is sent. After the call it
 * commits the real cost from the reported `usage.tokens`; a call that reports no usable count (0 included) is
 * charged its estimate. Under a budget, a model with no known price is denied before the call.
 *
 * @example
 * ```ts
 * const session = new AgentPolicy({ budget: 1 }).session();
 * const model = wrapEmbeddingModel({ model: openai.embedding('text-embedding-3-small'), middleware: policyEmbeddingMiddleware(session) });
 * const { embeddings } = await embedMany({ model, values: ['sunny day', 'rainy night'] });
 * ```
 */
export function policyEmbeddingMiddleware(session: PolicySession): EmbeddingModelMiddleware {
  assertSession(session, 'policyEmbeddingMiddleware');
  return {
    // Both ai 6 and ai 7 ignore this tag at run time; ai 6's types require 'v3', ai 7's accept any string.
    specificationVersion: 'v3',

    async wrapEmbed({ doEmbed, params, model }) {
      const reservation = await reserveModelCall(session, {
        model: model.modelId,
        provider: model.provider,
        prompt: params.values,
        maxOutputTokens: 0,
        metadata: { via: 'ai-sdk', call: 'embed' },
      }, params.abortSignal);
      let result;
      try {
        result = await doEmbed();
      } catch (error) {
        await settleFailure(reservation, error, params.abortSignal);
        throw error;
      }
      // Embeddings report input tokens only; the output side is the estimate's, which is none. Values that were
      // embedded were read: a count of 0 is no report (the estimate is charged).
      const tokens = (result.usage as { tokens?: unknown } | undefined)?.tokens;
      await commitUsage(reservation, tokens === undefined || tokens === 0 ? undefined : { inputTokens: tokens });
      return result;
    },
  };
}
