import { AgentPolicyError, type PolicySession, type Reservation } from '@agentpolicy/core';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { HandlerErrors } from './server-tool-errors.js';
import type { ToolInputReader } from './server-tool-input.js';
import { CallCancel, ToolGate, plainRefusal, type CallOutcome, type McpPolicyOptions } from './tool-gate.js';

type Side = 'client' | 'server';
type Message = Record<string, unknown>;
type Handler = <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void;

function isObject(value: unknown): value is Message {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
function isId(value: unknown): value is RequestId {
  return typeof value === 'string' || typeof value === 'number';
}
function isRequest(message: Message): boolean {
  return typeof message['method'] === 'string' && isId(message['id']);
}
function isResponse(message: Message): boolean {
  return message['method'] === undefined && isId(message['id']) && ('result' in message || 'error' in message);
}
/**
 * The call as it is decided and passed on: one JSON copy (what a transport puts on the wire anyway), so a caller that
 * changes its arguments object while the call is being decided changes nothing that is sent. `undefined` when the
 * call cannot be written as JSON (a cycle, a bigint): such a call is refused.
 */
function callCopy(request: Message): Message | undefined {
  try {
    const copy = JSON.parse(JSON.stringify(request)) as unknown;
    return isObject(copy) ? copy : undefined;
  } catch {
    return undefined;
  }
}
/**
 * A `tools/call` that is not a request (no id, or an id that is neither a string nor a number, such as `null`): MCP
 * has no such message, so it is never decided, and a peer that ran it anyway would run it ungoverned.
 */
function isStrayCall(message: Message): boolean {
  return message['method'] === 'tools/call' && !isId(message['id']);
}
function strayCallError(where: string): AgentPolicyError {
  return new AgentPolicyError('INVALID_ARGUMENT', `agentpolicy: an MCP tools/call without a request id (a string or a number) is ${where}: it cannot be decided or answered`);
}
/** The JSON-RPC error refusing a request (other than a call) under an id still in use by another request. */
function idInUse(id: RequestId): { code: number; message: string } {
  return { code: -32600, message: `agentpolicy: MCP request id ${JSON.stringify(id)} is already in use by another request; refused` };
}
function cancelledId(message: Message): RequestId | undefined {
  if (message['method'] !== 'notifications/cancelled' || message['id'] !== undefined) return undefined;
  const id = (message['params'] as { requestId?: unknown } | undefined)?.requestId;
  return isId(id) ? id : undefined;
}

/** Cancelled listings whose late answer is still filtered, per transport (see McpPolicyTransport.cancelledListings). */
const CANCELLED_LISTINGS_KEPT = 1024;
/** Requests the gate ended for want of an answer whose ids it still keeps (see McpPolicyTransport.expired). */
const EXPIRED_KEPT = 1024;
/** The JSON-RPC error code of a request that timed out (the MCP SDK's `ErrorCode.RequestTimeout`). */
const REQUEST_TIMEOUT = -32001;

/**
 * An MCP transport that gates `tools/call` and filters `tools/list` on the way through. On the client side it checks
 * calls it is asked to send; on the server side, calls it receives. Everything else passes unchanged.
 */
export class McpPolicyTransport implements Transport {
  // Declared without `| undefined`, so the wrapper also fits transport types that are (like @ai-sdk/mcp's MCPTransport).
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Handler;
  /** Calls allowed and passed on, by request id, until their response settles them. */
  private readonly running = new Map<RequestId, Reservation | undefined>();
  /** Calls still being decided (an approval may be awaited), by request id. */
  private readonly deciding = new Map<RequestId, CallCancel>();
  /** `tools/list` requests whose answer is still to be filtered, by request id. */
  private readonly listing = new Set<RequestId>();
  /**
   * Listings cancelled before their answer came (a timed-out `listTools`): their answer may still arrive and is still
   * filtered, but only the last {@link CANCELLED_LISTINGS_KEPT} are kept, so a peer that never answers does not make
   * the transport keep an id for every listing of a connection that lives for weeks. An answer to an older one goes
   * on as is, to a requester that no longer waits for it (the MCP SDK drops it as an unknown id).
   */
  private readonly cancelledListings = new Set<RequestId>();
  /**
   * Other requests passed on (client side: sent to the server; server side: passed to the server) and not yet
   * answered, by id. A request under an id still in use is refused: its answer would be taken for the other one's (a
   * "method not found" released a running call's cost).
   */
  private readonly open = new Set<RequestId>();
  /**
   * When each request passed on (a call or another) is ended if still unanswered, by id, oldest first (one timeout
   * for all, so insertion order is deadline order); one timer for the oldest.
   */
  private readonly deadlines = new Map<RequestId, number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Requests the gate ended after `requestTimeoutMs` (their requester told they timed out, the peer told to cancel):
   * a late answer under such an id is dropped (it was answered already) and the id is not taken by a new request
   * meanwhile, so a peer that answers anyway cannot have its answer taken for another's. The last
   * {@link EXPIRED_KEPT} are kept.
   */
  private readonly expired = new Set<RequestId>();
  private hooked = false;

  constructor(
    private readonly inner: Transport,
    private readonly gate: ToolGate,
    private readonly side: Side,
    /** Server side, on an `McpServer`: what its tool handlers threw, by request. */
    private readonly thrown?: HandlerErrors,
  ) {}

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  start(): Promise<void> {
    if (!this.hooked) {
      this.hooked = true;
      const inner = this.inner;
      // Handlers the app set on the transport itself keep running.
      const appClose = inner.onclose;
      const appError = inner.onerror;
      inner.onmessage = ((message: JSONRPCMessage, extra?: MessageExtraInfo) => this.receive(message, extra)) as Handler;
      inner.onclose = () => {
        this.lose(new Error('the MCP connection closed before the call was answered'));
        appClose?.call(inner);
        this.onclose?.();
      };
      inner.onerror = (error: Error) => {
        appError?.call(inner, error);
        this.onerror?.(error);
      };
    }
    return this.inner.start();
  }

  close(...rest: unknown[]): Promise<void> {
    return (this.inner.close as (...args: unknown[]) => Promise<void>).apply(this.inner, rest);
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const value = message as unknown;
    if (Array.isArray(value)) {
      await Promise.all(value.map((item) => this.send(item as JSONRPCMessage, options)));
      return;
    }
    if (!isObject(value)) return this.inner.send(message, options);
    if (this.side === 'client') {
      if (isRequest(value)) {
        if (value['method'] === 'tools/call') return this.callOut(value, options);
        const id = value['id'] as RequestId;
        if (this.inUse(id)) {
          // Its answer would be taken for the other request's: an error answer would settle a running call.
          this.onmessage?.({ jsonrpc: '2.0', id, error: idInUse(id) } as JSONRPCMessage);
          return;
        }
        this.open.add(id);
        this.track(id);
        if (value['method'] === 'tools/list') this.listing.add(id);
        try {
          return await this.inner.send(message, options);
        } catch (error) {
          // Not sent: no answer will come for it.
          this.open.delete(id);
          this.listing.delete(id);
          this.deadlines.delete(id);
          throw error;
        }
      } else if (isStrayCall(value)) {
        throw strayCallError('not sent');
      } else {
        const cancelled = cancelledId(value);
        if (cancelled !== undefined) this.cancel(cancelled);
      }
      return this.inner.send(message, options);
    }
    const out = isResponse(value) ? this.answered(value) : value;
    // An answer to a request the gate ended already (timed out) was answered then: not sent again.
    if (out === undefined) return;
    return this.inner.send(out as JSONRPCMessage, options);
  }

  private receive(message: JSONRPCMessage, extra: MessageExtraInfo | undefined): void {
    const value = message as unknown;
    if (Array.isArray(value)) {
      for (const item of value) this.receive(item as JSONRPCMessage, extra);
      return;
    }
    if (!isObject(value)) {
      this.onmessage?.(message, extra);
      return;
    }
    if (this.side === 'client') {
      const up = isResponse(value) ? this.answered(value) : value;
      if (up !== undefined) this.onmessage?.(up as JSONRPCMessage, extra);
      return;
    }
    if (isRequest(value)) {
      const id = value['id'] as RequestId;
      if (value['method'] === 'tools/call') {
        void this.callIn(value, extra);
        return;
      }
      if (this.inUse(id)) {
        void this.inner.send({ jsonrpc: '2.0', id, error: idInUse(id) } as JSONRPCMessage, { relatedRequestId: id }).catch((failure: unknown) => this.onerror?.(failure as Error));
        return;
      }
      this.open.add(id);
      this.track(id);
      if (value['method'] === 'tools/list') this.listing.add(id);
    } else if (isStrayCall(value)) {
      this.onerror?.(strayCallError('not passed to the server'));
      return;
    } else {
      const cancelled = cancelledId(value);
      if (cancelled !== undefined) this.cancel(cancelled);
    }
    this.onmessage?.(message, extra);
  }

  // Client side: decide before sending. A refusal is answered here and never reaches the server.
  private async callOut(request: Message, options: TransportSendOptions | undefined): Promise<void> {
    const id = request['id'] as RequestId;
    const copy = callCopy(request);
    const outcome = await this.decide(id, copy);
    if (outcome === undefined) return;
    if (outcome.kind === 'refuse') {
      this.onmessage?.({ jsonrpc: '2.0', id, result: outcome.result } as JSONRPCMessage);
      return;
    }
    this.running.set(id, outcome.reservation);
    this.track(id);
    try {
      await this.inner.send(copy as JSONRPCMessage, options);
    } catch (error) {
      this.running.delete(id);
      this.deadlines.delete(id);
      this.gate.settle(outcome.reservation, { lost: error });
      throw error;
    }
  }

  // Server side: decide before the server sees the call. A refusal is answered here; the handler never runs.
  private async callIn(request: Message, extra: MessageExtraInfo | undefined): Promise<void> {
    const id = request['id'] as RequestId;
    const copy = callCopy(request);
    const outcome = await this.decide(id, copy);
    if (outcome === undefined) return;
    if (outcome.kind === 'refuse') {
      await this.inner.send({ jsonrpc: '2.0', id, result: outcome.result } as JSONRPCMessage, { relatedRequestId: id }).catch((error: unknown) => this.onerror?.(error as Error));
      return;
    }
    this.running.set(id, outcome.reservation);
    this.track(id);
    this.onmessage?.(copy as JSONRPCMessage, extra);
  }

  private inUse(id: RequestId): boolean {
    return this.deciding.has(id) || this.running.has(id) || this.open.has(id) || this.expired.has(id);
  }

  private async decide(id: RequestId, call: Message | undefined): Promise<Exclude<CallOutcome, { kind: 'cancelled' }> | undefined> {
    if (this.inUse(id)) {
      // A second call under an id still in use would be answered (and settled) as the first one.
      return { kind: 'refuse', result: plainRefusal(`agentpolicy: MCP request id ${JSON.stringify(id)} is already in use by another request; refused`, 'input') };
    }
    if (call === undefined) {
      return { kind: 'refuse', result: plainRefusal(`agentpolicy: an MCP tool call on server ${JSON.stringify(this.gate.server)} that cannot be written as JSON (a cycle, a bigint) is refused`, 'input') };
    }
    const cancel = new CallCancel();
    this.deciding.set(id, cancel);
    try {
      const outcome = await this.gate.decide(call['params'], cancel);
      if (outcome.kind === 'cancelled') return undefined;
      // Cancelled while it was decided: its requester no longer waits for an answer (MCP: none is sent for a cancelled
      // request, and the SDK reports one as an unknown id). A refusal is recorded, not sent; an allow taken as the
      // cancellation came is given back, and the call never runs.
      if (cancel.aborted) {
        if (outcome.kind === 'run') await this.gate.withdraw(outcome.reservation);
        return undefined;
      }
      return outcome;
    } finally {
      this.deciding.delete(id);
    }
  }

  // A response to a call or a listing this transport let through: settle the call, filter the listing.
  private answered(response: Message): Message | undefined {
    const id = response['id'] as RequestId;
    this.deadlines.delete(id);
    if (this.expired.delete(id)) {
      this.cancelledListings.delete(id);
      return undefined;
    }
    this.open.delete(id);
    if (this.running.has(id)) {
      const reservation = this.running.get(id);
      this.running.delete(id);
      this.gate.settle(reservation, response as { result?: unknown; error?: unknown }, this.thrown?.take(id));
      return response;
    }
    if ((this.listing.delete(id) || this.cancelledListings.delete(id)) && 'result' in response) {
      const result = this.gate.filterList(response['result']);
      return result === response['result'] ? response : { ...response, result };
    }
    return response;
  }

  // A cancelled call: stop deciding it; one already passed on may have run, so it is settled as lost.
  private cancel(id: RequestId): void {
    this.deadlines.delete(id);
    this.open.delete(id);
    if (this.listing.delete(id)) {
      if (this.cancelledListings.size >= CANCELLED_LISTINGS_KEPT) this.cancelledListings.delete(this.cancelledListings.values().next().value as RequestId);
      this.cancelledListings.add(id);
    }
    this.deciding.get(id)?.abort();
    if (this.running.has(id)) {
      const reservation = this.running.get(id);
      this.running.delete(id);
      this.gate.settle(reservation, { lost: new Error('the call was cancelled') });
    }
  }

  /** A request passed on: ended by {@link expire} if still unanswered after `requestTimeoutMs`. */
  private track(id: RequestId): void {
    const timeout = this.gate.requestTimeoutMs;
    if (timeout === Infinity) return;
    this.deadlines.set(id, Date.now() + timeout);
    if (this.timer === undefined) this.arm();
  }

  private arm(): void {
    const first = this.deadlines.values().next();
    if (first.done === true) return;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, first.value - Date.now()));
    // The timer alone never keeps a process alive.
    this.timer.unref?.();
  }

  private sweep(): void {
    this.timer = undefined;
    const now = Date.now();
    for (const [id, at] of this.deadlines) {
      if (at > now) break;
      this.expire(id);
    }
    this.arm();
  }

  /**
   * A request never answered within `requestTimeoutMs`: ended as its requester would on a timeout. The requester is
   * answered with a JSON-RPC request-timeout error, the peer that holds the request is told it is cancelled (an
   * `McpServer` stops its handler and answers nothing), and a call is settled as a cancelled one (charged: it may
   * have run). Its id stays taken until the late answer, if any, comes (dropped) or it is among the oldest of
   * {@link EXPIRED_KEPT} ended requests.
   */
  private expire(id: RequestId): void {
    this.cancel(id);
    if (this.expired.size >= EXPIRED_KEPT) this.expired.delete(this.expired.values().next().value as RequestId);
    this.expired.add(id);
    const reason = `agentpolicy: MCP request ${JSON.stringify(id)} was not answered within ${this.gate.requestTimeoutMs} ms, so it is cancelled`;
    const timedOut = { jsonrpc: '2.0', id, error: { code: REQUEST_TIMEOUT, message: reason } } as JSONRPCMessage;
    const cancelled = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } } as JSONRPCMessage;
    const report = (error: unknown) => this.onerror?.(error as Error);
    if (this.side === 'client') {
      this.inner.send(cancelled).catch(report);
      this.onmessage?.(timedOut);
    } else {
      this.onmessage?.(cancelled);
      this.inner.send(timedOut, { relatedRequestId: id }).catch(report);
    }
  }

  private lose(error: Error): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.deadlines.clear();
    this.expired.clear();
    for (const cancel of this.deciding.values()) cancel.abort(error);
    for (const reservation of this.running.values()) this.gate.settle(reservation, { lost: error });
    this.running.clear();
    this.listing.clear();
    this.cancelledListings.clear();
    this.open.clear();
  }
}

/**
 * Wraps the transport of an MCP client so that every `tools/call` is checked by the session before it is sent. A
 * call that is not allowed never reaches the server: the client receives a tool result with `isError: true` and
 * the reason. `tools/list` results leave out tools the policy never allows. Tools are named `mcp__<server>__<tool>`
 * for the policy and the call's arguments are the action's `input`.
 *
 * Works with anything that speaks through an MCP transport: the SDK's `Client`, `@ai-sdk/mcp`'s `createMCPClient`,
 * `@langchain/mcp-adapters`' `loadMcpTools` over such a client.
 *
 * @example
 * ```ts
 * const session = policy.session();
 * const client = new Client({ name: 'agent', version: '1.0.0' });
 * await client.connect(wrapMcpTransport(new StdioClientTransport({ command: 'node', args: ['server.js'] }), session, { server: 'docs' }));
 * const result = await client.callTool({ name: 'search', arguments: { q: 'budget' } }); // checked as mcp__docs__search
 * ```
 */
export function wrapMcpTransport<T extends Transport>(transport: T, session: PolicySession, options: McpPolicyOptions): McpPolicyTransport {
  return new McpPolicyTransport(checkTransport(transport, 'wrapMcpTransport'), new ToolGate(session, options, 'mcp-client', 'wrapMcpTransport'), 'client');
}

/**
 * Wraps the transport an MCP server is connected with so that every `tools/call` it receives is checked by the
 * session before the server sees it: a tool handler runs only when the policy allows. A refused call is answered
 * with a tool result with `isError: true` and the reason. Use one session per connection (per client). The wrapper
 * does not know the server, so calls are decided on their arguments as sent; {@link gateMcpServer} decides them on
 * the arguments as an `McpServer`'s tool schema parses them (defaults, transforms), which is what the handler gets.
 *
 * @example
 * ```ts
 * const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID() });
 * await mcpServer.connect(wrapMcpServerTransport(transport, policy.session(), { server: 'docs' }));
 * // keep calling transport.handleRequest(req, res, body) as before
 * ```
 */
export function wrapMcpServerTransport<T extends Transport>(transport: T, session: PolicySession, options: McpPolicyOptions): McpPolicyTransport {
  return serverTransport(transport, session, options, 'wrapMcpServerTransport', undefined);
}

/**
 * The server-side wrapper, deciding calls on the arguments as `inputOf` reads them and settling a handler that threw
 * by what `thrown` says it threw (see `gateMcpServer`).
 */
export function serverTransport<T extends Transport>(
  transport: T,
  session: PolicySession,
  options: McpPolicyOptions,
  where: string,
  inputOf: ToolInputReader | undefined,
  thrown?: HandlerErrors,
): McpPolicyTransport {
  return new McpPolicyTransport(checkTransport(transport, where), new ToolGate(session, options, 'mcp-server', where, inputOf), 'server', thrown);
}

function checkTransport<T extends Transport>(transport: T, where: string): T {
  if (typeof transport?.send !== 'function' || typeof transport.start !== 'function' || typeof transport.close !== 'function') {
    throw new AgentPolicyError('INVALID_ARGUMENT', `${where} needs an MCP transport (an object with start, send and close)`);
  }
  if (transport instanceof McpPolicyTransport) throw new AgentPolicyError('INVALID_ARGUMENT', `${where}: this transport is already wrapped`);
  return transport;
}
