import type { AgentPolicy, PolicySession } from '@agentpolicy/core';

/**
 * The scenarios every way of running a tool must agree on. Each is a policy, the tools it names (their declared cost
 * and what their body does) and a sequence of tool calls; core's `session.runTool` is the reference. A scenario is one
 * entry of {@link SCENARIOS}.
 */

/** What a tool's body does when it runs. */
export type Behaviour = 'returns' | 'throws' | 'throws 404' | 'throws 500' | 'throws statusCode 422' | 'throws an agentpolicy error';

/** One tool of a scenario. */
export interface ToolSpec {
  /**
   * The declared cost of one call, in USD (none: the call is free), or `'throws'`: the cost is a function of the call
   * that throws (each adapter's cost option takes one), so the call has no price.
   */
  readonly cost?: number | 'throws';
  /** Default `returns`. */
  readonly behaviour?: Behaviour;
}

/** One tool call the model makes. */
export interface Call {
  readonly tool: string;
  readonly input: Readonly<Record<string, string | number>>;
  /** The model's tool call id (MCP has none on the wire: there every call is its own request). */
  readonly id: string;
}

/** What a turn came to: what was recorded in it, how many times a tool body ran, and the tools' spend after it. */
export interface Outcome {
  /** `decision:rule.section` of each tool decision recorded during the turn, sorted (calls of one turn run side by side). */
  readonly decisions: readonly string[];
  /** Tool bodies run during the turn. */
  readonly runs: number;
  /** USD the tool decisions of the session came to after the turn (settled, or held while pending). */
  readonly spent: number;
}

export type OutcomeField = keyof Outcome;

export interface Scenario {
  readonly name: string;
  /** The policy (as a policy file is written); `tool` turns a tool's name into the action name the adapter uses. */
  readonly policy: (tool: (name: string) => string) => Record<string, unknown>;
  readonly tools: Readonly<Record<string, ToolSpec>>;
  /**
   * The turns, one after another: a call the model makes alone, or several it returns together (one response), which
   * the framework runs as it runs parallel calls.
   */
  readonly calls: ReadonlyArray<Call | readonly Call[]>;
  /** Done to the policy and the session before the first turn (a halt, an ended session). */
  readonly before?: (policy: AgentPolicy, session: PolicySession) => unknown;
  /** The session's approver, asked in place for a call that needs approval: always yes, or always no. */
  readonly approver?: 'yes' | 'no';
  /**
   * The fields every adapter must match the reference on (default: all). Only the approval row narrows it: each
   * framework has its own native approval flow, and what must be equal is that the tool does not run and nothing is
   * charged.
   */
  readonly compare?: readonly OutcomeField[];
  /** What core's `runTool` gives for each turn, by core's documented rules: the reference is checked against it. */
  readonly expected: readonly Outcome[];
  /**
   * A deliberate difference an adapter documents in its README, by adapter (the runner's `adapter`): that adapter's
   * runners are held to these outcomes instead, so the difference stays visible and cannot drift.
   */
  readonly documented?: Readonly<Record<string, { readonly why: string; readonly outcomes: readonly Outcome[] }>>;
}

/** One turn's outcome: the decisions recorded in it, the tool runs, and the tools' spend after it. */
const outcome = (decisions: readonly string[], runs: number, spent: number): Outcome => ({ decisions: [...decisions].sort(), runs, spent });

/**
 * packages/mcp/README.md, "its response": on the client side an error result (the tool ran and failed) is charged. A
 * handler that throws reaches the client only as such a result (McpServer turns any throw into `isError: true` text,
 * and no status or error class crosses the protocol), so a refusal cannot be told from a failure there. The server
 * side gate (`gateMcpServer` on an McpServer) sees the thrown error and applies core's rule.
 */
const MCP_ERROR_RESULT_CHARGED = { why: 'MCP results carry no status: an error result is charged', outcomes: [outcome(['allow:default'], 1, 0.25)] };

/**
 * packages/ai-sdk/README.md, `policyToolApproval`: for a tool `wrapTools` did not wrap, the hook is the only check and
 * its cost is charged when the hook lets the call run; the hook never sees how the tool's `execute` ends.
 */
/**
 * packages/openai/README.md, "Tool calls": a response with a call that is not allowed is refused as a whole (the
 * request rejects before the caller can run any of its calls), and the cost its allowed calls held is given back.
 */
const OPENAI_RESPONSE_REFUSED = (turns: ReadonlyArray<readonly string[]>) => ({
  why: 'the wrapped client refuses a response with a call that is not allowed: none of its calls run',
  outcomes: turns.map((decisions) => outcome(decisions, 0, 0)),
});

/**
 * packages/langchain/README.md (`beforeModel`, `wrapModelCall`, `handleChatModelStart`) and packages/openai/README.md
 * ("Failure behaviour": refused before sending): these adapters govern the model call too, and refuse it first under
 * a halt or after the session ended, so the model never returns a tool call to decide. (The AI SDK runners here do
 * not wrap the model, so their tool call is what is refused.)
 */
const MODEL_CALL_REFUSED_FIRST = { why: 'the model call is refused first, so no tool call is made', outcomes: [outcome([], 0, 0)] };

const HOOK_CHARGES_ON_RUN = { why: 'the approval hook alone charges when it lets the call run', outcomes: [outcome(['allow:default'], 1, 0.25)] };

/** The tool input fields the scenarios use (every tool takes them, each optional). */
export const INPUT_FIELDS = { q: 'string', x: 'number' } as const;

const budget = (maxSpend: number) => ({ budget: { max_spend: maxSpend } });

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'an allowed call with a cost',
    policy: () => budget(1),
    tools: { search: { cost: 0.25 } },
    calls: [{ tool: 'search', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0.25)],
  },
  {
    name: 'a blocked tool',
    policy: (tool) => ({ ...budget(1), tools: { block: [tool('shell')] } }),
    tools: { shell: { cost: 0.25 } },
    calls: [{ tool: 'shell', input: { q: 'rm -rf /' }, id: 'call_1' }],
    expected: [outcome(['deny:tools'], 0, 0)],
  },
  {
    name: 'a tool outside tools.allow',
    policy: (tool) => ({ ...budget(1), tools: { allow: [tool('search')] } }),
    tools: { search: { cost: 0.1 }, shell: { cost: 0.1 } },
    calls: [
      { tool: 'shell', input: { q: 'ls' }, id: 'call_1' },
      { tool: 'search', input: { q: 'a' }, id: 'call_2' },
    ],
    expected: [outcome(['deny:tools'], 0, 0), outcome(['allow:default'], 1, 0.1)],
  },
  {
    name: 'shadow mode: a blocked tool runs, and the deny it would have been is recorded',
    policy: (tool) => ({ ...budget(1), mode: 'shadow', tools: { block: [tool('shell')] } }),
    tools: { shell: { cost: 0.25 } },
    calls: [{ tool: 'shell', input: { q: 'ls' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0.25)],
  },
  {
    name: 'a rule that denies on the input',
    policy: (tool) => ({ ...budget(1), rules: [{ deny: 'transfers over 5', tool: tool('transfer'), if: { 'input.x': { gt: 5 } } }] }),
    tools: { transfer: { cost: 0.1 } },
    calls: [
      { tool: 'transfer', input: { x: 3 }, id: 'call_1' },
      { tool: 'transfer', input: { x: 10 }, id: 'call_2' },
    ],
    expected: [outcome(['allow:default'], 1, 0.1), outcome(['deny:rules'], 0, 0.1)],
  },
  {
    name: 'a limit of one call: the second is denied',
    policy: (tool) => ({ ...budget(1), limits: [{ tool: tool('search'), max_calls: 1, per: '1h' }] }),
    tools: { search: { cost: 0.1 } },
    calls: [
      { tool: 'search', input: { q: 'a' }, id: 'call_1' },
      { tool: 'search', input: { q: 'b' }, id: 'call_2' },
    ],
    expected: [outcome(['allow:default'], 1, 0.1), outcome(['deny:limits'], 0, 0.1)],
  },
  {
    name: 'a budget too small for the declared cost',
    policy: () => budget(0.5),
    tools: { search: { cost: 2 } },
    calls: [{ tool: 'search', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['deny:budget'], 0, 0)],
  },
  {
    // core's declaredCost rule, which every adapter reads its cost option by: a cost that cannot be worked out is
    // never taken as free. (The only tool of its scenario: a cost table that is one function throws for every call.)
    name: 'a cost function that throws: denied, never run, nothing charged',
    policy: () => budget(1),
    tools: { quote: { cost: 'throws' } },
    calls: [{ tool: 'quote', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['deny:input'], 0, 0)],
  },
  {
    name: 'a tool that throws a plain Error: charged',
    policy: () => budget(1),
    tools: { fetch_page: { cost: 0.25, behaviour: 'throws' } },
    calls: [{ tool: 'fetch_page', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0.25)],
  },
  {
    name: 'a tool that throws with status 404: released',
    policy: () => budget(1),
    tools: { fetch_page: { cost: 0.25, behaviour: 'throws 404' } },
    calls: [{ tool: 'fetch_page', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0)],
    documented: { 'mcp client': MCP_ERROR_RESULT_CHARGED, 'ai-sdk approval hook': HOOK_CHARGES_ON_RUN },
  },
  {
    name: 'a tool that throws with status 500: charged',
    policy: () => budget(1),
    tools: { fetch_page: { cost: 0.25, behaviour: 'throws 500' } },
    calls: [{ tool: 'fetch_page', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0.25)],
  },
  {
    name: 'a tool that throws with statusCode 422: released',
    policy: () => budget(1),
    tools: { fetch_page: { cost: 0.25, behaviour: 'throws statusCode 422' } },
    calls: [{ tool: 'fetch_page', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0)],
    documented: { 'mcp client': MCP_ERROR_RESULT_CHARGED, 'ai-sdk approval hook': HOOK_CHARGES_ON_RUN },
  },
  {
    name: 'a tool that throws an agentpolicy error: released',
    policy: () => budget(1),
    tools: { fetch_page: { cost: 0.25, behaviour: 'throws an agentpolicy error' } },
    calls: [{ tool: 'fetch_page', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['allow:default'], 1, 0)],
    documented: { 'mcp client': MCP_ERROR_RESULT_CHARGED, 'ai-sdk approval hook': HOOK_CHARGES_ON_RUN },
  },
  {
    name: "require_approval answered yes by the session's approver",
    policy: (tool) => ({ ...budget(1), approval: { require_for: [{ tool: tool('send_email') }] } }),
    tools: { send_email: { cost: 0.25 } },
    approver: 'yes',
    calls: [{ tool: 'send_email', input: { q: 'bob@example.com' }, id: 'call_1' }],
    expected: [outcome(['allow:approval'], 1, 0.25)],
  },
  {
    name: "require_approval answered no by the session's approver",
    policy: (tool) => ({ ...budget(1), approval: { require_for: [{ tool: tool('send_email') }] } }),
    tools: { send_email: { cost: 0.25 } },
    approver: 'no',
    calls: [{ tool: 'send_email', input: { q: 'bob@example.com' }, id: 'call_1' }],
    expected: [outcome(['deny:approver'], 0, 0)],
  },
  {
    name: 'require_approval with no approver',
    policy: (tool) => ({ ...budget(1), approval: { require_for: [{ tool: tool('send_email') }] } }),
    tools: { send_email: { cost: 0.25 } },
    calls: [{ tool: 'send_email', input: { q: 'bob@example.com' }, id: 'call_1' }],
    compare: ['runs', 'spent'],
    expected: [outcome(['require_approval:approval'], 0, 0)],
  },
  {
    name: 'the same tool call id with other input is another call',
    policy: (tool) => ({ ...budget(1), limits: [{ tool: tool('search'), max_calls: 2, per: '1h' }] }),
    tools: { search: { cost: 0.25 } },
    calls: [
      { tool: 'search', input: { q: 'a' }, id: 'call_1' },
      { tool: 'search', input: { q: 'b' }, id: 'call_1' },
      { tool: 'search', input: { q: 'a' }, id: 'call_1' },
    ],
    // The third is the first call again after it ran: decided again, so the limit of two refuses it.
    expected: [outcome(['allow:default'], 1, 0.25), outcome(['allow:default'], 1, 0.5), outcome(['deny:limits'], 0, 0.5)],
  },
  {
    name: 'two calls in one turn and a budget for one',
    policy: () => budget(0.3),
    tools: { search: { cost: 0.25 } },
    calls: [
      [
        { tool: 'search', input: { q: 'a' }, id: 'call_1' },
        { tool: 'search', input: { q: 'b' }, id: 'call_2' },
      ],
    ],
    expected: [outcome(['allow:default', 'deny:budget'], 1, 0.25)],
    documented: { openai: OPENAI_RESPONSE_REFUSED([['allow:default', 'deny:budget']]) },
  },
  {
    name: 'two calls in one turn and a limit of one',
    policy: (tool) => ({ ...budget(1), limits: [{ tool: tool('search'), max_calls: 1, per: '1h' }] }),
    tools: { search: { cost: 0.1 } },
    calls: [
      [
        { tool: 'search', input: { q: 'a' }, id: 'call_1' },
        { tool: 'search', input: { q: 'b' }, id: 'call_2' },
      ],
    ],
    expected: [outcome(['allow:default', 'deny:limits'], 1, 0.1)],
    documented: { openai: OPENAI_RESPONSE_REFUSED([['allow:default', 'deny:limits']]) },
  },
  {
    name: 'a halted policy runs nothing',
    policy: () => budget(1),
    tools: { search: { cost: 0.25 } },
    before: (policy) => policy.halt('incident 42'),
    calls: [{ tool: 'search', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['deny:halt'], 0, 0)],
    documented: { langchain: MODEL_CALL_REFUSED_FIRST, openai: MODEL_CALL_REFUSED_FIRST },
  },
  {
    name: 'an ended session runs nothing',
    policy: () => budget(1),
    tools: { search: { cost: 0.25 } },
    before: (_policy, session) => session.end(),
    calls: [{ tool: 'search', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['deny:session'], 0, 0)],
    documented: { langchain: MODEL_CALL_REFUSED_FIRST, openai: MODEL_CALL_REFUSED_FIRST },
  },
  {
    name: 'a negative declared cost is refused',
    policy: () => budget(1),
    tools: { search: { cost: -1 } },
    calls: [{ tool: 'search', input: { q: 'a' }, id: 'call_1' }],
    expected: [outcome(['deny:input'], 0, 0)],
  },
];
