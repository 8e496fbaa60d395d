import { decisionError, splitPromptMedia, type PolicySession, type Reservation } from '@agentpolicy/core';
import { BaseCallbackHandler } from '@langchain/core/callbacks/base';
import type { BaseMessage } from '@langchain/core/messages';
import type { LLMResult } from '@langchain/core/outputs';
import type { Serialized } from '@langchain/core/load/serializable';
import { isGated } from './model-gate.js';
import { failureOf, modelInfoFromCallback, promptOf, usageFromResult } from './model-call.js';
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
 * - `handleToolStart` checks the tool (its name is the run name). A tool that is not allowed throws
 *   {@link PolicyDeniedError} or {@link ApprovalRequiredError}, and the tool body does not run. A `require_approval`
 *   is answered by the session's `approver` when it has one; without one it is denied (use the middleware for
 *   interrupt-based approvals).
 * - `handleChatModelStart` / `handleLLMStart` reserve the worst-case cost of the call; when the budget cannot cover
 *   it (or the model has no known price under a budget) they throw and no request is sent.
 * - `handleLLMEnd` charges the real cost from the message's `usage_metadata` (`llmOutput` for legacy LLMs) and
 *   releases the rest of the reservation.
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

  /** Checks the tool named by `runName`; throws (and the tool does not run) unless the decision is `allow`. */
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
    const name = runName ?? '';
    const cost = toolCost(this.toolCosts, name, parseInput(input));
    // Keyed by the tool call id (shared with the middleware) or the run id, so a second look at the same call
    // (another handler or the middleware on this session) neither records nor charges it again.
    const key = toolCallKey(toolCallId) ?? `langchain:tool-run:${runId}`;
    const decision = await this.session.checkTool(name, {
      ...(cost !== undefined ? { cost } : {}),
      metadata: { ...(toolCallId !== undefined ? { toolCallId } : {}), runId },
      idempotencyKey: key,
    });
    if (decision.decision !== 'allow') throw decisionError(decision);
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

  /** Charges the real cost of the call (a cache hit costs nothing). Never throws. */
  override async handleLLMEnd(output: LLMResult, runId: string, _parentRunId?: string, _tags?: string[], extraParams?: Record<string, unknown>): Promise<void> {
    if (this.skipped.delete(runId)) return;
    const open = this.reservations.get(runId);
    this.reservations.delete(runId);
    // Never throws: the call already happened, so its cost is recorded and the caller gets its answer.
    try {
      if (extraParams?.['cached'] === true) {
        await open?.release();
        return;
      }
      const usage = usageFromResult(output);
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
