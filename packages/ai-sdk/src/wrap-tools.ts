import { AgentPolicyError, type Decision, type PolicySession } from '@agentpolicy/core';
import { acquireToolCall, type ToolCallCheck, type ToolCallInfo } from './check-tool-call.js';
import { decideApproval } from './decide-approval.js';
import { answersCall, findApprovalResponse } from './find-approval-response.js';
import { allowedToRun, heldBack, runStopped } from './held-back-calls.js';
import { readOnDeny, toolSettings, type OnDeny, type ToolCost, type ToolSettings } from './tool-settings.js';

/** The input type of a tool, read from its `execute` (works for ai 6 and ai 7 tool types). */
export type ToolInput<TOOL> = TOOL extends { execute?: infer EXECUTE }
  ? NonNullable<EXECUTE> extends (input: infer INPUT, ...rest: never[]) => unknown
    ? INPUT
    : unknown
  : unknown;

/** Any tool set: a record of tool objects (ai 6 and ai 7 `ToolSet`s both fit). */
export type AnyToolSet = { readonly [name: string]: object };

/** Options of {@link wrapTools}. */
export interface WrapToolsOptions<TOOLS extends AnyToolSet = AnyToolSet> {
  /** USD per call, by tool name: a number, or a function of the call's input. Tools not listed cost nothing. */
  costs?: { [NAME in keyof TOOLS]?: ToolCost<ToolInput<TOOLS[NAME]>> };
  /**
   * `continue` (default): a denied tool does not run, the model is told why and the loop goes on.
   * `stop`: the run ends with the policy error (`generateText` rejects with it). See the README for where each applies.
   */
  onDeny?: OnDeny;
}

/** What the AI SDK passes to `execute` and `needsApproval` (ai 6 and 7); only these fields are read. */
interface CallOptions {
  readonly toolCallId?: string;
  readonly messages?: readonly unknown[];
}

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;

function isAsyncGeneratorFunction(fn: unknown): boolean {
  return Object.prototype.toString.call(fn) === '[object AsyncGeneratorFunction]';
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as Record<symbol, unknown>)[Symbol.asyncIterator] === 'function';
}

/** Denials a tool's needsApproval keeps for its execute (one each; the SDK calls execute right after). */
const REMEMBERED_DENIALS = 1024;

function callInfo(toolName: string, input: unknown, options: CallOptions | undefined): ToolCallInfo {
  return { toolName, toolCallId: typeof options?.toolCallId === 'string' ? options.toolCallId : undefined, input };
}

function define(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

function wrapTool(name: string, tool: unknown, session: PolicySession, cost: ToolCost<never> | undefined, onDeny: OnDeny): unknown {
  if (typeof tool !== 'object' || tool === null) return tool;
  // Wrapping a wrapped tool wraps its original again: one check per call, with the newest settings.
  const base = toolSettings.get(tool)?.original ?? tool;
  const execute = (base as { execute?: unknown }).execute;
  // Tools without `execute` run on the client or at the provider; `policyToolApproval` governs those in ai 7.
  if (typeof execute !== 'function') return tool;
  const original = execute as AnyFunction;
  const appNeedsApproval = (base as { needsApproval?: unknown }).needsApproval;

  // The execute-time check: the decision the approval hook already recorded for this call is found by its key and
  // input (not charged again) and its one execution is taken; a call that reached execute without one, or whose
  // allow was already used (the same call id run again), is decided here.
  // Synchronous while the session's stores are (no promise to wait for); throws when the call may not run.
  const acquire = (input: unknown, options: CallOptions | undefined): ToolCallCheck | Promise<ToolCallCheck> => {
    try {
      const call = callInfo(name, input, options);
      const earlier = takeDenied(call);
      if (earlier !== undefined) throw earlier;
      const approval = findApprovalResponse(options?.messages, call.toolCallId);
      const check = acquireToolCall(session, call, cost, approval?.approved && answersCall(approval, call) ? approval : undefined);
      return check instanceof Promise ? check.catch(failed) : check;
    } catch (cause) {
      return failed(cause);
    }
  };
  const failed = (cause: unknown): never => {
    if (AgentPolicyError.isInstance(cause)) throw cause;
    throw new AgentPolicyError('ACTION_DENIED', `agentpolicy: the policy check of tool ${JSON.stringify(name)} failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  };
  // The one rule for a tool that throws (core's Reservation.fail): the call ran, its allow is used, and its cost is
  // released only when the error says nothing was done (an agentpolicy error, a 4xx status); the error is rethrown.
  const settleFailed = async (check: ToolCallCheck, error: unknown): Promise<never> => {
    if (check.reservation) await check.reservation.fail({ error });
    throw error;
  };

  const guardedExecute = isAsyncGeneratorFunction(original)
    ? async function* (input: unknown, options: CallOptions | undefined): AsyncGenerator<unknown, void, undefined> {
        const acquired = acquire(input, options);
        const check = acquired instanceof Promise ? await acquired : acquired;
        try {
          yield* original.call(base, input, options) as AsyncIterable<unknown>;
        } catch (error) {
          await settleFailed(check, error);
        } finally {
          // Also when the consumer stops reading early: the tool ran.
          if (check.reservation && !check.reservation.settled) await check.reservation.commit();
        }
      }
    : async (input: unknown, options: CallOptions | undefined): Promise<unknown> => {
        const acquired = acquire(input, options);
        const check = acquired instanceof Promise ? await acquired : acquired;
        let result: unknown;
        try {
          result = await original.call(base, input, options);
          if (isAsyncIterable(result)) {
            // A plain function that returned a stream of outputs: the SDK would keep the last one as the result.
            let last: unknown;
            for await (const output of result) last = output;
            result = last;
          }
        } catch (error) {
          return settleFailed(check, error);
        }
        if (check.reservation) await check.reservation.commit();
        return result;
      };

  // The denial needsApproval just recorded for a call, which execute throws as it is: the SDK runs execute after a
  // `false`, and deciding the same call again would record it twice where core keeps no decision to find by its key
  // (a halt's deny). Only for the very input it was decided on, and while the policy is the one that decided it (a
  // changed policy decides the call again). Bounded: an entry execute never comes for is dropped first.
  const denied = new Map<string, { readonly input: unknown; readonly error: AgentPolicyError }>();
  const takeDenied = (call: ToolCallInfo): AgentPolicyError | undefined => {
    const earlier = call.toolCallId === undefined ? undefined : denied.get(call.toolCallId);
    if (earlier === undefined) return undefined;
    denied.delete(call.toolCallId as string);
    const decision = (earlier.error as { decision?: Decision }).decision;
    return earlier.input === call.input && decision?.policyHash === session.policy.hash ? earlier.error : undefined;
  };

  const needsApproval = async (input: unknown, options: CallOptions | undefined): Promise<boolean> => {
    const call = callInfo(name, input, options);
    const outcome = await decideApproval(session, {
      call,
      messages: options?.messages,
      cost,
      appNeedsApproval,
      appNeedsApprovalOptions: options,
      runsTool: true,
    });
    // Asked about, the SDK runs no call of this step with this tool call id (a denial still reaches execute).
    if (outcome.kind === 'ask') {
      await heldBack(session, options?.messages, call.toolCallId);
      return true;
    }
    if (outcome.kind === 'run' && outcome.check) await allowedToRun(session, options?.messages, call.toolCallId, outcome.check);
    if (outcome.kind === 'deny' && onDeny === 'stop') {
      await runStopped(session, options?.messages);
      throw outcome.error;
    }
    if (outcome.kind === 'deny' && !outcome.resumed && call.toolCallId !== undefined) {
      if (denied.size >= REMEMBERED_DENIALS) denied.delete(denied.keys().next().value as string);
      denied.set(call.toolCallId, { input, error: outcome.error });
    }
    // On a resume the human's approval must stay valid (ai 6 treats `false` as a forged approval and runs nothing);
    // execute then enforces the decision just made. That holds too for a call the SDK resumes from an approval that
    // did not count for it but that the policy allows on its own (ai 7 runs it as well): answering `false` there would
    // leave its allow holding money for a call that never runs. Otherwise nothing to ask: execute runs, or throws the
    // recorded denial.
    return outcome.resumed || (outcome.kind === 'run' && outcome.resuming === true);
  };

  const wrapped = Object.create(Object.getPrototypeOf(base) as object | null, Object.getOwnPropertyDescriptors(base)) as object;
  define(wrapped, 'execute', guardedExecute);
  define(wrapped, 'needsApproval', needsApproval);
  const settings: ToolSettings = { original: base, cost, needsApproval: appNeedsApproval };
  toolSettings.set(wrapped, settings);
  return wrapped;
}

/**
 * Returns the same tool set, with the same types, where every tool with an `execute` is checked by the session
 * before it runs (name, input, declared cost, tool call id). A denied tool never runs: by default its `execute`
 * throws the policy error, which the AI SDK hands to the model as a tool error, and the agent loop continues. Each
 * allow runs the tool once: the same tool call id run again (a provider that numbers calls per turn, a replay) is
 * decided and charged again, and the same id with other input is another call. A tool that throws is settled by
 * core's one rule (its cost is kept unless the error is an agentpolicy error or a 4xx refusal).
 *
 * Each wrapped tool also gets a `needsApproval` that asks the policy, so a `require_approval` decision becomes the
 * SDK's own `tool-approval-request` (ai 6 and 7). In ai 7, also pass {@link policyToolApproval} as `toolApproval`.
 *
 * @example
 * ```ts
 * const session = policy.session();
 * const result = await generateText({
 *   model,
 *   tools: wrapTools({ search, sendEmail }, session, { costs: { sendEmail: 0.01 } }),
 *   toolApproval: policyToolApproval(session),
 *   stopWhen: isStepCount(5),
 *   prompt: 'Find the report and mail it to Ada.',
 * });
 * ```
 */
export function wrapTools<TOOLS extends AnyToolSet>(tools: TOOLS, session: PolicySession, options: WrapToolsOptions<TOOLS> = {}): TOOLS {
  if (typeof session?.checkTool !== 'function') {
    throw new AgentPolicyError('INVALID_ARGUMENT', 'wrapTools needs a PolicySession: wrapTools(tools, policy.session())');
  }
  if (typeof tools !== 'object' || tools === null) throw new AgentPolicyError('INVALID_ARGUMENT', 'wrapTools needs a tool set object');
  const onDeny = readOnDeny(options.onDeny, 'wrapTools');
  const costs = (options.costs ?? {}) as Record<string, ToolCost<never> | undefined>;
  const wrapped: Record<string, unknown> = {};
  for (const [name, tool] of Object.entries(tools)) {
    wrapped[name] = wrapTool(name, tool, session, Object.hasOwn(costs, name) ? costs[name] : undefined, onDeny);
  }
  return wrapped as TOOLS;
}
