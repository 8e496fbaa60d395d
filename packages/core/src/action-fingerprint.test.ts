import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { ActionIdentity, actionFingerprint, canonicalInput, InputShapeError, MAX_KEY_TEXT } from './action-fingerprint.js';

function shuffleKeys(value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map((item, i) => shuffleKeys(item, seed + i));
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value);
    const order = keys.map((key, i) => [key, (i * 7919 + seed * 104729) % 1009] as const).sort((a, b) => a[1] - b[1]);
    return Object.fromEntries(order.map(([key]) => [key, shuffleKeys((value as Record<string, unknown>)[key], seed + 1)]));
  }
  return value;
}

describe('canonicalInput', () => {
  it('is the same whatever the key order, and reads back as the same JSON value (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 0, max: 1000 }), (value, seed) => {
        const text = canonicalInput(value);
        expect(canonicalInput(shuffleKeys(value, seed))).toBe(text);
        // Injective on JSON values: the text parses back to an equal value, so two different inputs never share it.
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  it('tags what JSON would lose, so different inputs keep different texts', () => {
    expect(canonicalInput(1n)).not.toBe(canonicalInput(1));
    expect(canonicalInput(Number.NaN)).not.toBe(canonicalInput(null));
    expect(canonicalInput(new Map([['a', 1]]))).not.toBe(canonicalInput({}));
    expect(canonicalInput(new Set([1]))).not.toBe(canonicalInput(new Set([2])));
    expect(canonicalInput(new Uint8Array([1, 2]))).not.toBe(canonicalInput(new Uint8Array([1, 3])));
    expect(canonicalInput(new Date(0))).toBe('"1970-01-01T00:00:00.000Z"');
    expect(canonicalInput({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it('refuses cycles and absurd nesting with a typed error', () => {
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(() => canonicalInput(cyclic)).toThrow(InputShapeError);
    let deep: unknown = 1;
    for (let i = 0; i < 1000; i++) deep = { d: deep };
    expect(() => canonicalInput(deep)).toThrow(/deeper than/);
    // The same object twice (not a cycle) is fine.
    const shared = { x: 1 };
    expect(canonicalInput([shared, shared])).toBe('[{"x":1},{"x":1}]');
  });

  it('refuses a list whose length costs nothing to set (a sparse array, a proxy) instead of writing gigabytes', () => {
    const sparse: unknown[] = [];
    sparse.length = 2 ** 32 - 1;
    expect(() => canonicalInput(sparse)).toThrow(/list of 4294967295 items, more than 16777216/);
    const lying = new Proxy([], { get: (target, key) => (key === 'length' ? 2 ** 31 : Reflect.get(target, key)) });
    expect(() => canonicalInput({ rows: lying })).toThrow(InputShapeError);
    // A checked tool with such an input is a recorded deny, at once.
    const session = new AgentPolicy({ allowedTools: ['upload'] }).session();
    expect(session.decideTool('upload', { input: { rows: sparse } })).toMatchObject({ decision: 'deny', rule: { section: 'input', check: 'input' } });
  });
});

describe('actionFingerprint', () => {
  it('changes with every part it covers', () => {
    const base = actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: '{"q":"x"}' });
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: '{"q":"x"}' })).toBe(base);
    for (const other of [
      actionFingerprint({ type: 'tool', name: 'search2', costNanos: 0, input: '{"q":"x"}' }),
      actionFingerprint({ type: 'tool', name: 'search', costNanos: 1, input: '{"q":"x"}' }),
      actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: '{"q":"y"}' }),
      actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: undefined }),
      actionFingerprint({ type: 'http', url: 'search', method: '', costNanos: 0 }),
      actionFingerprint({ type: 'cost', source: 'search', costNanos: 0 }),
    ]) {
      expect(other).not.toBe(base);
    }
    // The method is covered too.
    expect(actionFingerprint({ type: 'http', url: 'https://a/', method: 'GET', costNanos: 0 })).not.toBe(actionFingerprint({ type: 'http', url: 'https://a/', method: 'POST', costNanos: 0 }));
  });
});

describe('ActionIdentity', () => {
  it('its fingerprint is actionFingerprint; keys are equal exactly when fingerprints are', () => {
    const text = canonicalInput({ q: 'x' });
    const lazy = ActionIdentity.toolSnapshot('search', 0, Object.freeze({ q: 'x' }));
    const eager = ActionIdentity.tool('search', 0, text);
    expect(lazy.hashed).toBe(false);
    expect(lazy.key).toBe(eager.key);
    expect(lazy.hashed).toBe(false);
    expect(lazy.fingerprint).toBe(actionFingerprint({ type: 'tool', name: 'search', costNanos: 0, input: text }));
    expect(lazy.hashed).toBe(true);
    expect(eager.fingerprint).toBe(lazy.fingerprint);
    expect(ActionIdentity.tool('search', 1, text).key).not.toBe(eager.key);
    expect(ActionIdentity.http('https://a/', 'GET', 0).fingerprint).toBe(actionFingerprint({ type: 'http', url: 'https://a/', method: 'GET', costNanos: 0 }));
    expect(ActionIdentity.cost('llm', 5).fingerprint).toBe(actionFingerprint({ type: 'cost', source: 'llm', costNanos: 5 }));
    // Long parts are hashed at once and keyed by the fingerprint.
    const long = ActionIdentity.tool('search', 0, canonicalInput({ body: 'x'.repeat(MAX_KEY_TEXT) }));
    expect(long.hashed).toBe(true);
    expect(long.key).toBe(long.fingerprint);
    expect(ActionIdentity.known(long.fingerprint).fingerprint).toBe(long.fingerprint);
  });
});
