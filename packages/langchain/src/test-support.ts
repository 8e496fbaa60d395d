// Shared by the tests only (not part of the package: tsup builds from index.ts).
import { AIMessage, type StandardMessageStructure, type UsageMetadata } from '@langchain/core/messages';
import { fakeModel } from '@langchain/core/testing';

/** 10 input + 5 output tokens. */
export const USAGE: UsageMetadata = { input_tokens: 10, output_tokens: 5, total_tokens: 15 };

/** What USAGE costs under PRICING: 10 input tokens at $1/M + 5 output tokens at $2/M. */
export const CALL_COST = 0.00002;

/**
 * Prices for the fake models. fakeModel() reports no model name: LangChain gives only its class, FakeBuiltModel,
 * which is the name the adapter prices.
 */
export const PRICING = {
  FakeBuiltModel: { input: 1, output: 2, cachedInput: 0.5, maxOutputTokens: 4096 },
  FakeListChatModel: { input: 1, output: 2, maxOutputTokens: 4096 },
  'token-llm': { input: 1, output: 2, maxOutputTokens: 4096 },
};

// The explicit structure: with exactOptionalPropertyTypes, AIMessage's default structure types usage_metadata as never.
type Fields = ConstructorParameters<typeof AIMessage<StandardMessageStructure>>[0];

/** An AI message (answer or tool calls) with usage. */
export function aiMessage(fields: Exclude<Fields, string | unknown[]>): AIMessage {
  return new AIMessage<StandardMessageStructure>(fields) as unknown as AIMessage;
}

/** An AI message that calls one tool. */
export function toolCallMessage(name: string, args: Record<string, unknown>, id: string, usage: UsageMetadata = USAGE): AIMessage {
  return aiMessage({ content: '', tool_calls: [{ name, args, id, type: 'tool_call' }], usage_metadata: usage });
}

/** A tool call a scripted model makes: the tool's name and its arguments. */
export type Call = readonly [name: string, args: Readonly<Record<string, unknown>>];

/** A fake model that makes one of `calls` per turn (ids `call_0`, `call_1`, …), then answers `final`. */
export function oneCallPerTurn(calls: readonly Call[], final = 'All done.') {
  let model = fakeModel();
  calls.forEach(([name, args], i) => {
    model = model.respond(toolCallMessage(name, { ...args }, `call_${i}`));
  });
  return model.respond(aiMessage({ content: final, usage_metadata: USAGE }));
}

/** The embeddings model the embeddings tests price (text-embedding-3-small is in the price catalog). */
export const EMBEDDING_MODEL = 'text-embedding-3-small';

/** What the billing server reports for an embeddings input: about 4 bytes of its JSON a token. */
export const billedTokens = (input: unknown): number => Math.ceil(Buffer.byteLength(JSON.stringify(input)) / 4);
