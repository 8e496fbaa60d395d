const money = {
  description: 'USD: a non-negative number, or a string such as "5", "5.00" or "$5.00" (at most 9 decimal places).',
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: '^\\$?(0|[1-9][0-9]*)(\\.[0-9]{1,9}0*)?$' },
  ],
} as const;

const toolPattern = {
  type: 'string',
  description:
    'A tool name, or a pattern where * stands for a run of characters (in allow lists: letters, digits, _, - and . only). No backslash, no "." or ".." path segment.',
  pattern: '^[^\\p{White_Space}\\p{Cc}\\p{Cf}\\p{Co}\\p{Cn}\\p{Cs}\\p{Zl}\\p{Zp}\\p{Default_Ignorable_Code_Point}\\\\]{1,256}$',
  not: { anyOf: [{ pattern: '\\*\\*' }, { pattern: '(?:^|/)\\.{1,2}(?:/|$)' }] },
} as const;

const domain = {
  type: 'string',
  description:
    'A bare host: example.com, *.example.com, an IPv4 address or an IPv6 address (optionally in brackets), or an address range: 10.0.0.0/8, fc00::/7.',
  pattern: '^(?:(?:\\*\\.)?[^\\s/?#@:*\\[\\]]+|\\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\\]?|[0-9]+(?:\\.[0-9]+){3}/[0-9]{1,3}|\\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\\]?/[0-9]{1,3})$',
} as const;

// No null: a null or missing value never matches, so `eq: null` (or `eq:` without a value) is refused.
const scalar = { type: ['string', 'number', 'boolean'] } as const;
const stringOrList = (description: string) =>
  ({ description, anyOf: [{ type: 'string', pattern: '\\S' }, { type: 'array', minItems: 1, items: { type: 'string', pattern: '\\S' } }] }) as const;
const domainOrList = { description: 'A domain (example.com, *.example.com) or a list of them; matched like network.block.', anyOf: [domain, { type: 'array', minItems: 1, items: domain }] } as const;

// Operators on tool input paths and on the request's method, host and path.
const valueOperators = {
  eq: { ...scalar, description: 'Equal (a number also equals its decimal string).' },
  ne: { ...scalar, description: 'Not equal.' },
  in: { type: 'array', minItems: 1, items: scalar, description: 'One of these values.' },
  not_in: { type: 'array', minItems: 1, items: scalar, description: 'None of these values.' },
  glob: stringOrList('A glob ("*" matches any run of characters) or a list of them, matched against the whole string.'),
  lt: { type: 'number' },
  lte: { type: 'number' },
  gt: { type: 'number' },
  gte: { type: 'number' },
  domain: domainOrList,
} as const;
// Operators on cost: amounts in USD.
const costOperators = {
  eq: money,
  ne: money,
  in: { type: 'array', minItems: 1, items: money },
  not_in: { type: 'array', minItems: 1, items: money },
  lt: money,
  lte: money,
  gt: money,
  gte: money,
} as const;
const command = stringOrList('Globs over the argv of a single simple shell command (joined by spaces); anything else in the line counts as a match for a deny.');

const conditions = (sense: 'if' | 'unless') => {
  const exists = sense === 'if' ? { type: 'boolean' } : { const: true, description: 'Under unless only true: a missing value never makes an exception.' };
  const block = (properties: object) => ({ type: 'object', minProperties: 1, additionalProperties: false, properties });
  return {
    type: 'object',
    minProperties: 1,
    description:
      sense === 'if'
        ? 'When the rule applies: every entry must hold; over an array, any element; a value that cannot be judged counts as holding.'
        : 'Exceptions: every entry must hold for every element; a missing value or one that cannot be judged is no exception.',
    patternProperties: {
      '^input(\\.[^.\\s](?:[^.]*[^.\\s])?)*$': block({ ...valueOperators, exists, command }),
      '^(method|host|path)$': block({ ...valueOperators, exists }),
      '^cost$': block({ ...costOperators, exists }),
    },
    additionalProperties: false,
  } as const;
};
const selectorConsistency = [
  // oxlint-disable-next-line unicorn/no-thenable -- JSON Schema's if/then keywords
  { if: { required: ['tool', 'action'] }, then: { properties: { action: { const: 'tool' } } } },
  // oxlint-disable-next-line unicorn/no-thenable -- JSON Schema's if/then keywords
  { if: { required: ['domain', 'action'] }, then: { properties: { action: { const: 'http' } } } },
] as const;
const mode = { enum: ['enforce', 'shadow'], description: 'shadow: decide and record what it would do, enforce nothing.' } as const;

const list = (items: object, description: string) => ({ description, type: 'array', items }) as const;

/**
 * JSON Schema (draft 2020-12) of the policy file format, for editors. It checks the shape; the validator also
 * checks what a schema cannot express (a name both allowed and blocked, IDNA validity of domains).
 */
export const policyJsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'urn:agentpolicy:policy:v1',
  title: 'agentpolicy policy',
  type: 'object',
  additionalProperties: false,
  properties: {
    version: { const: 1, description: 'Format version.' },
    budget: {
      type: 'object',
      additionalProperties: false,
      required: ['max_spend'],
      properties: {
        max_spend: { ...money, description: `Most a session may spend. ${money.description}` },
        soft_limit: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'Fraction of max_spend at which onSoftLimit fires once.' },
        period: {
          type: 'string',
          enum: ['session', 'hour', 'day', 'week', 'month'],
          description: 'Over which time max_spend applies: session (default, the whole budget) or a UTC calendar hour, day, week (ISO, from Monday) or month, after which spend starts from zero.',
        },
      },
    },
    tools: {
      type: 'object',
      minProperties: 1,
      additionalProperties: false,
      properties: {
        allow: list(toolPattern, 'Only these tools may run (exact names and * globs). Absent: every tool not blocked.'),
        block: list(toolPattern, 'These tools never run (case-insensitive, Unicode look-alikes folded, * globs).'),
      },
    },
    network: {
      type: 'object',
      minProperties: 1,
      additionalProperties: false,
      properties: {
        allow: list(domain, 'Only these exact hosts (and *.domain subdomains) may be reached.'),
        block: list(domain, 'These domains and all their subdomains are never reached.'),
      },
    },
    approval: {
      type: 'object',
      minProperties: 1,
      additionalProperties: false,
      properties: {
        require_for: {
          type: 'array',
          description: 'Rules that escalate an action to a human. Every key in a rule must match; the first match is reported.',
          items: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              tool: toolPattern,
              domain,
              action: { enum: ['tool', 'http', 'cost'] },
              cost_gt: { ...money, description: `Matches actions costing more than this. ${money.description}` },
            },
            not: { required: ['tool', 'domain'] },
            allOf: [
              // oxlint-disable-next-line unicorn/no-thenable -- JSON Schema's if/then keywords
              { if: { required: ['tool', 'action'] }, then: { properties: { action: { const: 'tool' } } } },
              // oxlint-disable-next-line unicorn/no-thenable -- JSON Schema's if/then keywords
              { if: { required: ['domain', 'action'] }, then: { properties: { action: { const: 'http' } } } },
            ],
          },
        },
      },
    },
    rules: {
      type: 'array',
      description: 'Deny or require approval by conditions on the input, request or cost. Every matching rule applies.',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          deny: { type: 'string', pattern: '\\S', description: 'Deny, with this reason.' },
          require_approval: { type: 'string', pattern: '\\S', description: 'Require approval, with this reason.' },
          tool: toolPattern,
          domain,
          action: { enum: ['tool', 'http', 'cost'] },
          if: conditions('if'),
          unless: conditions('unless'),
          mode,
        },
        oneOf: [{ required: ['deny'] }, { required: ['require_approval'] }],
        anyOf: [{ required: ['if'] }, { required: ['unless'] }],
        not: { required: ['tool', 'domain'] },
        allOf: selectorConsistency,
      },
    },
    limits: {
      type: 'array',
      description: 'How many calls may be allowed per window or per session; only allowed calls count.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['max_calls', 'per'],
        properties: {
          tool: toolPattern,
          domain,
          action: { enum: ['tool', 'http', 'cost'] },
          max_calls: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
          per: { type: 'string', pattern: '^(session|[1-9][0-9]{0,10}[smhd])$', description: 'A window (30s, 1m, 2h, 1d; at most 366d) or session.' },
          scope: { enum: ['session', 'budget'], description: 'budget: counted across every session sharing the budget key.' },
          mode,
        },
        not: { required: ['tool', 'domain'] },
        allOf: selectorConsistency,
      },
    },
    mode,
    pricing: {
      type: 'object',
      minProperties: 1,
      description: 'Model → prices (USD per million tokens, or per image / second / character) and limits; wins over the built-in price catalog.',
      propertyNames: { pattern: '^\\S(?:.*\\S)?$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        dependentRequired: { input: ['output'], output: ['input'], cached_input: ['input', 'output'] },
        properties: {
          input: money,
          output: money,
          cached_input: money,
          per_image: { anyOf: [money, { type: 'object', minProperties: 1, additionalProperties: money }] },
          per_second: money,
          per_character: money,
          max_output_tokens: { type: 'integer', exclusiveMinimum: 0 },
          max_input_tokens: { type: 'integer', exclusiveMinimum: 0 },
          max_audio_seconds: { type: 'number', exclusiveMinimum: 0 },
        },
      },
    },
  },
} as const;
