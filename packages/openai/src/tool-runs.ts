import { AgentPolicyError, withdrawAllow, type Decision, type PolicySession, type Reservation } from '@agentpolicy/core';
import type { ReturnedToolCall } from './tool-calls.js';
import { withToolPieces, type ToolFunction } from './tool-pieces.js';

/** An allowed call of a `runTools()` run, waiting for the client to run its function. */
interface Allowed {
  readonly session: PolicySession;
  readonly call: ReturnedToolCall;
  /** The input it was decided on: what a function with a parse gets (the very value), else its JSON arguments. */
  readonly input: unknown;
  readonly decision: Decision;
  /** The declared cost it holds (`toolCosts`), settled when the function returns or throws. */
  readonly reservation: Reservation | undefined;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/**
 * The tool functions of one `chat.completions.runTools()` run, which the client runs itself after a response's calls
 * were decided (when the response came back). Each function is handed to the client wrapped: an allowed call's one
 * execution is taken (`session.claim`) when the client calls the function, not when the response arrives, so what
 * happens in between — a halt, or a policy change (a source updated, a file reloaded) while an earlier call of the
 * turn runs — stops a call that has not run yet. The function then throws the recorded deny and does not run.
 */
export class ToolRuns {
  private readonly allowed = new Map<string, Allowed[]>();
  private readonly wrapped = new Set<string>();

  /** Whether the client runs the function of tool `name` through this run's wrapper. */
  runs(name: string): boolean {
    return this.wrapped.has(name);
  }

  /** Keeps an allowed call of this run until the client runs its function. */
  decided(session: PolicySession, call: ReturnedToolCall, input: unknown, decision: Decision, reservation: Reservation | undefined): void {
    let calls = this.allowed.get(call.name);
    if (calls === undefined) this.allowed.set(call.name, (calls = []));
    calls.push({ session, call, input, decision, reservation });
  }

  /**
   * The allowed call the client is running with `argument`, taken out: for a function without a parse, the call whose
   * arguments text it is; for one with a parse, the call decided on that very value (a parse that returns a string is
   * never matched against another call's arguments text, which that call was not decided on).
   */
  private take(name: string, argument: unknown, parses: boolean): Allowed | undefined {
    const calls = this.allowed.get(name);
    if (calls === undefined) return undefined;
    const index = calls.findIndex((allowed) => (parses ? Object.is(allowed.input, argument) : allowed.call.arguments === argument));
    if (index < 0) return undefined;
    return calls.splice(index, 1)[0];
  }

  /**
   * The function to hand to the client in place of `fn` (`parses`: the client hands it the tool's parse result, not the
   * arguments text): it takes the call's allow, runs `fn` and settles its cost.
   */
  wrap(name: string, fn: ToolFunction, parses: boolean): ToolFunction {
    const take = (argument: unknown): Allowed | undefined => this.take(name, argument, parses);
    this.wrapped.add(name);
    return async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const allowed = take(args[0]);
      if (allowed === undefined) {
        throw new AgentPolicyError('DECISION_USED', `agentpolicy: the client is running a call of ${JSON.stringify(name)} that has no unused allow in this run, so it is not run`);
      }
      // Rejects with the recorded deny when a halt or the policy in force stops it now.
      if (!(await allowed.session.claim(allowed.decision))) {
        // The model returned the same call (id and arguments) more than once in this response: its repeats got the
        // first one's decision, which the first run has taken. A repeat is decided anew, as in your own loop's
        // session.runTool (counted by limits, its cost charged again), and runs only if that allows it.
        const { session, call, input, reservation } = allowed;
        const cost = reservation?.decision.action.cost;
        return session.runTool(
          name,
          { ...(input !== undefined ? { input } : {}), ...(cost !== undefined ? { cost } : {}), ...(call.id ? { idempotencyKey: call.id } : {}), metadata: { ...allowed.decision.action.metadata, repeated: true } },
          () => fn.apply(this, args),
        );
      }
      // The function ran: a declared cost is charged, or settled by core's rule for a function that throws
      // (released for an agentpolicy error or a 4xx status / statusCode, charged otherwise).
      let result: unknown;
      try {
        result = await fn.apply(this, args);
      } catch (error) {
        await allowed.reservation?.fail({ error });
        throw error;
      }
      await allowed.reservation?.commit();
      return result;
    };
  }

  /**
   * The run ended (done, failed or aborted): an allowed call the client never ran — the run stopped at an earlier
   * function's error (openai 6, or `parallel_tool_calls: false`, runs them one after another), or was aborted — gives
   * back the cost it holds, and its allow is used up, so a repeat of it is decided anew.
   */
  async finish(): Promise<void> {
    const left = [...this.allowed.values()].flat();
    this.allowed.clear();
    for (const { session, decision, reservation } of left) {
      if (reservation !== undefined && !reservation.settled) await withdrawAllow(session, decision, reservation);
    }
  }

  /** A `runTools()` body with every tool function wrapped (see {@link wrap}); the caller's body and tools are not changed. */
  govern<Body>(body: Body): Body {
    if (!isObject(body) || !Array.isArray(body['tools'])) return body;
    return { ...body, tools: body['tools'].map((tool: unknown) => this.governTool(tool)) } as Body;
  }

  private governTool(tool: unknown): unknown {
    return withToolPieces(tool, ({ name, run, parse }) => (run === undefined ? undefined : { run: this.wrap(name, run, parse !== undefined) }));
  }
}
