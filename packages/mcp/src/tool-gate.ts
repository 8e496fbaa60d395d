import { AgentPolicyError, PolicyDeniedError, canonicalInput, decisionError, withdrawAllow, type CheckToolOptions, type Decision, type PolicySession, type Reservation } from '@agentpolicy/core';
import { governedToolName, readServerName } from './governed-tool-name.js';
import type { ToolInput, ToolInputReader } from './server-tool-input.js';
import { toolCost, type McpToolCosts } from './tool-costs.js';

/** Options shared by the client-side and the server-side gate. */
export interface McpPolicyOptions {
  /**
   * The MCP server's name as the policy sees it: its tools are checked as `mcp__<server>__<tool>`. Given by the app
   * (never taken from the server, which could call itself anything).
   */
  server: string;
  /** USD per call of each tool (by its name on the server), or a function of the call. Tools not listed cost nothing. */
  costs?: McpToolCosts;
  /**
   * How long a call that needs approval waits for an answer given to its approval request from anywhere
   * (`session.resolveApproval`, a token, another process with the same approval store). Default 0: the call comes back
   * at once as an error result that says approval is needed and names the request; calling the same tool with the
   * same arguments again after the answer picks it up. With a session `approver`, the approver is asked instead.
   */
  approvalWaitMs?: number;
  /** How often the approval store is polled while waiting. Default 250 ms. */
  approvalPollMs?: number;
  /** Leave tools the policy never allows out of `tools/list` results. Default true. */
  hideDenied?: boolean;
  /**
   * How long a request passed on (a call allowed and sent, or any other request) may go unanswered before the gate
   * ends it: the requester gets a JSON-RPC request-timeout error (-32001), the peer a `notifications/cancelled`, and a
   * call is settled as cancelled (charged: it may have run). Default 600,000 (10 minutes, well past the MCP SDK's
   * 60 s request timeout, after which an SDK client cancels the request itself); `Infinity` for never. Set it above
   * the longest timeout your client gives a request.
   */
  requestTimeoutMs?: number;
}

/** An MCP `CallToolResult` that reports a refusal. */
export interface RefusalResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  isError: true;
  _meta: { 'agentpolicy/decision': { id: string; decision: Decision['decision']; rule: string; approvalRequestId?: string } };
}

/** What to do with one `tools/call`: run it under its reservation, answer with a refusal, or drop it (cancelled). */
export type CallOutcome =
  | { readonly kind: 'run'; readonly reservation: Reservation | undefined }
  | { readonly kind: 'refuse'; readonly result: RefusalResult }
  | { readonly kind: 'cancelled' };

const REMEMBERED_REQUESTS = 1024;

/** Whether a call was cancelled while it was being decided; the signal (for an approval wait) is made on demand. */
export class CallCancel {
  aborted = false;
  private controller: AbortController | undefined;

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    if (this.aborted) this.controller.abort();
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    this.aborted = true;
    this.controller?.abort(reason);
  }
}

/** The text of a refusal: core's own error message, and for an approval, what to do next. */
function refusalText(decision: Decision): string {
  const message = decisionError(decision).message;
  if (decision.decision !== 'require_approval') return message;
  const request = decision.approvalRequest;
  return request
    ? `${message}. Approval is needed: request ${request.id} waits for an answer; once it is approved, call the tool again with the same arguments.`
    : `${message}. Approval is needed.`;
}

/** A tool result that reports a decision that was not an allow (or a check that could not be made). */
export function refusal(decision: Decision, text = refusalText(decision)): RefusalResult {
  const meta: RefusalResult['_meta']['agentpolicy/decision'] = { id: decision.id, decision: decision.decision, rule: decision.rule.section };
  if (decision.approvalRequest) meta.approvalRequestId = decision.approvalRequest.id;
  return { content: [{ type: 'text', text }], isError: true, _meta: { 'agentpolicy/decision': meta } };
}

/** A refusal made without a decision (a check that could not be made, a malformed call). */
export function plainRefusal(text: string, rule: 'error' | 'input'): RefusalResult {
  return { content: [{ type: 'text', text }], isError: true, _meta: { 'agentpolicy/decision': { id: '', decision: 'deny', rule } } };
}

function errorText(error: unknown): string {
  return (error as Error)?.message ?? String(error);
}

/**
 * Translates MCP tool calls into session checks and back: one `tools/call` is one tool action named
 * `mcp__<server>__<tool>` whose `input` is the call's arguments. Core decides; this only maps a decision to running
 * the call, an error result, or an approval wait, and a response to core's settlement rule.
 */
export class ToolGate {
  readonly server: string;
  private readonly costs: McpToolCosts | undefined;
  private readonly waitMs: number;
  private readonly pollMs: number;
  private readonly hide: boolean;
  /** See {@link McpPolicyOptions.requestTimeoutMs}. */
  readonly requestTimeoutMs: number;
  /**
   * The open approval request of a call (by name and canonical arguments as sent), so a repeat carries its answer,
   * and the input it was decided on, so a repeat is decided on the same one.
   */
  private readonly requests = new Map<string, { readonly requestId: string; readonly input: unknown }>();
  /** Reservations of calls whose arguments the server rejects before running the handler. */
  private readonly rejected = new WeakSet<Reservation>();

  constructor(
    readonly session: PolicySession,
    options: McpPolicyOptions,
    private readonly via: 'mcp-client' | 'mcp-server',
    where: string,
    /** How the server will parse a call's arguments before its handler runs (an `McpServer`'s tool schemas). */
    private readonly inputOf?: ToolInputReader,
  ) {
    if (typeof session?.reserveAction !== 'function') {
      throw new AgentPolicyError('INVALID_ARGUMENT', `${where} needs a PolicySession: ${where}(transport, policy.session(), { server: 'docs' })`);
    }
    this.server = readServerName(options?.server, where);
    this.costs = options.costs;
    this.waitMs = Math.max(0, Number(options.approvalWaitMs ?? 0) || 0);
    this.pollMs = Math.max(1, Number(options.approvalPollMs ?? 250) || 250);
    this.hide = options.hideDenied !== false;
    this.requestTimeoutMs = readTimeout(options.requestTimeoutMs, where);
  }

  /** Decides one `tools/call` (its `params`). Never throws: a check that fails is a refusal. */
  async decide(params: unknown, cancel: CallCancel): Promise<CallOutcome> {
    try {
      return await this.decideCall(params, cancel);
    } catch (error) {
      // Nothing was run. The failed check is not an allow, so the call is refused with the cause.
      const text = `agentpolicy: the policy check of an MCP tool call on server ${JSON.stringify(this.server)} failed, so the call is denied: ${errorText(error)}`;
      return { kind: 'refuse', result: plainRefusal(text, 'error') };
    }
  }

  private async decideCall(params: unknown, cancel: CallCancel): Promise<CallOutcome> {
    const bag = (typeof params === 'object' && params !== null ? params : {}) as { name?: unknown; arguments?: unknown };
    const tool = bag.name;
    // A missing `arguments` is what the server reads as `{}`: the same action.
    const sent = bag.arguments === undefined ? {} : bag.arguments;
    // A tool name that is not a string is passed to core as it is, which denies it as an invalid name.
    const name = typeof tool === 'string' ? governedToolName(this.server, tool) : (tool as string);
    // The key of the call's open approval request is only computed while there are open requests, or when one opens.
    let memo = typeof tool === 'string' && this.requests.size > 0 ? callKey(name, sent) : undefined;
    const remembered = memo === undefined ? undefined : this.requests.get(memo);
    // What the handler will get (the server's parse of the arguments), which the policy, the approval request and the
    // cost read; a repeat of a call waiting for approval is decided on the input its request was raised for.
    const read: ToolInput =
      remembered !== undefined ? { input: remembered.input, rejected: false } : typeof tool === 'string' && this.inputOf !== undefined ? await this.inputOf(tool, sent) : { input: sent, rejected: false };
    const input = read.input;
    const declared = typeof tool === 'string' ? toolCost(this.costs, tool, input) : { cost: undefined };
    const metadata: Record<string, unknown> = { via: this.via, server: this.server };
    if (typeof tool === 'string') metadata['tool'] = tool;
    if (declared.error !== undefined) metadata['costError'] = declared.error;
    const check: CheckToolOptions = { input, metadata };
    if (declared.cost !== undefined) check.cost = declared.cost;

    let held = await this.check(name, check, remembered?.requestId);
    let decision = held.decision;
    const pending = decision.decision === 'require_approval' ? decision.approvalRequest : undefined;
    if (pending !== undefined && this.waitMs > 0) {
      const state = await this.session.waitForApproval(pending.id, { timeoutMs: this.waitMs, intervalMs: this.pollMs, signal: cancel.signal });
      if (cancel.aborted) return { kind: 'cancelled' };
      if (state !== undefined && state.status !== 'pending') {
        held = await this.check(name, check, state.id);
        decision = held.decision;
      }
    }
    if (memo === undefined && typeof tool === 'string' && decision.decision === 'require_approval') memo = callKey(name, sent);
    if (memo !== undefined) this.remember(memo, decision, input);
    if (decision.decision !== 'allow') return { kind: 'refuse', result: refusal(decision) };
    if (cancel.aborted) {
      // Taken, so no run can use it, and its money and limit slots given back.
      await withdrawAllow(this.session, decision, held.reservation);
      return { kind: 'cancelled' };
    }
    // One execution per allow. An allow another run (or process) took is settled there: its money is not released here.
    // A claim stopped before the run (a halt, or a policy changed since the decision that would not allow the call
    // now) is a recorded deny, answered like any other.
    let claimed: boolean;
    try {
      // A cancellation that comes while the allow is taken (a shared store answers later) withdraws it there: the
      // call never runs, so its money and its limit slots go back.
      claimed = await this.session.claim(decision, { signal: cancel.signal });
    } catch (error) {
      if (PolicyDeniedError.isInstance(error) && error.decision.sessionId === this.session.id) return { kind: 'refuse', result: refusal(error.decision) };
      throw error;
    }
    if (!claimed && cancel.aborted) return { kind: 'cancelled' };
    if (!claimed) {
      return { kind: 'refuse', result: refusal(decision, `agentpolicy: the allow ${decision.id} was already used for one execution`) };
    }
    if (read.rejected && held.reservation !== undefined) this.rejected.add(held.reservation);
    return { kind: 'run', reservation: held.reservation };
  }

  /**
   * Gives back the money of a call allowed (its allow taken) that will not be sent after all. Its limit slots stay
   * taken: core hands a taken allow's slots back to nobody (code that ran a call could otherwise free its slot). A
   * cancellation that comes before or while the allow is taken withdraws it in {@link decide}, slots and all; this is
   * for one that comes after, which only a transport that waits between deciding and sending can see.
   */
  async withdraw(reservation: Reservation | undefined): Promise<void> {
    if (reservation !== undefined && !reservation.settled) await reservation.release();
  }

  // A call with a declared cost holds it in a reservation, settled from the response; a free call is only decided.
  private async check(name: string, check: CheckToolOptions, requestId: string | undefined): Promise<{ decision: Decision; reservation: Reservation | undefined }> {
    const options = requestId === undefined ? check : { ...check, approval: { requestId } };
    if (check.cost === undefined) return { decision: await this.session.checkTool(name, options), reservation: undefined };
    const reservation = await this.session.reserveAction({ type: 'tool', name, ...options });
    return { decision: reservation.decision, reservation };
  }

  private remember(memo: string, decision: Decision, input: unknown): void {
    if (decision.decision === 'require_approval' && decision.approvalRequest) {
      if (this.requests.size >= REMEMBERED_REQUESTS) this.requests.clear();
      this.requests.set(memo, { requestId: decision.approvalRequest.id, input });
    } else {
      this.requests.delete(memo);
    }
  }

  /** A `tools/list` result without the tools the policy never allows (the same object when nothing is left out). */
  filterList(result: unknown): unknown {
    if (!this.hide || typeof result !== 'object' || result === null) return result;
    const tools = (result as { tools?: unknown }).tools;
    if (!Array.isArray(tools)) return result;
    const policy = this.session.policy;
    const kept = tools.filter((tool: unknown) => {
      const name = (tool as { name?: unknown } | null)?.name;
      return typeof name === 'string' && policy.neverAllowsTool(governedToolName(this.server, name)) === undefined;
    });
    return kept.length === tools.length ? result : { ...result, tools: kept };
  }

  /**
   * Settles a call that ran, from its JSON-RPC response, by core's rule ({@link Reservation.fail}): a result commits
   * the declared cost; an error result (the tool ran and failed) or a lost response is settled as a failure; a
   * JSON-RPC "invalid params" / "method not found" error (the server refused the call before running it) counts as
   * a 4xx, and so does an error result for arguments the server's schema rejects (its handler never ran). An error
   * result for a handler whose thrown error is known (`thrown`: `gateMcpServer` on an `McpServer`) is settled by that
   * error, as a local tool's; any other error result or error answer is charged (fields a peer adds to it, such as a
   * `status`, are not read).
   */
  settle(reservation: Reservation | undefined, response: { result?: unknown; error?: unknown } | { lost: unknown }, thrown?: { readonly error: unknown }): void {
    if (reservation === undefined) return;
    let done: Promise<unknown>;
    if ('lost' in response) done = reservation.fail({ error: response.lost });
    else if (this.rejected.has(reservation) && (response.error !== undefined || (response.result as { isError?: unknown } | null)?.isError === true)) {
      done = reservation.fail({ status: 400, error: response.error ?? response.result });
    }
    else if (response.error !== undefined) {
      const code = (response.error as { code?: unknown } | null)?.code;
      // Only these codes say the call was not run. What else a peer puts in its answer (a `status` field of its own)
      // is not an error's status: the call may have run, so it is charged.
      done = code === -32602 || code === -32601 || code === -32600 ? reservation.fail({ status: 400, error: response.error }) : reservation.commit();
    } else if ((response.result as { isError?: unknown } | null)?.isError === true) done = thrown !== undefined ? reservation.fail({ error: thrown.error }) : reservation.commit();
    else done = reservation.commit();
    done.catch((error: unknown) => {
      // The reservation stays open and session.end() charges its estimate: no spend is lost.
      process.emitWarning(`agentpolicy: settling an MCP tool call failed: ${errorText(error)}`);
    });
  }
}

const DEFAULT_REQUEST_TIMEOUT_MS = 600_000;

function readTimeout(value: unknown, where: string): number {
  if (value === undefined) return DEFAULT_REQUEST_TIMEOUT_MS;
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${where}: option requestTimeoutMs must be a number of milliseconds above 0 (or Infinity), got ${String(value)}`);
  }
  // Past what a timer can wait (about 24.8 days) is never, in practice.
  return value > 2_147_483_647 ? Infinity : value;
}

/** Name and canonical arguments of a call; undefined when the arguments cannot be read (core denies those). */
function callKey(name: string, input: unknown): string | undefined {
  try {
    return `${name}\u0000${canonicalInput(input)}`;
  } catch {
    return undefined;
  }
}
