import { canonicalInput, type PolicySession } from '@agentpolicy/core';
import { interopParseAsync, isInteropZodSchema } from '@langchain/core/utils/types';

/** A tool call's input as the policy decides it. */
export interface ToolInput {
  readonly input: unknown;
  /** The tool's schema rejects the arguments: the tool will throw `ToolInputParsingException` and not run. */
  readonly rejected: boolean;
}

/**
 * The input a tool call will run with: the model's arguments as the tool's own zod schema parses them (defaults
 * filled in, transforms and coercions applied), by the function `StructuredTool.call()` and `RunnableToolLike` parse
 * with, so the policy, the approval request and the cost see what the tool body gets. A tool without a zod schema
 * (a JSON schema is validated, never transformed; a tool a middleware provides) runs with the arguments as they are,
 * and nothing is parsed.
 *
 * The tool still parses the model's arguments itself: passing the parsed value on would apply a transform twice.
 */
export async function toolInputOf(tool: unknown, args: unknown): Promise<ToolInput> {
  const schema = typeof tool === 'object' && tool !== null ? (tool as { schema?: unknown }).schema : undefined;
  if (!isInteropZodSchema(schema)) return { input: args, rejected: false };
  let parsed: unknown;
  try {
    parsed = await interopParseAsync(schema, args);
  } catch {
    // The tool rejects these arguments itself (ToolInputParsingException) and its body does not run. They are still
    // decided as they are, so a call a rule denies is recorded and answered as a denial, not as a schema error.
    return { input: args, rejected: true };
  }
  // A schema that turns the call into one value (LangChain's string tools unwrap `{ input }` into the string) is
  // judged on the model's arguments, which hold that value under the key rules name (`input.input`).
  return { input: typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed : args, rejected: false };
}

const REMEMBERED = 1024;

// Parsed inputs of tool calls waiting for an approval, per session, by tool call id and the model's arguments. A
// resume runs the middleware again from the start, and a schema whose parse is not deterministic (a default taken
// from the clock or a random id) would give that run another input, so another fingerprint, and the approval would
// never match it. In memory: a resume in another process parses again.
const waiting = new WeakMap<PolicySession, Map<string, ToolInput>>();

function waitingKey(toolCallId: string | undefined, args: unknown): string | undefined {
  if (toolCallId === undefined || toolCallId === '') return undefined;
  try {
    return `${toolCallId}\u0000${canonicalInput(args)}`;
  } catch {
    return undefined;
  }
}

/**
 * {@link toolInputOf}, or the input a call with this id and these arguments was decided on while it waits for an
 * approval (see {@link rememberWaiting}).
 */
export async function waitingToolInputOf(session: PolicySession, tool: unknown, toolCallId: string | undefined, args: unknown): Promise<ToolInput> {
  const calls = waiting.get(session);
  const key = calls !== undefined && calls.size > 0 ? waitingKey(toolCallId, args) : undefined;
  const remembered = key === undefined ? undefined : calls?.get(key);
  return remembered ?? toolInputOf(tool, args);
}

/** Keeps the input of a call that waits for an approval (`waits`), or forgets it once the call is decided. */
export function rememberWaiting(session: PolicySession, toolCallId: string | undefined, args: unknown, input: ToolInput, waits: boolean): void {
  let calls = waiting.get(session);
  // Arguments used as they are need no memory.
  if (input.input === args || (!waits && (calls === undefined || calls.size === 0))) return;
  const key = waitingKey(toolCallId, args);
  if (key === undefined) return;
  if (!waits) {
    calls?.delete(key);
    return;
  }
  if (calls === undefined) waiting.set(session, (calls = new Map()));
  if (calls.size >= REMEMBERED) calls.clear();
  calls.set(key, input);
}
