import type { ImageInput, ModelCallEstimate, PolicySession, Reservation } from '@agentpolicy/core';
import type { ImageModelMiddleware } from 'ai';
import { assertSession, reserveModelCall, settleFailure } from './model-call-reservation.js';
import { toUsageUpdate } from './to-usage-update.js';

/** The call options read from the SDK (image spec V3 and V4 alike). */
interface ImageCallParams {
  readonly prompt?: unknown;
  readonly n?: unknown;
  readonly size?: unknown;
  readonly aspectRatio?: unknown;
  readonly files?: unknown;
  readonly mask?: unknown;
  readonly providerOptions?: unknown;
  readonly abortSignal?: AbortSignal | undefined;
}

interface ModelInfo {
  readonly modelId: string;
  readonly provider: string;
}

const record = (value: unknown): Record<string, unknown> | undefined =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;

const unlessZero = (value: unknown): unknown => (value === 0 ? undefined : value);

const chosen = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' && value.toLowerCase() !== 'auto' ? value : undefined);

/**
 * What one image call asks for, as core's estimate reads it: the prompt, `n`, the size (an aspect ratio alone leaves
 * the size to the provider: the worst case), the quality set in the provider options, and the input images of an
 * edit (`files`, `mask`, and an OpenAI `markup`), each bounded at full detail (high input fidelity included when an
 * entry asks for it).
 */
function describeImageCall(model: ModelInfo, params: ImageCallParams): ModelCallEstimate {
  // Which entry of the provider options a provider reads is its own affair (an OpenAI provider renamed `proxy` still
  // reads `openai`), so every entry is read. Qualities that disagree leave the quality unknown, and the size with it:
  // without either, core reserves the dearest image the model is listed at.
  const entries = Object.values(record(params.providerOptions) ?? {}).flatMap<Record<string, unknown>>((entry) => record(entry) ?? []);
  const qualities = new Set(entries.flatMap((entry) => chosen(entry['quality']) ?? []));
  const quality = qualities.size === 1 ? [...qualities][0] : undefined;
  const size = qualities.size > 1 ? undefined : chosen(params.size);
  const input: ImageInput = entries.some((entry) => entry['inputFidelity'] === 'high') ? { detail: 'high', fidelity: 'high' } : { detail: 'high' };
  const files = Array.isArray(params.files) ? params.files.length : 0;
  const uploads = files + (params.mask != null ? 1 : 0) + (entries.some((entry) => entry['markup'] != null) ? 1 : 0);
  return {
    model: model.modelId,
    provider: model.provider,
    prompt: params.prompt ?? '',
    // Handed to core as given: a count that is not a whole number ≥ 1 is refused there.
    ...(params.n !== undefined ? { n: params.n as number } : {}),
    ...(uploads > 0 ? { images: Array.from({ length: uploads }, () => input) } : {}),
    imageOutput: { ...(size !== undefined ? { size } : {}), ...(quality !== undefined ? { quality } : {}) },
    metadata: { via: 'ai-sdk', call: 'image', ...(typeof params.aspectRatio === 'string' ? { aspectRatio: params.aspectRatio } : {}) },
  };
}

/**
 * Commits an image call from its result. A model core priced per image (its estimate holds no token counts) is
 * charged for the images returned, at the size and quality reserved; a token-billed model for the tokens reported,
 * its output being images (and an edit's input too: the SDK does not pass on the text and image split). Nothing
 * usable reported (a count of 0 is none), or no image returned, is charged the estimate.
 */
async function commitImages(reservation: Reservation, result: { images?: unknown; usage?: unknown }, edit: boolean): Promise<void> {
  const estimate = reservation.decision.action.metadata;
  if (typeof estimate?.['estimatedInputTokens'] !== 'number') {
    const count = Array.isArray(result.images) ? result.images.length : 0;
    if (count < 1) {
      await reservation.commit();
      return;
    }
    const size = estimate?.['imageSize'];
    const quality = estimate?.['imageQuality'];
    await reservation.commit({
      inputTokens: 0,
      outputTokens: 0,
      images: count,
      ...(typeof size === 'string' ? { imageSize: size } : {}),
      ...(typeof quality === 'string' ? { imageQuality: quality } : {}),
    });
    return;
  }
  // An image call reads a prompt and bills the images it makes: a side reported as 0 is no report.
  const usage = record(result.usage);
  const update = toUsageUpdate(usage && { ...usage, inputTokens: unlessZero(usage['inputTokens']), outputTokens: unlessZero(usage['outputTokens']) }, estimate);
  await (update
    ? reservation.commit({ ...update, outputImageTokens: update.outputTokens, ...(edit ? { inputImageTokens: update.inputTokens } : {}) })
    : reservation.commit());
}

/**
 * An image model middleware (use with `wrapImageModel`, or `wrapProvider`'s `imageModelMiddleware`) that puts every
 * image call under the session's budget. Before each call (one per batch `generateImage` sends, one per retry
 * attempt) it reserves the worst case core computes for it: `n` images at the requested size and quality, priced per
 * image (the policy's `per_image`) or by tokens (gpt-image: the prompt, any input images, and the output tokens of
 * that size and quality, the largest when the provider chooses). When the budget cannot cover it, or the call asks
 * for something core cannot bound (`n` that is not a whole number ≥ 1), it throws the policy error and nothing is
 * sent. After the call it commits the real cost from the result; a call with no usable report is charged its
 * estimate. Under a budget, a model with no known price is denied before the call.
 *
 * @example
 * ```ts
 * const session = new AgentPolicy({ budget: 1, pricing: { 'dall-e-3': { per_image: { '1024x1024': 0.04 } } } }).session();
 * const model = wrapImageModel({ model: openai.image('dall-e-3'), middleware: policyImageMiddleware(session) });
 * const { image } = await generateImage({ model, prompt: 'a lighthouse at dusk', size: '1024x1024' });
 * ```
 */
export function policyImageMiddleware(session: PolicySession): ImageModelMiddleware {
  assertSession(session, 'policyImageMiddleware');
  return {
    // Both ai 6 and ai 7 ignore this tag at run time; ai 6's types require 'v3', ai 7's accept any string.
    specificationVersion: 'v3',

    async wrapGenerate({ doGenerate, params, model }) {
      const call = params as ImageCallParams;
      const estimate = describeImageCall(model, call);
      const reservation = await reserveModelCall(session, estimate, call.abortSignal);
      let result;
      try {
        result = await doGenerate();
      } catch (error) {
        await settleFailure(reservation, error, call.abortSignal);
        throw error;
      }
      await commitImages(reservation, result, estimate.images !== undefined);
      return result;
    },
  };
}
