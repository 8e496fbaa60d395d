import { AgentPolicyError, decisionError, splitPromptMedia, type PolicySession, type Reservation } from '@agentpolicy/core';
import { BaseCallbackHandler } from '@langchain/core/callbacks/base';
import type { BaseMessage } from '@langchain/core/messages';
import type { LLMResult } from '@langchain/core/outputs';
import type { HandleLLMNewTokenCallbackFields, NewTokenIndices } from '@langchain/core/callbacks/base';
import type { Serialized } from '@langchain/core/load/serializable';
import { isGated } from './model-gate.js';
import { addStreamedUsage, failureOf, modelInfoFromCallback, promptOf, usageFromResult, type UsageSides } from './model-call.js';
import { decide, isDecidedToolRun, isGovernedToolCall, markToolRun } from './tool-run.js';
import { toolCallKey, toolCost, type ToolCosts } from './tool-costs.js';

/** Options of {@link AgentPolicyCallbackHandler}. */
export interface AgentPolicyCallbackHandlerOptions {
  /** Declared USD cost per tool call, charged when the call is allowed. */
  toolCosts?: ToolCosts;
}

/**
 * A LangChain callback handler that enforces a session's policy on every run it is attached to: tools, chat models
 * and legacy LLMs, alone or inside LCEL chains, langchain v1 agents and LangGraph graphs.
 *
 * - `handleToolStart` checks the tool with its input. Its name is the run name, which `withConfig({ runName })`
 *   changes: LangChain gives a handler no other name for the tool, so a renamed run is checked under the new name.
 *   For `createAgent`, use {@link agentPolicyMiddleware}, which sees the real tool name. A tool that is not allowed
 *   throws {@link PolicyDeniedError} or {@link ApprovalRequiredError}, and the tool body does not run. A
 *   `require_approval` is answered by the session's `approver` when it has one; without one it is denied (use the
 *   middleware for interrupt-based approvals). A tool with a cost holds it until `handleToolEnd` charges it, or
 *   `handleToolError` settles it by core's rule for a tool that throws.
 * - `handleChatModelStart` / `handleLLMStart` reserve the worst-case cost of the call; when the budget cannot cover
 *   it (or the model has no known price under a budget) they throw and no request is sent.
 * - `handleLLMEnd` charges the real cost from the message's `usage_metadata` (`llmOutput` for legacy LLMs) and
 *   releases the rest of the reservation. A run is reserved and settled once: the model's own retries
 *   (`maxRetries`) happen inside it, unseen (set `maxRetries: 0`, or use {@link agentPolicyMiddleware}, which meters
 *   every attempt).
 *
 * The handler is built with `raiseError: true`, so LangChain awaits it and lets its errors through whichever way it is
 * attached (`callbacks` on invoke, `withConfig`, or a constructor's `callbacks`). Without that flag LangChain runs
 * handlers in the background and only logs their errors.
 *
 * @example
 * ```ts
 * const session = AgentPolicy.fromYaml('policy.yaml').session();
 * const handler = new AgentPolicyCallbackHandler(session, { toolCosts: { web_search: 0.005 } });
 * await agent.invoke({ messages: [{ role: 'user', content: 'hi' }] }, { callbacks: [handler] });
 * console.log(session.report());
 * ```
 */
export class AgentPolicyCallbackHandler extends BaseCallbackHandler {
  name = 'AgentPolicyCallbackHandler';
  /** The session every decision is recorded in. */
  readonly session: PolicySession;
  private readonly toolCosts: ToolCosts | undefined;
  private readonly reservations = new Map<string, Reservation>();
  // The counts the chunks of a streamed run reported, by run id: LangChain's merge turns a count none reported into 0.
  private readonly streamed = new Map<string, UsageSides>();
  private readonly toolRuns = new Map<string, Reservation>();
  // Model runs the middleware of the same session gates: this handler leaves them alone.
  private readonly skipped = new Set<string>();

  constructor(session: PolicySession, options: AgentPolicyCallbackHandlerOptions = {}) {
    // Constructor flags, not class fields: only these make LangChain await the handler and rethrow its errors.
    super({ raiseError: true });
    this.session = session;
    this.toolCosts = options.toolCosts;
  }

  /** LangChain copies handlers in a few places; a copy must share the session and the open reservations. */
  override copy(): AgentPolicyCallbackHandler {
    return this;
  }

  /**
   * Checks the tool named by `runName`, with its input; throws (and the tool does not run) unless the decision is
   * `allow`. LangChain gives a handler no other name for the tool: see the README on `runName`.
   */
  override async handleToolStart(
    _tool: Serialized,
    input: string,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    _metadata?: Record<string, unknown>,
    runName?: string,
    toolCallId?: string,
  ): Promise<void> {
    // The middleware of this session is running this call, or another handler on it saw this run: decided already.
    if (isGovernedToolCall(this.session, toolCallId) || isDecidedToolRun(this.session, runId)) return;
    const name = runName ?? '';
    const args = parseInput(input);
    const { cost, error: costError } = toolCost(this.toolCosts, name, args);
    // Keyed by the tool call id (shared with the middleware) or the run id; core binds the key to the input, so the
    // same id with other input is another call, and a call id that already ran is decided (and charged) again.
    const key = toolCallKey(toolCallId) ?? `langchain:tool-run:${runId}`;
    const check = {
      input: args,
      ...(cost !== undefined ? { cost } : {}),
      metadata: { ...(toolCallId !== undefined ? { toolCallId } : {}), runId, ...(costError !== undefined ? { costError } : {}) },
      idempotencyKey: key,
    };
    // Marked before the first await: LangChain runs handlers side by side, and one decision is enough.
    markToolRun(this.session, runId, true);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const run = await decide(this.session, name, check);
        if (run.decision.decision !== 'allow') throw decisionError(run.decision);
        if (await this.session.claim(run.decision)) {
          if (run.reservation) this.toolRuns.set(runId, run.reservation);
          return;
        }
      }
      throw new AgentPolicyError('DECISION_USED', `agentpolicy: tool call ${JSON.stringify(toolCallId ?? runId)} is being run more than once at the same time`);
    } catch (error) {
      markToolRun(this.session, runId, false);
      throw error;
    }
  }

  /** Charges the declared cost of a tool that ran. Never throws. */
  override async handleToolEnd(_output: unknown, runId: string): Promise<void> {
    markToolRun(this.session, runId, false);
    const open = this.toolRuns.get(runId);
    this.toolRuns.delete(runId);
    try {
      await open?.commit();
    } catch (error) {
      process.emitWarning(`agentpolicy: settling tool run ${runId} failed: ${(error as Error)?.message ?? String(error)}`);
    }
  }

  /** Settles a tool that threw by core's one rule (released for an agentpolicy error or a 4xx, else charged). Never throws. */
  override async handleToolError(error: unknown, runId: string): Promise<void> {
    markToolRun(this.session, runId, false);
    const open = this.toolRuns.get(runId);
    this.toolRuns.delete(runId);
    try {
      await open?.fail({ error });
    } catch (settleError) {
      process.emitWarning(`agentpolicy: settling tool run ${runId} failed: ${(settleError as Error)?.message ?? String(settleError)}`);
    }
  }

  /** Reserves the chat model call's worst-case cost; throws (and nothing is sent) when it is denied. */
  override async handleChatModelStart(
    llm: Serialized,
    messages: BaseMessage[][],
    runId: string,
    _parentRunId?: string,
    extraParams?: Record<string, unknown>,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): Promise<void> {
    await this.reserve(llm, promptWithTools(promptOf(messages[0] ?? []), extraParams), runId, extraParams, metadata);
  }

  /** Reserves a legacy completion LLM call's worst-case cost; throws (and nothing is sent) when it is denied. */
  override async handleLLMStart(
    llm: Serialized,
    prompts: string[],
    runId: string,
    _parentRunId?: string,
    extraParams?: Record<string, unknown>,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): Promise<void> {
    await this.reserve(llm, prompts[0] ?? '', runId, extraParams, metadata);
  }

  /** Notes the counts a streamed chunk reports. Never throws. */
  override handleLLMNewToken(_token: string, _idx: NewTokenIndices, runId: string, _parentRunId?: string, _tags?: string[], fields?: HandleLLMNewTokenCallbackFields): void {
    if (!this.reservations.has(runId)) return;
    const sides = addStreamedUsage(this.streamed.get(runId), fields?.chunk);
    if (sides !== undefined) this.streamed.set(runId, sides);
  }

  /** Charges the real cost of the call (a cache hit costs nothing). Never throws. */
  override async handleLLMEnd(output: LLMResult, runId: string, _parentRunId?: string, _tags?: string[], extraParams?: Record<string, unknown>): Promise<void> {
    if (this.skipped.delete(runId)) return;
    const open = this.reservations.get(runId);
    this.reservations.delete(runId);
    const sides = this.streamed.get(runId);
    this.streamed.delete(runId);
    // Never throws: the call already happened, so its cost is recorded and the caller gets its answer.
    try {
      if (extraParams?.['cached'] === true) {
        await open?.release();
        return;
      }
      // A stream whose chunks left out a count: the merged message holds a 0 for it, which is no report.
      const usage = sides !== undefined && !(sides.input && sides.output) ? undefined : usageFromResult(output);
      if (open) {
        await open.commit(usage);
        return;
      }
      // No reservation: the handler saw the end of a run but not its start (attached late).
      if (usage) await this.session.recordUsage({ ...usage, model: usage.model ?? 'unknown' }, { metadata: { runId } });
    } catch (error) {
      process.emitWarning(`agentpolicy: recording the usage of run ${runId} failed: ${(error as Error)?.message ?? String(error)}`);
    }
  }

  /**
   * Settles a failed call: released when it clearly cost nothing (a provider 4xx, a policy error), otherwise charged
   * at its estimate, since a request that failed late may have been billed. Never throws.
   */
  override async handleLLMError(error: unknown, runId: string): Promise<void> {
    if (this.skipped.delete(runId)) return;
    const open = this.reservations.get(runId);
    this.reservations.delete(runId);
    this.streamed.delete(runId);
    if (!open) return;
    try {
      await open.fail(failureOf(error));
    } catch (settleError) {
      process.emitWarning(`agentpolicy: settling run ${runId} failed: ${(settleError as Error)?.message ?? String(settleError)}`);
    }
  }

  private async reserve(llm: Serialized, prompt: unknown, runId: string, extraParams: Record<string, unknown> | undefined, metadata: Record<string, unknown> | undefined): Promise<void> {
    if (isGated(this.session)) {
      this.skipped.add(runId);
      return;
    }
    const info = modelInfoFromCallback(llm, extraParams, metadata);
    const reservation = await this.session.reserveModelCall({
      model: info.model,
      ...(info.provider !== undefined ? { provider: info.provider } : {}),
      ...splitPromptMedia(prompt),
      ...(info.maxOutputTokens !== undefined ? { maxOutputTokens: info.maxOutputTokens } : {}),
      ...(info.n !== undefined ? { n: info.n } : {}),
      metadata: { runId },
      idempotencyKey: `langchain:model:${runId}`,
    });
    if (!reservation.allowed) throw decisionError(reservation.decision);
    this.reservations.set(runId, reservation);
  }
}

function parseInput(input: string): unknown {
  try {
    return JSON.parse(input);
  } catch {
    return input;
  }
}

function promptWithTools(prompt: unknown, extraParams: Record<string, unknown> | undefined): unknown {
  const invocation = extraParams?.['invocation_params'];
  const tools = typeof invocation === 'object' && invocation !== null ? (invocation as Record<string, unknown>)['tools'] : undefined;
  return Array.isArray(tools) && tools.length > 0 ? { messages: prompt, tools } : prompt;
}
