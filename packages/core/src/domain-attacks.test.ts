import { describe, expect, it } from 'vitest';
import { normalizeDomainEntry } from './domain.js';
import { AgentPolicy } from './index.js';

// Attacks on address ranges in network entries, rules and conditions: a blocked address reached anyway, or an
// entry that reads as one thing and matches another.

describe('every URL spelling of an address in a blocked range is blocked', () => {
  const session = () => new AgentPolicy({ blockedDomains: ['10.0.0.0/8', '169.254.0.0/16', 'fc00::/7'] }).session();

  it.each([
    ['http://10.1/', '10.0.0.0/8'],
    ['http://012.0.0.1/', '10.0.0.0/8'],
    ['http://0x0a.0x00.0x00.0x01/', '10.0.0.0/8'],
    ['http://167772161/', '10.0.0.0/8'],
    ['http://0251.0376.0251.0376/', '169.254.0.0/16'],
    ['http://10.0.0.1./', '10.0.0.0/8'],
    ['http://u:p@10.0.0.1:99/', '10.0.0.0/8'],
    ['http://%31%30.0.0.1/', '10.0.0.0/8'],
    ['http://１０.0.0.1/', '10.0.0.0/8'],
    ['http://10。0。0。1/', '10.0.0.0/8'],
    ['http://169.254.169.254%2e/', '169.254.0.0/16'],
    ['HTTP://[0:0:0:0:0:FFFF:A9FE:A9FE]:80/', '169.254.0.0/16'],
    ['http://[::10.0.0.1]/', '10.0.0.0/8'],
    ['http://[::ffff:0:10.0.0.1]/', '10.0.0.0/8'],
    ['http://[64:ff9b::10.0.0.1]/', '10.0.0.0/8'],
    ['http://[64:ff9b:1::10.0.0.1]/', '10.0.0.0/8'],
    ['http://[2002:a00:1::]/', '10.0.0.0/8'],
    ['http://[FD00::1]/', 'fc00::/7'],
  ])('%s is blocked by %s', async (url, entry) => {
    const decision = await session().checkHttp(url);
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toEqual({ section: 'network', list: 'block', entry });
  });

  it('an IPv6 literal with a zone id is not a URL host: denied, never matched without its zone', async () => {
    expect((await session().checkHttp('http://[fe80::1%25eth0]/')).decision).toBe('deny');
  });
});

describe('a malformed range is a load error, never a different range', () => {
  it.each(['10.0.0.0/8 ', ' 10.0.0.0/8', '10.0.0.0/8\n', '１０.0.0.0/8', '10.0.0.0/٨', '10.0.0.0/8\u200b', '\u200b10.0.0.0/8', '10.0.0.0。/8', '10.0.0.0./8', '10.0.0.0/+8', '10.0.0.0/0x8', '10.0.0.0/1e1', '[10.0.0.0]/8', 'fe80::%eth0/10', 'fe80::/10%eth0', '1.2.3/24', '::ffff:10.0.0.0/96', '::ffff:0:0/95'])('%j is refused', (entry) => {
    expect(normalizeDomainEntry(entry).ok).toBe(false);
    expect(() => new AgentPolicy({ blockedDomains: [entry] })).toThrow();
  });

  it('leading zeros in the prefix are the decimal number they spell', () => {
    expect(normalizeDomainEntry('10.0.0.0/010')).toMatchObject({ ok: true, host: '10.0.0.0/10', prefix: 10 });
  });
});

describe('an allow range does not lift the block of an entry naming this machine', () => {
  it.each([
    [['0.0.0.0/0'], ['http://127.0.0.1/', 'http://0.0.0.0/', 'http://[::ffff:7f00:1]/', 'http://2130706433/']],
    [['::/0'], ['http://[::1]/', 'http://[::]/', 'http://[::7f00:1]/', 'http://[64:ff9b::7f00:1]/']],
    [['0.0.0.0/1', '::/1'], ['http://127.0.0.1/', 'http://[::1]/']],
  ])('allow %j with block localhost', async (allow, urls) => {
    const session = new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: allow }).session();
    for (const url of urls) {
      const decision = await session.checkHttp(url);
      expect(decision.decision, url).toBe('deny');
      expect(decision.rule, url).toEqual({ section: 'network', list: 'block', entry: 'localhost' });
    }
    expect((await session.checkHttp('http://8.8.8.8/')).decision).toBe(allow[0] === '::/0' ? 'deny' : 'allow');
  });

  it('an allow entry naming part of this machine (an address, or a range within 127.0.0.0/8) still allows exactly that', async () => {
    const session = new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: ['127.0.0.2', '127.1.0.0/16'] }).session();
    expect((await session.checkHttp('http://127.0.0.2/')).decision).toBe('allow');
    expect((await session.checkHttp('http://127.1.2.3/')).decision).toBe('allow');
    expect((await session.checkHttp('http://127.0.0.1/')).decision).toBe('deny');
    expect((await session.checkHttp('http://[::1]/')).decision).toBe('deny');
  });

  it('session.lookup: a name resolving to loopback is refused under a wide allow range', async () => {
    const session = new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: ['rebind.attacker.test', '0.0.0.0/0'] }).session();
    const lookup = session.createLookup({ lookup: (_name, _options, callback) => queueMicrotask(() => (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }])) });
    const error = await new Promise<Error | null>((done) => lookup('rebind.attacker.test', { all: true }, (caught) => done(caught)));
    expect(error).not.toBeNull();
  });
});

describe('the domain operator under unless exempts the address itself, never a translated form of it', () => {
  const policy = AgentPolicy.fromDict({
    rules: [
      { deny: 'the office tool reaches the office network only', tool: 'office_fetch', unless: { 'input.host': { domain: ['192.168.0.0/16', 'localhost'] } } },
      { deny: 'the fetch tool never reaches private addresses', tool: 'fetch_url', if: { 'input.host': { domain: ['192.168.0.0/16'] } } },
    ],
  });
  const decide = async (tool: string, host: string) => (await policy.session().checkTool(tool, { input: { host } })).decision;

  it.each(['192.168.1.1', '[::ffff:c0a8:101]', 'localhost', '127.0.0.1', '[::1]'])('%s is exempt', async (host) => {
    expect(await decide('office_fetch', host)).toBe('allow');
  });

  it.each(['[64:ff9b::c0a8:101]', '[64:ff9b:1::c0a8:101]', '[2002:c0a8:101::]', '[::c0a8:101]', '[::ffff:0:c0a8:101]', '[64:ff9b::7f00:1]', '[2002:7f00:1::]', '8.8.8.8'])('%s is not exempt', async (host) => {
    expect(await decide('office_fetch', host)).toBe('deny');
  });

  it('under if, the translated forms still match (a deny covers every way of reaching the address)', async () => {
    for (const host of ['192.168.1.1', '[64:ff9b::c0a8:101]', '[2002:c0a8:101::]', '[::c0a8:101]']) expect(await decide('fetch_url', host), host).toBe('deny');
  });
});

describe('ranges in approval rules and rule selectors', () => {
  it('an approval range is asked for every spelling of an address in it', async () => {
    const session = new AgentPolicy({ approvalRules: [{ domain: '10.0.0.0/8' }] }).session();
    for (const url of ['http://0xa000001/', 'http://[::ffff:0:a00:1]/', 'http://[64:ff9b::a00:1]/', 'http://[2002:a00:1::]/']) {
      expect((await session.checkHttp(url)).decision, url).toBe('require_approval');
    }
  });

  it('overlapping and duplicate ranges: the longest prefix is named, every address is covered once', async () => {
    const session = new AgentPolicy({ blockedDomains: ['10.0.0.0/8', '10.0.0.0/8', '10.0.0.0/9', '0.0.0.0/1', '255.255.255.254/31', '8000::/1'] }).session();
    const entry = async (url: string) => ((await session.checkHttp(url)).rule as { entry?: string }).entry;
    expect(await entry('http://10.1.0.1/')).toBe('10.0.0.0/9');
    expect(await entry('http://10.200.0.1/')).toBe('10.0.0.0/8');
    expect(await entry('http://100.0.0.1/')).toBe('0.0.0.0/1');
    expect(await entry('http://255.255.255.255/')).toBe('255.255.255.254/31');
    expect(await entry('http://[ffff::1]/')).toBe('8000::/1');
    expect((await session.checkHttp('http://128.0.0.1/')).decision).toBe('allow');
    expect((await session.checkHttp('http://[7fff::1]/')).decision).toBe('allow');
  });
});
