import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { policyJsonSchema } from './json-schema.js';
import { validatePolicyDocument } from './policy-document.js';

const ajv = new Ajv2020({ strict: false, allErrors: true });
const validate = ajv.compile(policyJsonSchema);

// Documents where shape alone decides; cross-field checks (allowed and blocked at once, IDNA validity) are the
// validator's own and are left out of the comparison.
const cases: unknown[] = [
  {},
  { version: 1 },
  { version: 2 },
  { version: null },
  { budget: { max_spend: 5 } },
  { budget: { max_spend: '$5.00', soft_limit: 0.8 } },
  { budget: { max_spend: '5,000' } },
  { budget: { max_spend: '0x10' } },
  { budget: { max_spend: '5 USD' } },
  { budget: { max_spend: -1 } },
  { budget: { max_spend: '' } },
  { budget: { soft_limit: 0.5 } },
  { budget: { max_spend: 1, soft_limit: 0 } },
  { budget: { max_spend: 1, soft_limit: 1 } },
  { budget: { max_spend: 1, extra: 1 } },
  { tools: { allow: ['a', 'b_*'], block: ['c'] } },
  { tools: { alow: ['a'] } },
  { tools: { allow: 'a' } },
  { tools: { allow: ['a b'] } },
  { tools: { allow: ['a\u200b'] } },
  { tools: { block: ['a**'] } },
  { tools: null },
  { tools: { allow: null } },
  { tools: { block: null } },
  { tools: { allow: [] } },
  { tools: { allow: ['a\\b'] } },
  { tools: { block: ['read_file/../delete_file'] } },
  { tools: { block: ['./x'] } },
  { tools: { allow: ['github/*', 'admin.tools.list', 'a..b'] } },
  { network: null },
  { network: { allow: null } },
  { budget: null },
  { budget: { max_spend: null } },
  { budget: { max_spend: 1, soft_limit: null } },
  { approval: null },
  { approval: { require_for: null } },
  { approval: { require_for: [{ tool: null }] } },
  { pricing: null },
  { pricing: { m: null } },
  { pricing: { m: { input: 1, output: 1, cached_input: null } } },
  { network: { allow: ['docs.python.org', '*.python.org', '10.0.0.1', '::1'], block: ['twitter.com'] } },
  { network: { allow: ['https://docs.python.org'] } },
  { network: { block: ['twitter.com:443'] } },
  { network: { block: ['a/b'] } },
  { network: { allow: ['10.0.0.0/8', '10.0.0.1/32'], block: ['169.254.0.0/16', 'fc00::/7', '[fe80::]/10', '::/0'] } },
  { network: { block: ['example.com/8'] } },
  { network: { block: ['10.0.0.0/8/8'] } },
  { rules: [{ deny: 'x', domain: '10.0.0.0/8', if: { host: { domain: ['192.168.0.0/16'] } } }] },
  { approval: { require_for: [{ tool: 'send_email' }, { cost_gt: 1 }, { domain: 'x.com', action: 'http' }] } },
  { approval: { require_for: [{}] } },
  { approval: { require_for: [{ toool: 'x' }] } },
  { approval: { require_for: [{ tool: 'x', domain: 'y.com' }] } },
  { approval: { require_for: [{ tool: 'x', action: 'http' }] } },
  { approval: { require_for: [{ domain: 'x.com', action: 'tool' }] } },
  { approval: { require_for: [{ action: 'email' }] } },
  { approval: { require_for: 'x' } },
  { pricing: { 'my-model': { input: 1, output: '2.50', cached_input: 0.5 } } },
  { pricing: { 'my-model': { input: 1 } } },
  { pricing: { 'my-model': { input: 1, output: 1, extra: 1 } } },
  { pricing: { ' spaced ': { input: 1, output: 1 } } },
  { pricing: { m: 5 } },
  { rules: [{ deny: 'external mail', tool: 'send_email', unless: { 'input.to': { glob: '*@ourco.com' } } }] },
  { rules: [{ require_approval: 'big', tool: 'refund', if: { 'input.amount': { gt: 100 } }, mode: 'shadow' }] },
  { rules: [{ deny: 'rm', tool: 'shell', if: { 'input.command': { command: ['rm -r*', 'rm -f*'] } } }] },
  { rules: [{ deny: 'gh', domain: 'api.github.com', unless: { method: { in: ['GET', 'HEAD'] } } }] },
  { rules: [{ deny: 'pricey', if: { cost: { gt: '$0.50' } } }] },
  { rules: [{ deny: 'pricey', if: { cost: { gt: 'a lot' } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { exists: false } } }] },
  { rules: [{ deny: 'x', tool: 't', unless: { 'input.a': { exists: false } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { regex: '.*' } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { gt: '100' } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: [] } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: [{}] } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': {} } }] },
  { rules: [{ deny: 'x', tool: 't', if: {} }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input..a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'args.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'method.x': { eq: 1 } } }] },
  { rules: [{ deny: 'x', domain: 'a.com', if: { method: { command: 'x' } } }] },
  { rules: [{ deny: 'x', domain: 'a.com', if: { host: { domain: ['a.com', '*.b.com'] } } }] },
  { rules: [{ deny: 'x', domain: 'a.com', if: { host: { domain: 'https://a.com' } } }] },
  { rules: [{ deny: 'x', tool: 't' }] },
  { rules: [{ tool: 't', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', require_approval: 'y', tool: 't', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: '', tool: 't', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', action: 'http', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', domain: 'a.com', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', mode: 'dry-run', if: { 'input.a': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', extra: 1, if: { 'input.a': { eq: 1 } } }] },
  { rules: 'x' },
  { limits: [{ tool: 'search', max_calls: 5, per: '1m' }, { tool: '*', max_calls: 200, per: 'session', scope: 'budget' }] },
  { limits: [{ domain: 'api.x.com', max_calls: 5, per: '30s', mode: 'shadow' }] },
  { limits: [{ tool: 'search', max_calls: 0, per: '1m' }] },
  { limits: [{ tool: 'search', max_calls: 1.5, per: '1m' }] },
  { limits: [{ tool: 'search', max_calls: 5, per: '1 minute' }] },
  { limits: [{ tool: 'search', max_calls: 5, per: '0m' }] },
  { limits: [{ tool: 'search', max_calls: 5, per: '1w' }] },
  { limits: [{ tool: 'search', max_calls: 5 }] },
  { limits: [{ tool: 'search', per: '1m' }] },
  { limits: [{ tool: 'search', max_calls: 5, per: '1m', scope: 'global' }] },
  { limits: [{ tool: 'search', max_calls: 5, per: '1m', extra: true }] },
  { tools: {} },
  { network: {} },
  { approval: {} },
  { pricing: {} },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { eq: null } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a': { in: ['b', null] } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.a ': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input. a.b': { eq: 1 } } }] },
  { rules: [{ deny: 'x', tool: 't', if: { 'input.first name': { eq: 1 } } }] },
  { mode: 'shadow' },
  { mode: 'enforce' },
  { mode: 'audit' },
  { unknown: 1 },
  [],
  'x',
];

describe('JSON Schema agrees with the validator', () => {
  it.each(cases.map((c) => [JSON.stringify(c), c]))('%s', (_label, document) => {
    expect(validate(document)).toBe(validatePolicyDocument(document).ok);
  });

  it('agrees on random money values', () => {
    const money = fc.oneof(
      fc.integer({ min: -5, max: 10_000 }).map((n) => n / 100),
      fc.stringMatching(/^\$?-?[0-9]{0,4}([.,][0-9]{0,11})?( USD)?$/),
      fc.constantFrom('0x10', '5e3', ' 5', '5 ', '$', '.'),
    );
    fc.assert(
      fc.property(money, (value) => validate({ budget: { max_spend: value } }) === validatePolicyDocument({ budget: { max_spend: value } }).ok),
      { numRuns: 3000 },
    );
  });

  it('agrees on random tool names', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-composite', maxLength: 12 }), (name) => validate({ tools: { block: [name] } }) === validatePolicyDocument({ tools: { block: [name] } }).ok),
      { numRuns: 3000 },
    );
  });
});
