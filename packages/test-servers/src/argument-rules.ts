/**
 * The policy the adapters' argument-rule tests share: mail only to ourco.com, approval for refunds over 100, no
 * `rm -r*` through the shell tool, and at most two searches a minute.
 */
export const ARGUMENT_RULES: Readonly<Record<string, unknown>> = {
  rules: [
    { deny: 'email only to ourco.com', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } } },
    { require_approval: 'large refunds', tool: 'refund', if: { 'input.amount': { gt: 100 } } },
    { deny: 'destructive shell command', tool: 'shell', if: { 'input.command': { command: 'rm -r*' } } },
  ],
  limits: [{ tool: 'search', max_calls: 2, per: '1m' }],
};

/** Six tool calls under {@link ARGUMENT_RULES} in `mode: shadow`: three that its rules catch, then three searches. */
export const SHADOW_CALLS: ReadonlyArray<readonly [string, Readonly<Record<string, unknown>>]> = [
  ['send_email', { to: 'eve@gmail.com' }],
  ['refund', { amount: 250 }],
  ['shell', { command: 'rm -rf /' }],
  ['search', { query: 'a' }],
  ['search', { query: 'b' }],
  ['search', { query: 'c' }],
];

/** What enforcing would have decided for each of {@link SHADOW_CALLS} (`[decision, rule section]`, or none). */
export const SHADOW_OUTCOMES: ReadonlyArray<readonly [string, string] | undefined> = [
  ['deny', 'rules'],
  ['require_approval', 'rules'],
  ['deny', 'rules'],
  undefined,
  undefined,
  ['deny', 'limits'],
];
