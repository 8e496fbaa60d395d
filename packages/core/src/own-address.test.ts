import type { LookupAddress } from 'node:dns';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AgentPolicy, findPolicyError, PolicyDeniedError, type LookupFunction, type PolicyLookupOptions } from './index.js';

// This machine's interfaces, as the tests set them.
const machine = vi.hoisted(() => ({ interfaces: {} as Record<string, { address: string; family: string; internal: boolean }[]>, unreadable: false }));
vi.mock('node:os', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:os')>();
  return {
    ...actual,
    networkInterfaces: () => {
      if (machine.unreadable) throw new Error('uv_interface_addresses returned Unknown system error 1');
      return machine.interfaces;
    },
  };
});

const ETH0 = { eth0: [{ address: '10.0.0.5', family: 'IPv4', internal: false }, { address: '2001:db8::5', family: 'IPv6', internal: false }, { address: 'fe80::1%eth0', family: 'IPv6', internal: false }] };

let now = Date.UTC(2026, 10, 30);
// The interfaces are read again once the last read is over a second old.
const later = () => {
  now += 1500;
  vi.setSystemTime(now);
};

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  machine.interfaces = ETH0;
  machine.unreadable = false;
  later();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("an entry naming this machine covers this machine's interface addresses", () => {
  const policy = new AgentPolicy({ blockedDomains: ['localhost'] });

  it.each(['http://10.0.0.5:8080/admin', 'http://0x0a000005/', 'http://[::ffff:a00:5]/', 'http://[64:ff9b::a00:5]/', 'http://[2001:db8::5]/', 'http://[fe80::1]/'])('%s is blocked by "localhost"', async (url) => {
    const decision = await policy.session().checkHttp(url);
    expect(decision.decision).toBe('deny');
    expect(decision.rule).toEqual({ section: 'network', list: 'block', entry: 'localhost' });
  });

  it('another address of the same network is not this machine', async () => {
    expect((await policy.session().checkHttp('http://10.0.0.6/')).decision).toBe('allow');
    expect((await policy.session().checkHttp('http://[2001:db8::6]/')).decision).toBe('allow');
  });

  it('without an entry naming this machine, its addresses are decided like any other', async () => {
    expect((await new AgentPolicy({ blockedDomains: ['evil.example'] }).session().checkHttp('http://10.0.0.5/')).decision).toBe('allow');
  });

  it('an allow entry naming the address exactly still allows it', async () => {
    const session = new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: ['10.0.0.5', 'api.example.com'] }).session();
    expect((await session.checkHttp('http://10.0.0.5/')).decision).toBe('allow');
    expect((await session.checkHttp('http://[2001:db8::5]/')).decision).toBe('deny');
  });

  it('the interfaces are read again: an address that becomes this machine is blocked from then on, never from a memo', async () => {
    const session = policy.session();
    machine.interfaces = {};
    later();
    for (let i = 0; i < 3; i++) expect((await session.checkHttp('http://10.0.0.5/')).decision).toBe('allow');
    machine.interfaces = ETH0;
    later();
    for (let i = 0; i < 3; i++) expect((await session.checkHttp('http://10.0.0.5/')).decision).toBe('deny');
    machine.interfaces = {};
    later();
    expect((await session.checkHttp('http://10.0.0.5/')).decision).toBe('allow');
  });

  it('interfaces that cannot be read are none: loopback is still blocked, nothing throws', async () => {
    machine.unreadable = true;
    later();
    const session = policy.session();
    expect((await session.checkHttp('http://10.0.0.5/')).decision).toBe('allow');
    expect((await session.checkHttp('http://127.0.0.1/')).decision).toBe('deny');
    expect((await session.checkHttp('http://localhost/')).decision).toBe('deny');
  });

  it('session.lookup refuses a name resolving to an interface address', async () => {
    const session = policy.session();
    const resolve: NonNullable<PolicyLookupOptions['lookup']> = (_hostname, _options, callback) =>
      queueMicrotask(() => (callback as (error: null, addresses: LookupAddress[]) => void)(null, [{ address: '10.0.0.5', family: 4 }]));
    const lookup: LookupFunction = session.createLookup({ lookup: resolve });
    const answer = await new Promise<{ error: Error | null }>((done) => lookup('self.attacker.test', { all: true }, (error) => done({ error })));
    expect(findPolicyError(answer.error)).toBeInstanceOf(PolicyDeniedError);
    expect(session.report().decisions[0]?.rule).toEqual({ section: 'network', list: 'block', entry: 'localhost', address: '10.0.0.5' });
  });
});

describe("attacks on this machine's interface addresses", () => {
  const policy = new AgentPolicy({ blockedDomains: ['localhost'] });

  it.each(['http://[::a00:5]/', 'http://[::ffff:0:a00:5]/', 'http://[2002:a00:5::]/', 'http://[64:ff9b:1::a00:5]/', 'http://[FE80::1]/', 'http://[fe80:0:0:0::1]/', 'http://u:p@10.0.0.5./'])('%s, a form of an own address, is blocked', async (url) => {
    expect((await policy.session().checkHttp(url)).rule).toEqual({ section: 'network', list: 'block', entry: 'localhost' });
  });

  it('interface addresses in the forms the OS may report them (mapped, zone id, upper case) are this machine too', async () => {
    machine.interfaces = { lo9: [{ address: '::ffff:10.0.0.9', family: 'IPv6', internal: false }, { address: 'FE80::ABCD%3', family: 'IPv6', internal: false }] };
    later();
    const session = policy.session();
    expect((await session.checkHttp('http://10.0.0.9/')).decision).toBe('deny');
    expect((await session.checkHttp('http://[fe80::abcd]/')).decision).toBe('deny');
  });

  it('an allow range holding an own address does not lift the block; an allow entry naming it does', async () => {
    const wide = new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: ['10.0.0.0/8', '2001:db8::/32'] }).session();
    expect((await wide.checkHttp('http://10.0.0.5/')).rule).toEqual({ section: 'network', list: 'block', entry: 'localhost' });
    expect((await wide.checkHttp('http://[2001:db8::5]/')).decision).toBe('deny');
    expect((await wide.checkHttp('http://10.0.0.6/')).decision).toBe('allow');
    expect((await new AgentPolicy({ blockedDomains: ['localhost'], allowedDomains: ['10.0.0.5/32'] }).session().checkHttp('http://10.0.0.5/')).decision).toBe('allow');
  });

  it('the domain operator and a rule selector naming this machine cover its interface addresses', async () => {
    const session = AgentPolicy.fromDict({
      rules: [
        { deny: 'no fetching this machine', tool: 'fetch_url', if: { 'input.url': { domain: 'localhost' } } },
        { require_approval: 'writes to this machine', domain: '127.0.0.0/8', unless: { method: { in: ['GET'] } } },
      ],
    }).session();
    expect((await session.checkTool('fetch_url', { input: { url: 'http://10.0.0.5:3000/' } })).decision).toBe('deny');
    expect((await session.checkTool('fetch_url', { input: { url: '[2002:a00:5::]' } })).decision).toBe('deny');
    expect((await session.checkTool('fetch_url', { input: { url: 'http://10.0.0.6/' } })).decision).toBe('allow');
    expect((await session.checkHttp('http://[2001:db8::5]/', { method: 'POST' })).decision).toBe('require_approval');
  });

  it('no memo keeps the verdict of before the interface appeared: lists, approval rules, selectors and conditions', async () => {
    machine.interfaces = {};
    later();
    const policy = AgentPolicy.fromDict({
      network: { block: ['localhost'] },
      approval: { require_for: [{ domain: '127.0.0.1' }] },
      rules: [{ deny: 'no fetching this machine', tool: 'fetch_url', if: { 'input.url': { domain: '::1' } } }],
    });
    const blocked = new AgentPolicy({ blockedDomains: ['127.0.0.1'] });
    const sessions = [policy.session(), blocked.session()];
    const asking = new AgentPolicy({ approvalRules: [{ domain: '::1' }] }).session();
    const check = async () => [
      ...(await Promise.all(sessions.map(async (session) => (await session.checkHttp('http://10.0.0.5/x')).decision))),
      (await asking.checkHttp('http://10.0.0.5/x')).decision,
      (await sessions[0]!.checkTool('fetch_url', { input: { url: 'http://10.0.0.5/x' } })).decision,
    ];
    for (let i = 0; i < 3; i++) expect(await check()).toEqual(['allow', 'allow', 'allow', 'allow']);
    machine.interfaces = ETH0;
    later();
    expect(await check()).toEqual(['deny', 'deny', 'require_approval', 'deny']);
  });

  it('session.lookup decides an answer with a zone id as the address, and keeps the zone in what it answers', async () => {
    const session = policy.session();
    const answering = (address: string): NonNullable<PolicyLookupOptions['lookup']> => (_hostname, _options, callback) =>
      queueMicrotask(() => (callback as (error: null, addresses: LookupAddress[]) => void)(null, [{ address, family: 6 }]));
    const ask = (address: string) =>
      new Promise<{ error: Error | null; address: unknown }>((done) => session.createLookup({ lookup: answering(address) })('self.attacker.test', { all: true }, (error, answer) => done({ error, address: answer })));
    for (const address of ['fe80::1%eth0', 'FE80::1%2', '::ffff:10.0.0.5', '64:ff9b::a00:5']) expect(findPolicyError((await ask(address)).error), address).toBeInstanceOf(PolicyDeniedError);
    expect(await ask('fe80::2%eth0')).toEqual({ error: null, address: [{ address: 'fe80::2%eth0', family: 6 }] });
  });
});
