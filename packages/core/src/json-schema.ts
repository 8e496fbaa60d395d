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
  description: 'A bare host: example.com, *.example.com, an IPv4 address or an IPv6 address (optionally in brackets).',
  pattern: '^(?:(?:\\*\\.)?[^\\s/?#@:*\\[\\]]+|\\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\\]?)$',
} as const;

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
      },
    },
    tools: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allow: list(toolPattern, 'Only these tools may run (exact names and * globs). Absent: every tool not blocked.'),
        block: list(toolPattern, 'These tools never run (case-insensitive, Unicode look-alikes folded, * globs).'),
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allow: list(domain, 'Only these exact hosts (and *.domain subdomains) may be reached.'),
        block: list(domain, 'These domains and all their subdomains are never reached.'),
      },
    },
    approval: {
      type: 'object',
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
    pricing: {
      type: 'object',
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
