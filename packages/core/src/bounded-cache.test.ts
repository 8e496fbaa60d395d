import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BoundedCache } from './bounded-cache.js';
import { parseTarget } from './domain.js';
import { AgentPolicy } from './policy.js';

describe('BoundedCache', () => {
  it('never keeps a key longer than its limit, but still returns the value', () => {
    const cache = new BoundedCache<string>(10, 1_000_000, 100);
    expect(cache.set('x'.repeat(101), 'v')).toBe('v');
    expect(cache.size).toBe(0);
    expect(cache.get('x'.repeat(101))).toBeUndefined();
    cache.set('x'.repeat(100), 'v');
    expect(cache.size).toBe(1);
  });

  it('never keeps a value heavier than the whole byte budget', () => {
    const cache = new BoundedCache<string>(10, 1000, 100, (value) => 2 * value.length);
    cache.set('a', 'x'.repeat(1000));
    expect(cache.size).toBe(0);
  });

  it('starts over when an insertion would pass either bound', () => {
    const cache = new BoundedCache<number>(3, 1_000_000, 100);
    for (const key of ['a', 'b', 'c']) cache.set(key, 1);
    cache.set('b', 2);
    expect(cache.size).toBe(3);
    cache.set('d', 1);
    expect([cache.size, cache.get('a'), cache.get('d')]).toEqual([1, undefined, 1]);
    const bytes = new BoundedCache<string>(100, 400, 100, (value) => 2 * value.length);
    bytes.set('a', 'x'.repeat(100));
    bytes.set('b', 'x'.repeat(50));
    expect(bytes.size).toBe(1);
    expect(bytes.get('b')).toBe('x'.repeat(50));
  });

  it('stays within both bounds under any sequence of insertions (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ maxLength: 60 }), fc.string({ maxLength: 200 })), { maxLength: 300 }), (entries) => {
        const cache = new BoundedCache<string>(20, 4000, 50, (value) => 2 * value.length);
        for (const [key, value] of entries) {
          expect(cache.set(key, value)).toBe(value);
          expect(cache.size).toBeLessThanOrEqual(20);
          expect(cache.byteSize).toBeLessThanOrEqual(4000);
        }
        // The last value written under a kept key is the one read back.
        const last = new Map(entries);
        for (const [key, value] of last) {
          const got = cache.get(key);
          if (got !== undefined) expect(got).toBe(value);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('the policy memos are bounded in bytes', () => {
  const memo = (policy: AgentPolicy, name: 'toolInfos' | 'freeToolVerdicts' | 'freeHttpVerdicts') => (policy as unknown as Record<string, BoundedCache<unknown>>)[name] as BoundedCache<unknown>;

  it('a 1 MB tool name is denied and not kept', async () => {
    const policy = new AgentPolicy({ blockedTools: ['delete_*'] });
    const session = policy.session();
    const huge = `read_${'a'.repeat(1_000_000)}`;
    const decision = await session.checkTool(huge);
    expect(decision.decision).toBe('deny');
    expect(decision.reason).toMatch(/longer than 256/);
    expect(memo(policy, 'toolInfos').byteSize).toBeLessThan(10_000);
  });

  it('hosts too long to keep are decided afresh, the same way each time', async () => {
    const policy = new AgentPolicy({ blockedDomains: ['evil.example'] });
    const session = policy.session();
    const host = `${'a.'.repeat(8_000)}evil.example`;
    for (let i = 0; i < 3; i++) expect((await session.checkHttp(`https://${host}/`)).decision).toBe('deny');
    expect((await session.checkHttp(`https://${'b.'.repeat(8_000)}good.example/`)).decision).toBe('allow');
    expect(memo(policy, 'freeHttpVerdicts').byteSize).toBeLessThan(10_000);
  });

  it('many distinct long names stay within the byte budget', async () => {
    const policy = new AgentPolicy({});
    const session = policy.session({ maxDecisions: 10 });
    for (let i = 0; i < 5_000; i++) await session.checkTool(`tool_${i}_${'x'.repeat(240)}`);
    expect(memo(policy, 'toolInfos').byteSize).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(memo(policy, 'freeToolVerdicts').byteSize).toBeLessThanOrEqual(2 * 1024 * 1024);
  });

  it('a 10 MB URL parses (and is denied or allowed) without being cached', () => {
    const url = `https://example.com/?q=${'a'.repeat(10_000_000)}`;
    const first = parseTarget(url);
    expect(first.ok && first.host).toBe('example.com');
    // A fresh object each time: the parse was not memoised.
    expect(parseTarget(url)).not.toBe(first);
    const short = 'https://example.com/short';
    expect(parseTarget(short)).toBe(parseTarget(short));
  });
});
