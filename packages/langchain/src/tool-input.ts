import { waitingInputs, type PolicySession } from '@agentpolicy/core';
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

/**
 * {@link toolInputOf}, or the input a call with this id and these arguments was decided on while it waits for an
 * approval (core's `waitingInputs`: a resume runs the middleware again from the start, and a parse that is not
 * deterministic would give it another input).
 */
export async function waitingToolInputOf(session: PolicySession, tool: unknown, name: string, toolCallId: string | undefined, args: unknown): Promise<ToolInput> {
  const remembered = waitingInputs.get(session, { id: toolCallId, name, sent: args });
  return remembered === undefined ? toolInputOf(tool, args) : { input: remembered.input, rejected: false };
}

/** Keeps the input of a call that waits for an approval (`waits`), or forgets it once the call is decided. */
export function rememberWaiting(session: PolicySession, name: string, toolCallId: string | undefined, args: unknown, input: ToolInput, waits: boolean): void {
  // Arguments used as they are need no memory.
  if (input.input !== args) waitingInputs.set(session, { id: toolCallId, name, sent: args }, input.input, waits);
}
