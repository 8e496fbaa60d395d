import type { LookupAddress } from 'node:dns';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DomainMatcher, normalizeDomainEntry, parseTarget } from './domain.js';
import { AgentPolicy, findPolicyError, PolicyDeniedError, PolicyValidationError, type LookupFunction, type PolicyLookupOptions } from './index.js';

const ssrf = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', 'fc00::/7', 'fe80::/10'];

describe('address ranges in domain entries', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8', 8],
    ['10.0.0.0/08', '10.0.0.0/8', 8],
    ['fc00::/7', 'fc00::/7', 7],
    ['[FC00::]/7', 'fc00::/7', 7],
    ['2001:db8:0:0::/32', '2001:db8::/32', 32],
    ['::/0', '::/0', 0],
    ['0.0.0.0/0', '0.0.0.0/0', 0],
    // An IPv4-mapped IPv6 range is the IPv4 range it maps, as a mapped address is the IPv4 address.
    ['::ffff:10.0.0.0/104', '10.0.0.0/8', 8],
    ['::ffff:0:0/96', '0.0.0.0/0', 0],
  ])('%s is the range %s', (entry, host, prefix) => {
    expect(normalizeDomainEntry(entry)).toEqual({ ok: true, host, wildcard: false, isIp: true, prefix });
  });

  it('a whole-address prefix is the address itself', () => {
    expect(normalizeDomainEntry('10.0.0.1/32')).toEqual({ ok: true, host: '10.0.0.1', wildcard: false, isIp: true });
    expect(normalizeDomainEntry('::1/128')).toEqual({ ok: true, host: '[::1]', wildcard: false, isIp: true });
  });

  it.each([
    ['10.1.0.0/8', /no bit set past its prefix .*10\.0\.0\.0\/8/],
    ['fc00::1/7', /no bit set past its prefix .*fc00::\/7/],
    ['10.0.0.0/33', /IPv4 prefix length is 0 to 32/],
    ['fe80::/129', /IPv6 prefix length is 0 to 128/],
    ['10/8', /dotted decimal IPv4/],
    ['010.0.0.0/8', /dotted decimal IPv4/],
    ['0x0a.0.0.0/8', /dotted decimal IPv4/],
    ['example.com/8', /bare domain/],
    ['*.10.0.0.0/8', /bare domain/],
    ['10.0.0.0/8/8', /bare domain/],
    ['10.0.0.0/', /bare domain/],
    ['10.0.0.0/-1', /bare domain/],
    ['10.0.0.0/ 8', /bare domain/],
  ])('%s is refused with a reason', (entry, message) => {
    const read = normalizeDomainEntry(entry);
    expect(read.ok).toBe(false);
    expect(read.ok ? '' : read.message).toMatch(message);
  });

  it('a policy with a malformed range fails to load, naming the entry and its path', () => {
    const error = (() => {
      try {
        AgentPolicy.fromDict({ network: { block: ['10.0.0.0/8', '192.168.1.0/16'] } });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(PolicyValidationError);
    expect((error as PolicyValidationError).issues).toEqual([{ path: 'network.block[1]', message: expect.stringMatching(/192\.168\.0\.0\/16/) }]);
  });
});

describe('network.block with address ranges', () => {
  const session = () => new AgentPolicy({ blockedDomains: ssrf }).session();

  it.each([
    ['http://10.1.2.3/', '10.0.0.0/8'],
    ['http://0x0a010203/', '10.0.0.0/8'],
    ['http://10.258/', '10.0.0.0/8'],
    ['http://172.31.255.255/', '172.16.0.0/12'],
    ['http://192.168.0.1:8080/admin', '192.168.0.0/16'],
    ['http://169.254.169.254/latest/meta-data/', '169.254.0.0/16'],
    ['http://[::ffff:a9fe:a9fe]/', '169.254.0.0/16'],
    // The IPv6 forms that carry or route to an address in an IPv4 range.
    ['http://[::a9fe:a9fe]/', '169.254.0.0/16'],
    ['http://[64:ff9b::a9fe:a9fe]/', '169.254.0.0/16'],
    ['http://[2002:a00:1::]/', '10.0.0.0/8'],
    ['http://[fd12:3456::1]/', 'fc00::/7'],
    ['http://[FE80::1]/', 'fe80::/10'],
  ])('%s is blocked by %s', async (url, entry) => {
    const decision = await session().checkHttp(url);
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toEqual({ section: 'network', list: 'block', entry });
  });

  it.each(['http://11.0.0.1/', 'http://172.32.0.1/', 'http://192.169.0.1/', 'http://[2606:4700::1]/', 'http://[fec0::1]/', 'https://api.example.com/'])('%s is outside every range', async (url) => {
    expect((await session().checkHttp(url)).decision).toBe('allow');
  });

  it('the longest prefix that covers the address is the entry named', async () => {
    const policy = new AgentPolicy({ blockedDomains: ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3'] });
    const entry = async (url: string) => (await policy.session().checkHttp(url)).rule;
    expect(await entry('http://10.1.2.3/')).toMatchObject({ entry: '10.1.2.3' });
    expect(await entry('http://10.1.2.4/')).toMatchObject({ entry: '10.1.2.0/24' });
    expect(await entry('http://10.1.3.4/')).toMatchObject({ entry: '10.1.0.0/16' });
    expect(await entry('http://10.2.3.4/')).toMatchObject({ entry: '10.0.0.0/8' });
  });

  it('a range reaching into this machine blocks its names too, as an entry naming it does', async () => {
    for (const block of ['127.0.0.0/8', '127.0.0.0/24', '0.0.0.0/0', '0.0.0.0/5', '::/0', '::/127']) {
      const policy = new AgentPolicy({ blockedDomains: [block] });
      for (const url of ['http://localhost/', 'http://api.localhost/', 'http://127.0.0.1/', 'http://[::1]/']) {
        const decision = await policy.session().checkHttp(url);
        expect(decision.decision, `${block} on ${url}`).toBe('deny');
      }
    }
    expect((await new AgentPolicy({ blockedDomains: ['126.0.0.0/8', '128.0.0.0/8', '2000::/3'] }).session().checkHttp('http://localhost/')).decision).toBe('allow');
  });

  it('an IPv6 range that holds the IPv4-mapped block blocks IPv4 addresses too; a narrower one does not', async () => {
    expect((await new AgentPolicy({ blockedDomains: ['::/0'] }).session().checkHttp('http://8.8.8.8/')).rule).toMatchObject({ entry: '::/0' });
    expect((await new AgentPolicy({ blockedDomains: ['::ffff:0:0/96'] }).session().checkHttp('http://8.8.8.8/')).rule).toMatchObject({ entry: '::ffff:0:0/96' });
    expect((await new AgentPolicy({ blockedDomains: ['2000::/3'] }).session().checkHttp('http://8.8.8.8/')).decision).toBe('allow');
  });

  it('a name is decided by its name: a range is met by the addresses it resolves to (session.lookup)', async () => {
    expect((await session().checkHttp('http://internal.example/')).decision).toBe('allow');
  });
});

describe('network.allow with address ranges', () => {
  it('allows every address of an IPv4 range, in its mapped form too, and nothing else', async () => {
    const session = new AgentPolicy({ allowedDomains: ['api.example.com', '10.0.0.0/8'] }).session();
    expect((await session.checkHttp('http://10.20.30.40/')).decision).toBe('allow');
    expect((await session.checkHttp('http://[::ffff:a14:1e28]/')).decision).toBe('allow');
    expect((await session.checkHttp('http://11.0.0.1/')).decision).toBe('deny');
    // An allow list stays exact: the NAT64 and 6to4 forms route elsewhere first and are not the address.
    expect((await session.checkHttp('http://[64:ff9b::a14:1e28]/')).decision).toBe('deny');
    expect((await session.checkHttp('http://[2002:a14:1e28::]/')).decision).toBe('deny');
  });

  it('an IPv6 range allows IPv6 addresses only: ::/0 is not a way to allow every IPv4 address', async () => {
    const session = new AgentPolicy({ allowedDomains: ['::/0'] }).session();
    expect((await session.checkHttp('http://[2606:4700::1]/')).decision).toBe('allow');
    expect((await session.checkHttp('http://8.8.8.8/')).decision).toBe('deny');
    expect((await session.checkHttp('http://[::ffff:808:808]/')).decision).toBe('deny');
    expect((await new AgentPolicy({ allowedDomains: ['::ffff:0:0/96'] }).session().checkHttp('http://8.8.8.8/')).decision).toBe('allow');
  });

  it('a block range inside an allowed range still blocks', async () => {
    const session = new AgentPolicy({ allowedDomains: ['10.0.0.0/8'], blockedDomains: ['10.9.0.0/16'] }).session();
    expect((await session.checkHttp('http://10.1.0.1/')).decision).toBe('allow');
    expect((await session.checkHttp('http://10.9.0.1/')).rule).toEqual({ section: 'network', list: 'block', entry: '10.9.0.0/16' });
  });
});

describe('address ranges in rules and approval rules', () => {
  it('a rule selects requests by range, and the domain operator reads addresses in tool input', async () => {
    const policy = AgentPolicy.fromDict({
      rules: [
        { require_approval: 'writes to the office network', domain: '192.168.0.0/16', unless: { method: { in: ['GET', 'HEAD'] } } },
        { deny: 'the fetch tool never reaches private addresses', tool: 'fetch_url', if: { 'input.url': { domain: ['10.0.0.0/8', 'fc00::/7', '169.254.0.0/16'] } } },
      ],
    });
    const session = policy.session();
    expect((await session.checkHttp('http://192.168.1.10/printers', { method: 'POST' })).decision).toBe('require_approval');
    expect((await session.checkHttp('http://192.168.1.10/printers', { method: 'GET' })).decision).toBe('allow');
    expect((await session.checkTool('fetch_url', { input: { url: 'http://10.0.0.5/admin' } })).decision).toBe('deny');
    expect((await session.checkTool('fetch_url', { input: { url: 'http://[fd00::5]/' } })).decision).toBe('deny');
    expect((await session.checkTool('fetch_url', { input: { url: '169.254.169.254' } })).decision).toBe('deny');
    expect((await session.checkTool('fetch_url', { input: { url: 'https://example.com/' } })).decision).toBe('allow');
  });

  it('an approval rule on a range', async () => {
    const session = new AgentPolicy({ approvalRules: [{ domain: '10.0.0.0/8' }] }).session();
    expect((await session.checkHttp('http://10.1.1.1/')).decision).toBe('require_approval');
    expect((await session.checkHttp('http://11.1.1.1/')).decision).toBe('allow');
  });

  it('a bad range in a rule is a load error with its path', () => {
    expect(() => AgentPolicy.fromDict({ rules: [{ deny: 'x', tool: 't', if: { 'input.url': { domain: '10.0.0.1/8' } } }] })).toThrow(/rules\[0\]\.if\.input\.url\.domain: .*10\.0\.0\.0\/8/);
  });
});

describe('session.lookup refuses a name that resolves into a blocked range', () => {
  type Resolver = NonNullable<PolicyLookupOptions['lookup']>;
  const answering =
    (addresses: LookupAddress[]): Resolver =>
    (_hostname, _options, callback) =>
      queueMicrotask(() => (callback as (error: null, addresses: LookupAddress[]) => void)(null, addresses));
  const ask = (lookup: LookupFunction, hostname: string) =>
    new Promise<{ error: Error | null; address: unknown }>((resolve) => lookup(hostname, { all: true }, (error, address) => resolve({ error, address })));

  it('metadata and private addresses behind public-looking names, in either family', async () => {
    const session = new AgentPolicy({ blockedDomains: ssrf }).session();
    for (const [name, address] of [
      ['metadata.attacker.test', { address: '169.254.169.254', family: 4 }],
      ['intranet.attacker.test', { address: '10.0.0.7', family: 4 }],
      ['v6.attacker.test', { address: 'fd00::7', family: 6 }],
      ['mapped.attacker.test', { address: '::ffff:192.168.0.1', family: 6 }],
      ['nat64.attacker.test', { address: '64:ff9b::a9fe:a9fe', family: 6 }],
    ] as const) {
      const answer = await ask(session.createLookup({ lookup: answering([{ address: '93.184.216.34', family: 4 }, address]) }), name);
      expect(findPolicyError(answer.error), name).toBeInstanceOf(PolicyDeniedError);
      expect(answer.address ?? []).toEqual([]);
    }
    expect((await ask(session.createLookup({ lookup: answering([{ address: '93.184.216.34', family: 4 }]) }), 'public.test')).error).toBeNull();
    expect(session.report().decisions.map((decision) => (decision.rule as { entry: string }).entry)).toEqual(['169.254.0.0/16', '10.0.0.0/8', 'fc00::/7', '192.168.0.0/16', '169.254.0.0/16']);
  });
});

describe('range matching agrees with arithmetic on 128-bit addresses (property)', () => {
  const toBig = (words: readonly number[]) => words.reduce((acc, word) => (acc << 16n) | BigInt(word), 0n);
  const hex = (words: readonly number[]) => `[${words.map((word) => word.toString(16)).join(':')}]`;
  // Addresses drawn near each other so that ranges often hold them: a few fixed high words, random low ones.
  const word = fc.oneof(fc.constantFrom(0, 0xffff, 0xfc00, 0xa, 0x2001), fc.integer({ min: 0, max: 0xffff }));
  const v6 = fc.array(word, { minLength: 8, maxLength: 8 });
  const v4 = fc.tuple(fc.constantFrom(10, 127, 169, 192, 0), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }));
  const address = fc.oneof(v6.map((words) => ({ host: canonical(hex(words)), words })), v4.map(([a, b, c, d]) => ({ host: `${a}.${b}.${c}.${d}`, words: [0, 0, 0, 0, 0, 0xffff, (a << 8) | b, (c << 8) | d] })));
  const range = fc.tuple(address, fc.integer({ min: 0, max: 128 })).map(([base, bits]) => {
    const ipv4 = !base.host.startsWith('[');
    const prefix = ipv4 ? bits % 33 : bits;
    const wide = ipv4 ? prefix + 96 : prefix;
    const mask = wide === 0 ? 0n : ((1n << BigInt(wide)) - 1n) << BigInt(128 - wide);
    const network = toBig(base.words) & mask;
    const words = Array.from({ length: 8 }, (_, index) => Number((network >> BigInt(112 - 16 * index)) & 0xffffn));
    const text = ipv4 ? `${words[6]! >> 8}.${words[6]! & 0xff}.${words[7]! >> 8}.${words[7]! & 0xff}/${prefix}` : `${hex(words).slice(1, -1)}/${prefix}`;
    return { text, network, wide, ipv4 };
  });
  function canonical(host: string): string {
    const target = parseTarget(`http://${host}/`);
    return target.ok ? target.host : host;
  }

  it('a block list names the longest range that holds the address (exact entries first)', () => {
    fc.assert(
      fc.property(fc.array(range, { minLength: 1, maxLength: 6 }), address, (ranges, target) => {
        const matcher = new DomainMatcher(ranges.map((r) => r.text), 'subtree');
        const value = toBig(target.words);
        const holding = ranges.filter((r) => r.wide === 0 || value >> BigInt(128 - r.wide) === r.network >> BigInt(128 - r.wide));
        const host = canonical(target.host);
        const isIp = parseTarget(`http://${host}/`).ok;
        const got = matcher.matchListed(host, isIp);
        if (holding.length === 0) {
          // Nothing holds the address itself; only an IPv6 form carrying an IPv4 address can still be covered.
          return got === undefined || host.startsWith('[');
        }
        const longest = Math.max(...holding.map((r) => r.wide));
        return got !== undefined && holding.some((r) => r.wide === longest && r.text === got);
      }),
      { numRuns: 3000 },
    );
  });

  it('an allow list allows an IPv4 address only through an IPv4 range', () => {
    fc.assert(
      fc.property(fc.array(range, { minLength: 1, maxLength: 6 }), address, (ranges, target) => {
        const host = canonical(target.host);
        const got = new DomainMatcher(ranges.map((r) => r.text), 'exact').matchListed(host, true);
        const value = toBig(target.words);
        const ipv4Host = !host.startsWith('[');
        const holding = ranges.filter((r) => (!ipv4Host || r.wide >= 96) && (r.wide === 0 || value >> BigInt(128 - r.wide) === r.network >> BigInt(128 - r.wide)));
        if (holding.length === 0) return got === undefined;
        const longest = Math.max(...holding.map((r) => r.wide));
        return got !== undefined && holding.some((r) => r.wide === longest && r.text === got);
      }),
      { numRuns: 3000 },
    );
  });
});
