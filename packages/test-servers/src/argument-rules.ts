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
