import { decisionError, splitPromptMedia, type ApprovalAnswer, type Decision, type PolicySession, type RuleRef } from '@agentpolicy/core';
import { AIMessage, ToolMessage } from '@langchain/core/messages';
import { convertToOpenAITool } from '@langchain/core/utils/function_calling';
import { interrupt, isGraphBubbleUp } from '@langchain/langgraph';
import { createMiddleware, type AgentMiddleware } from 'langchain';
import { runGated } from './model-gate.js';
import { failureOf, modelInfoFromModel, promptOf, usageFromMessage } from './model-call.js';
import { toolCallKey, toolCost, type ToolCosts } from './tool-costs.js';

/** Options of {@link agentPolicyMiddleware}. */
export interface AgentPolicyMiddlewareOptions {
  /** Declared USD cost per tool call, charged when the call is allowed. */
  toolCosts?: ToolCosts;
  /**
   * What happens when the budget cannot cover a model call. `'end'` (default): no request is sent and the run ends
   * with an AI message that says why. `'error'`: the run is stopped with a {@link PolicyDeniedError}.
   */
  exitBehavior?: 'end' | 'error';
  /** The middleware's name; it must be unique among an agent's middleware. Default `AgentPolicyMiddleware`. */
  name?: string;
}

/** The value of the `interrupt()` raised for a tool call that needs approval (it is JSON). */
export interface ToolApprovalRequest {
  readonly type: 'agentpolicy.approval';
  readonly tool: string;
  readonly args: unknown;
  readonly toolCallId: string | null;
  /** Why approval is needed, e.g. `tool "send_email" requires approval (approval.require_for[0] ...)`. */
  readonly reason: string;
  /** Id of the recorded `require_approval` decision. */
  readonly decisionId: string;
  readonly rule: RuleRef;
  readonly sessionId: string;
  /** Declared USD cost of the call. */
  readonly cost: number;
}

/**
 * The resume value of an approval: `Command({ resume: answer })`. Only `true` or `{ approved: true }` approves;
 * anything else rejects.
 */
export type ToolApprovalAnswer = boolean | { approved: boolean; by?: string; reason?: string };

/**
 * A langchain v1 `createAgent` middleware that enforces a session's policy inside the agent loop.
 *
 * - `wrapToolCall` checks every tool call. A denied call does not run: the model gets an error `ToolMessage` that
 *   says why, and the agent goes on. A call that needs approval raises a LangGraph `interrupt()` carrying a
 *   {@link ToolApprovalRequest}; resume with `new Command({ resume: { approved: true } })` (or `false`, or
 *   `{ approved: false, by, reason }`). An approved call is decided again, so a blocked or over-budget call stays
 *   denied. Decisions are keyed by tool call id, so the re-run that a resume causes records and charges nothing twice.
 *   Interrupts need a checkpointer and a `thread_id`; a session with an `approver` answers in place instead.
 * - `beforeModel` ends the run with an AI message once the budget is used up; `wrapModelCall` reserves the worst-case
 *   cost of each model call before it is sent (over budget: no request, the run ends with a message) and charges the
 *   real cost from the answer's `usage_metadata`.
 *
 * @example
 * ```ts
 * const session = policy.session();
 * const agent = createAgent({ model, tools, middleware: [agentPolicyMiddleware(session)], checkpointer: new MemorySaver() });
 * const config = { configurable: { thread_id: 't1' } };
 * let result = await agent.invoke({ messages: [{ role: 'user', content: 'Email Bob' }] }, config);
 * if (result.__interrupt__) result = await agent.invoke(new Command({ resume: { approved: true, by: 'alice' } }), config);
 * ```
 */
export function agentPolicyMiddleware(session: PolicySession, options: AgentPolicyMiddlewareOptions = {}): AgentMiddleware {
  const exitBehavior = options.exitBehavior ?? 'end';
  return createMiddleware({
    name: options.name ?? 'AgentPolicyMiddleware',

    beforeModel: {
      canJumpTo: ['end'],
      hook: () => {
        if (exitBehavior === 'error') return undefined;
        const reason = session.exhausted();
        return reason === undefined ? undefined : { jumpTo: 'end' as const, messages: [new AIMessage({ content: `agentpolicy: ${reason}` })] };
      },
    },

    wrapModelCall: async (request, handler) => {
      const info = modelInfoFromModel(request.model);
      const threadId = request.runtime?.configurable?.thread_id;
      const reservation = await session.reserveModelCall({
        model: info.model,
        ...(info.provider !== undefined ? { provider: info.provider } : {}),
        ...splitPromptMedia({ system: request.systemMessage?.content ?? request.systemPrompt, messages: promptOf(request.messages), tools: toolSpecs(request.tools) }),
        ...(info.maxOutputTokens !== undefined ? { maxOutputTokens: info.maxOutputTokens } : {}),
        ...(info.n !== undefined ? { n: info.n } : {}),
        metadata: { middleware: true, ...(typeof threadId === 'string' ? { threadId } : {}) },
      });
      if (!reservation.allowed) {
        if (exitBehavior === 'error') throw decisionError(reservation.decision);
        return new AIMessage({ content: `agentpolicy: model call denied: ${reservation.decision.reason}`, response_metadata: policyMetadata(reservation.decision) });
      }
      let response: AIMessage;
      try {
        response = await runGated(session, () => handler(request));
      } catch (error) {
        // An interrupt raised further in sent nothing; any other failure is settled by core's rule.
        await (isGraphBubbleUp(error) ? reservation.release() : reservation.fail(failureOf(error)));
        throw error;
      }
      try {
        await reservation.commit(usageFromMessage(response));
      } catch (error) {
        // The reservation stays open and session.end() charges its estimate: no spend is lost.
        process.emitWarning(`agentpolicy: recording model usage failed: ${(error as Error)?.message ?? String(error)}`);
      }
      return response;
    },

    wrapToolCall: async (request, handler) => {
      const { name, args, id } = request.toolCall;
      const key = toolCallKey(id);
      const cost = toolCost(options.toolCosts, name, args);
      const check = {
        ...(cost !== undefined ? { cost } : {}),
        metadata: id !== undefined ? { toolCallId: id } : {},
        ...(key !== undefined ? { idempotencyKey: key } : {}),
      };
      let decision = await session.checkTool(name, check);
      // On a re-run after an approval the keyed decision is already the approved one: interrupt again anyway, so this
      // call keeps its place in the task's interrupt order (LangGraph matches resume values by position).
      if (decision.decision === 'require_approval' || (key !== undefined && decision.approval?.via === 'caller')) {
        const answer = interrupt<ToolApprovalRequest, unknown>({
          type: 'agentpolicy.approval',
          tool: name,
          args: args ?? null,
          toolCallId: id ?? null,
          reason: decision.reason,
          decisionId: decision.id,
          rule: decision.rule,
          sessionId: session.id,
          cost: decision.action.cost,
        });
        // Core decides again with the human's answer: a rejection (or anything but a real approval) is recorded as a
        // denial with who and why; an approval still loses to a block or an exhausted budget.
        decision = await session.checkTool(name, { ...check, approval: answer as ApprovalAnswer });
      }
      if (decision.decision !== 'allow') return denial(request.toolCall, decision, decisionError(decision).message);
      return handler(request);
    },
  }) as AgentMiddleware;
}

function denial(toolCall: { name: string; id?: string | undefined }, decision: Decision, content: string): ToolMessage {
  return new ToolMessage({ content, tool_call_id: toolCall.id ?? '', name: toolCall.name, status: 'error', response_metadata: policyMetadata(decision) });
}

function policyMetadata(decision: Decision): Record<string, unknown> {
  return { agentpolicy: { decisionId: decision.id, decision: decision.decision, rule: decision.rule.section } };
}

function toolSpecs(tools: readonly unknown[] | undefined): unknown[] {
  return (tools ?? []).map((tool) => {
    try {
      return convertToOpenAITool(tool as Parameters<typeof convertToOpenAITool>[0]);
    } catch {
      const bag = (typeof tool === 'object' && tool !== null ? tool : {}) as Record<string, unknown>;
      return { name: bag['name'], description: bag['description'] };
    }
  });
}
