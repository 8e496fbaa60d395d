import { describe, expect, it } from 'vitest';
import { declaredCost, declaredCostIn, formatUsd, parseMoney, readCost } from './money.js';

describe('parseMoney (policy amounts)', () => {
  it.each([
    [5, 5_000_000_000],
    [5.0, 5_000_000_000],
    ['5', 5_000_000_000],
    ['5.00', 5_000_000_000],
    ['$5.00', 5_000_000_000],
    ['$0.30', 300_000_000],
    [0.1, 100_000_000],
    ['0.000000001', 1],
    ['1.5000000000', 1_500_000_000],
    [0, 0],
  ])('accepts %j', (input, nanos) => {
    expect(parseMoney(input)).toEqual({ ok: true, nanos });
  });

  it.each([
    [-1, /negative/],
    ['-1', /negative/],
    ['$-1', /negative/],
    [Number.NaN, /NaN/],
    [Number.POSITIVE_INFINITY, /finite/],
    ['', /empty/],
    ['   ', /empty/],
    ['5,000', /no commas/],
    ['0x10', /hex/],
    ['5 USD', /units/],
    ['five', /amount like/],
    ['5.', /amount like/],
    ['.5', /amount like/],
    ['05', /amount like/],
    ['1e3', /amount like/],
    ['$ 5', /amount like/],
    ['0.0000000001', /more than 9 decimal places/],
    [null, /got null/],
    [true, /got boolean true/],
    [[5], /got an array/],
    [{ usd: 5 }, /got an object/],
    [5n, /bigint/],
  ])('rejects %s', (input, message) => {
    const result = parseMoney(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(message);
  });
});

describe('readCost (runtime costs)', () => {
  it('reads decimal costs exactly', () => {
    expect(readCost(0.1)).toEqual({ ok: true, nanos: 100_000_000 });
    expect(readCost(0.2)).toEqual({ ok: true, nanos: 200_000_000 });
    expect(readCost(0.000005)).toEqual({ ok: true, nanos: 5_000 });
    expect(readCost(1.5e-7)).toEqual({ ok: true, nanos: 150 });
    expect(readCost(0)).toEqual({ ok: true, nanos: 0 });
  });

  it('rounds a cost finer than a nano-dollar up, never to zero', () => {
    expect(readCost(1e-12)).toEqual({ ok: true, nanos: 1 });
    expect(readCost(1.0000000001)).toEqual({ ok: true, nanos: 1_000_000_001 });
    expect(readCost(Number.MIN_VALUE)).toEqual({ ok: true, nanos: 1 });
  });

  it.each([
    [-0.01, /got -0.01/],
    [Number.NaN, /NaN/],
    [Number.POSITIVE_INFINITY, /Infinity/],
    [Number.NEGATIVE_INFINITY, /-Infinity/],
    ['0.1', /got the string/],
    [null, /got null/],
    [undefined, /got undefined/],
    [true, /got boolean/],
    [1n, /bigint/],
    [{}, /object/],
    [1e300, /too large/],
  ])('refuses %s', (input, reason) => {
    const result = readCost(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it('formats nanos as dollars', () => {
    expect(formatUsd(5_000_000_000)).toBe('$5.00');
    expect(formatUsd(300_000_000)).toBe('$0.30');
    expect(formatUsd(5_000)).toBe('$0.000005');
    expect(formatUsd(1)).toBe('$0.000000001');
  });
});

describe('declaredCost (what adapters read from their costs options)', () => {
  it('passes a number or no cost through, asks a function with the call, and turns a throw into NaN with its message', () => {
    expect(declaredCost(undefined, {})).toEqual({ cost: undefined });
    expect(declaredCost(0.25, {})).toEqual({ cost: 0.25 });
    expect(declaredCost((call: { to: string[] }) => 0.02 * call.to.length, { to: ['a', 'b'] })).toEqual({ cost: 0.04 });
    expect(declaredCost(() => undefined, {})).toEqual({ cost: undefined });
    const thrown = declaredCost(() => {
      throw new Error('no price');
    }, {});
    expect(thrown.cost).toBeNaN();
    expect(thrown.error).toBe('no price');
    // Anything thrown, not only errors: its text.
    expect(
      declaredCost(() => {
        throw 'nope';
      }, {}).error,
    ).toBe('nope');
  });

  it('leaves judging the value to the check: what a function returns comes back as it is, and readCost refuses it', () => {
    const odd = declaredCost(() => -1, {});
    expect(odd).toEqual({ cost: -1 });
    expect(readCost(odd.cost).ok).toBe(false);
    expect(readCost(Number.NaN).ok).toBe(false);
  });
});

describe('declaredCostIn (a cost table: a map by name, or a function of the call)', () => {
  it("reads the map's own entry only: an inherited name such as constructor or toString costs nothing and is never called", () => {
    const table = { search: 0.01 };
    expect(declaredCostIn(table, 'search', {})).toEqual({ cost: 0.01 });
    expect(declaredCostIn(table, 'other', {})).toEqual({ cost: undefined });
    expect(declaredCostIn(table, 'constructor', {})).toEqual({ cost: undefined });
    expect(declaredCostIn(table, 'toString', {})).toEqual({ cost: undefined });
    expect(declaredCostIn(undefined, 'search', {})).toEqual({ cost: undefined });
  });

  it('asks a function with the call, and a throw is NaN with its message', () => {
    expect(declaredCostIn(({ name }: { name: string }) => (name === 'sms' ? 0.02 : undefined), 'sms', { name: 'sms' })).toEqual({ cost: 0.02 });
    const thrown = declaredCostIn(() => {
      throw new Error('price list down');
    }, 'sms', {});
    expect(thrown.cost).toBeNaN();
    expect(thrown.error).toBe('price list down');
  });
});
