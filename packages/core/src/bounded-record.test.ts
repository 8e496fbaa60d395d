import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalInput } from './action-fingerprint.js';
import { boundMetadata, boundValue, MAX_RECORDED_DEPTH, MAX_RECORDED_ENTRIES, MAX_RECORDED_STRING, recordInput } from './bounded-record.js';

function deepFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(deepFrozen);
}

describe('recordInput', () => {
  it('copies plain JSON data exactly: same text, frozen, a copy (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: MAX_RECORDED_DEPTH - 1 }), (value) => {
        const read = recordInput(value);
        expect(read.exact).toBe(true);
        expect(canonicalInput(read.copy)).toBe(canonicalInput(value));
        expect(deepFrozen(read.copy)).toBe(true);
        if (typeof value === 'object' && value !== null) expect(read.copy).not.toBe(value);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps undefined-valued keys, holes as undefined, -0 and NaN as they are', () => {
    const holey = [1, 2, 3];
    delete holey[1];
    const read = recordInput({ a: undefined, b: holey, c: -0, d: Number.NaN });
    expect(read.exact).toBe(true);
    expect(Object.keys(read.copy as object)).toEqual(['a', 'b', 'c', 'd']);
    expect((read.copy as { b: unknown[] }).b).toEqual([1, undefined, 3]);
    expect(Object.is((read.copy as { c: number }).c, -0)).toBe(true);
    expect(canonicalInput(read.copy)).toBe(canonicalInput({ a: undefined, b: holey, c: -0, d: Number.NaN }));
  });

  it('is not exact for anything it has to cut or convert, and marks what it cut', () => {
    const cases: [string, unknown, (copy: unknown) => void][] = [
      ['a long string', { s: 'x'.repeat(MAX_RECORDED_STRING + 1) }, (copy) => expect((copy as { s: string }).s).toMatch(/…\[truncated: 1025 chars, sha256 [0-9a-f]{64}\]$/)],
      ['a long key', { ['k'.repeat(MAX_RECORDED_STRING + 1)]: 1 }, (copy) => expect(Object.keys(copy as object)[0]).toMatch(/truncated/)],
      ['too many entries', Array.from({ length: MAX_RECORDED_ENTRIES + 1 }, (_, i) => i), (copy) => expect((copy as unknown[]).at(-1)).toBe('[1 more items]')],
      ['too many keys', Object.fromEntries(Array.from({ length: MAX_RECORDED_ENTRIES + 2 }, (_, i) => [`k${i}`, i])), (copy) => expect((copy as Record<string, unknown>)['…']).toBe('[2 more keys]')],
      ['deep nesting', [[[[[[[[[1]]]]]]]]], (copy) => expect(JSON.stringify(copy)).toContain('[nested too deep]')],
      ['a function', { f: function named() {} }, (copy) => expect((copy as { f: string }).f).toBe('[function named]')],
      ['a bigint', { n: 5n }, (copy) => expect((copy as { n: string }).n).toBe('5n')],
      ['a symbol', { s: Symbol('x') }, (copy) => expect((copy as { s: string }).s).toBe('Symbol(x)')],
      ['a date (toJSON)', { at: new Date(0) }, (copy) => expect((copy as { at: string }).at).toBe('1970-01-01T00:00:00.000Z')],
      ['a Map', { m: new Map([['a', 1]]) }, (copy) => expect((copy as { m: unknown }).m).toEqual({ a: 1 })],
      ['a Set', new Set([1, 2]), (copy) => expect(copy).toEqual([1, 2])],
      ['binary data', { b: new Uint8Array(3) }, (copy) => expect((copy as { b: string }).b).toBe('[Uint8Array 3 bytes]')],
      ['a class instance', new (class Point { x = 1; })(), (copy) => expect(copy).toEqual({ x: 1 })],
      ['a getter that throws', Object.defineProperty({}, 'g', { enumerable: true, get: () => { throw new Error('no'); } }), (copy) => expect((copy as { g: string }).g).toBe('[unreadable]')],
    ];
    for (const [what, value, check] of cases) {
      const read = recordInput(value);
      expect(read.exact, what).toBe(false);
      expect(deepFrozen(read.copy), what).toBe(true);
      check(read.copy);
    }
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const read = recordInput(cyclic);
    expect(read.exact).toBe(false);
    expect((read.copy as { self: unknown }).self).toBe('[circular]');
    // The same object twice is not a cycle.
    const shared = { x: 1 };
    expect(recordInput([shared, shared])).toEqual({ copy: [{ x: 1 }, { x: 1 }], exact: true });
  });

  it('records an own "__proto__" key as a key, never as the copy’s prototype', () => {
    const input = JSON.parse('{"__proto__": {"amount": 5000}, "to": "a@b.c"}') as Record<string, unknown>;
    for (const copy of [recordInput(input).copy, boundValue(input)]) {
      expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
      expect(Object.keys(copy as object)).toEqual(['__proto__', 'to']);
      expect(Object.getOwnPropertyDescriptor(copy, '__proto__')?.value).toEqual({ amount: 5000 });
      expect((copy as { amount?: unknown }).amount).toBeUndefined();
      expect(canonicalInput(copy)).toBe(canonicalInput(input));
    }
    expect(boundMetadata(input)).toEqual(boundValue(input));
  });

  it('reads each property of plain input once, so a getter cannot show the copy one value and the policy another', () => {
    let reads = 0;
    const input = {
      to: 'a@ourco.com',
      get amount() {
        reads++;
        return reads === 1 ? 50 : 5000;
      },
    };
    const read = recordInput(input);
    expect(read.exact).toBe(true);
    expect(reads).toBe(1);
    expect(read.copy).toEqual({ to: 'a@ourco.com', amount: 50 });
  });

  it('copies own keys only, even in a process whose Object.prototype has an enumerable property', () => {
    const input = JSON.parse('{"to":"a@ourco.com","nested":{"amount":50}}') as Record<string, unknown>;
    const prototype = Object.prototype as Record<string, unknown>;
    prototype['polluted'] = [5000];
    try {
      const read = recordInput(input);
      expect(Object.keys(read.copy as object)).toEqual(['to', 'nested']);
      expect(Object.keys((read.copy as { nested: object }).nested)).toEqual(['amount']);
      expect(Object.hasOwn(read.copy as object, 'polluted')).toBe(false);
      expect(read.exact).toBe(true);
      expect(deepFrozen(read.copy)).toBe(true);
    } finally {
      delete prototype['polluted'];
    }
    // And once it is gone, the fast copy is back: the same result.
    expect(recordInput(input)).toEqual({ copy: { to: 'a@ourco.com', nested: { amount: 50 } }, exact: true });
  });

  it('leaves symbol-keyed properties out of the data: the fingerprint text and what is judged are the same as without them', () => {
    const tag = Symbol('tag');
    const input = { to: 'a@ourco.com', [tag]: { amount: 5000 } };
    const read = recordInput(input);
    expect(read.exact).toBe(true);
    expect(canonicalInput(read.copy)).toBe(canonicalInput({ to: 'a@ourco.com' }));
    expect(JSON.stringify(read.copy)).toBe('{"to":"a@ourco.com"}');
    expect(Object.keys(read.copy as object)).toEqual(['to']);
  });

  it('a getter that checks another input meanwhile does not disturb the copy in progress', () => {
    const inner = Array.from({ length: 200 }, (_, i) => i);
    const input = {
      get nested() {
        return recordInput({ list: inner }).exact;
      },
      list: Array.from({ length: 200 }, (_, i) => i),
    };
    const read = recordInput(input);
    expect(read.exact).toBe(true);
    expect((read.copy as { nested: boolean }).nested).toBe(true);
    expect((read.copy as { list: number[] }).list).toHaveLength(200);
  });
});

describe('boundMetadata', () => {
  it('copies flat metadata as it is, frozen; anything else through the bounded copy', () => {
    const flat = { via: 'ai-sdk', n: 1, ok: true, none: null, gone: undefined };
    const copy = boundMetadata(flat);
    expect(copy).toEqual(flat);
    expect(copy).not.toBe(flat);
    expect(Object.isFrozen(copy)).toBe(true);
    const nested = boundMetadata({ list: [1, 2], long: 'z'.repeat(2000) });
    expect(deepFrozen(nested)).toBe(true);
    expect((nested as { long: string }).long).toMatch(/truncated: 2000 chars/);
    expect(boundMetadata([1, 2] as unknown as Record<string, unknown>)).toEqual({ value: [1, 2] });
  });
});
