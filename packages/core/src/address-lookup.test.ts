import type { LookupAddress } from 'node:dns';
import { createServer, get, Agent as HttpAgent, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Agent as UndiciAgent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentPolicy, createAuditLog, findPolicyError, PolicyDeniedError, PolicySource, replayAuditLog, type LookupFunction, type PolicyLookupOptions, type PolicySession } from './index.js';
import { useTempDirs } from './test-support/temp-dirs.js';

type Resolver = NonNullable<PolicyLookupOptions['lookup']>;

/** A resolver answering from a table (each name's answers in turn, the last one repeated), counting lookups. */
function resolver(table: Record<string, readonly (readonly LookupAddress[])[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const turns = new Map<string, number>();
  const resolve = ((hostname: string, _options: unknown, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => {
    asked.push(hostname);
    const answers = table[hostname];
    if (answers === undefined) {
      queueMicrotask(() => callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []));
      return;
    }
    const turn = turns.get(hostname) ?? 0;
    turns.set(hostname, turn + 1);
    const answer = answers[Math.min(turn, answers.length - 1)] as readonly LookupAddress[];
    queueMicrotask(() => callback(null, [...answer]));
  }) as Resolver & { asked: string[] };
  resolve.asked = asked;
  return resolve;
}

const v4 = (address: string): LookupAddress => ({ address, family: 4 });
const v6 = (address: string): LookupAddress => ({ address, family: 6 });

/** Calls a lookup the way net.connect does; resolves with what its callback got. */
function ask(lookup: LookupFunction, hostname: string, options: object = {}): Promise<{ error: Error | null; address: unknown; family: number | undefined }> {
  return new Promise((resolve) => lookup(hostname, options, (error, address, family) => resolve({ error, address, family })));
}

describe('session.lookup: the network policy on the addresses a name resolves to', () => {
  it('refuses a name that resolves to a blocked address, recorded as a deny naming the address and the entry', async () => {
    const session = new AgentPolicy({ blockedDomains: ['169.254.169.254'] }).session();
    const lookup = session.createLookup({ lookup: resolver({ 'metadata.attacker.test': [[v4('169.254.169.254')]] }) });
    const { error } = await ask(lookup, 'metadata.attacker.test');
    expect(findPolicyError(error)).toBeInstanceOf(PolicyDeniedError);
    const [decision] = session.report().decisions;
    expect(decision).toMatchObject({
      decision: 'deny',
      rule: { section: 'network', list: 'block', entry: '169.254.169.254', address: '169.254.169.254' },
      action: { type: 'http', url: 'http://169.254.169.254/', metadata: { via: 'lookup', hostname: 'metadata.attacker.test' } },
    });
    expect(decision?.reason).toBe('"metadata.attacker.test" resolves to 169.254.169.254, which network.block entry "169.254.169.254" blocks');
  });

  it('answers like dns.lookup for a name whose addresses are not blocked, and records nothing', async () => {
    const session = new AgentPolicy({ allowedDomains: ['api.example.com'], blockedDomains: ['169.254.169.254'] }).session();
    const lookup = session.createLookup({ lookup: resolver({ 'api.example.com': [[v4('93.184.216.34'), v6('2606:2800:220:1::1')]] }) });
    // The allow-list decides names, not addresses: an address it does not list is not refused.
    expect(await ask(lookup, 'api.example.com')).toEqual({ error: null, address: '93.184.216.34', family: 4 });
    expect(await ask(lookup, 'api.example.com', { all: true })).toEqual({ error: null, address: [v4('93.184.216.34'), v6('2606:2800:220:1::1')], family: undefined });
    expect(await ask(lookup, 'api.example.com', 4 as unknown as object)).toMatchObject({ error: null, address: '93.184.216.34' });
    expect(session.report().decisions).toEqual([]);
  });

  it('sees the blocked address in every form a resolver can give it, and in any place of the answer', async () => {
    const session = new AgentPolicy({ blockedDomains: ['169.254.169.254', 'localhost'] }).session();
    const lookup = session.createLookup({
      lookup: resolver({
        mapped: [[v6('::ffff:169.254.169.254')]],
        'mapped-hex': [[v6('::ffff:a9fe:a9fe')]],
        nat64: [[v6('64:ff9b::a9fe:a9fe')]],
        loopback6: [[v6('::1')]],
        loopback4: [[v4('127.0.0.53')]],
        unspecified: [[v4('0.0.0.0')]],
        mixed: [[v4('93.184.216.34'), v4('169.254.169.254')]],
      }),
    });
    for (const name of ['mapped', 'mapped-hex', 'nat64', 'loopback6', 'loopback4', 'unspecified', 'mixed']) {
      const { error, address } = await ask(lookup, name);
      expect(findPolicyError(error), name).toBeInstanceOf(PolicyDeniedError);
      expect(address, name).toBe('');
    }
    expect(session.report().decisions.map((decision) => decision.decision)).toEqual(Array(7).fill('deny'));
  });

  it('an allow entry naming a local address exactly still lets a name reach it, as it does a request to it', async () => {
    const session = new AgentPolicy({ allowedDomains: ['app.test', '127.0.0.1'], blockedDomains: ['127.0.0.2'] }).session();
    const lookup = session.createLookup({ lookup: resolver({ 'app.test': [[v4('127.0.0.1')]], 'other.test': [[v4('127.0.0.3')]] }) });
    expect(await ask(lookup, 'app.test')).toMatchObject({ error: null, address: '127.0.0.1' });
    expect(findPolicyError((await ask(lookup, 'other.test')).error)).toBeInstanceOf(PolicyDeniedError);
  });

  it('never answers with an address it could not check: a resolver error, no address, or something that is not an address', async () => {
    const session = new AgentPolicy({ blockedDomains: ['169.254.169.254'] }).session();
    const garbage: Resolver = (_hostname, _options, callback) => callback(null, [{ address: 'not-an-ip', family: 4 }]);
    const empty: Resolver = (_hostname, _options, callback) => callback(null, []);
    const missing = await ask(session.createLookup({ lookup: resolver({}) }), 'nowhere.test');
    expect(missing.error).toMatchObject({ code: 'ENOTFOUND' });
    const none = await ask(session.createLookup({ lookup: empty }), 'empty.test');
    expect(none.error).toMatchObject({ code: 'ENOTFOUND' });
    const bad = await ask(session.createLookup({ lookup: garbage }), 'garbage.test');
    expect(bad.error?.message).toMatch(/could not be checked: the resolver answered .*not an IP address/);
    expect(bad.address).toBe('');
    expect(() => session.createLookup({ lookup: 'dns' as unknown as Resolver })).toThrow(TypeError);
  });

  it('hears a resolver that answers one address as dns.lookup does without all (address, family)', async () => {
    const session = new AgentPolicy({ blockedDomains: ['169.254.169.254'] }).session();
    const single = (address: string): Resolver => ((_hostname: string, _options: unknown, callback: (error: null, address: string, family: number) => void) => callback(null, address, 4)) as unknown as Resolver;
    expect(await ask(session.createLookup({ lookup: single('93.184.216.34') }), 'api.example.com')).toEqual({ error: null, address: '93.184.216.34', family: 4 });
    expect(await ask(session.createLookup({ lookup: single('93.184.216.34') }), 'api.example.com', { all: true })).toMatchObject({ error: null, address: [v4('93.184.216.34')] });
    expect(findPolicyError((await ask(session.createLookup({ lookup: single('169.254.169.254') }), 'metadata.attacker.test')).error)).toBeInstanceOf(PolicyDeniedError);
  });

  it('under mode: shadow, connects and records the deny as the shadow of an allow', async () => {
    const session = AgentPolicy.fromDict({ mode: 'shadow', network: { block: ['169.254.169.254'] } }).session();
    const lookup = session.createLookup({ lookup: resolver({ 'metadata.attacker.test': [[v4('169.254.169.254')]] }) });
    expect(await ask(lookup, 'metadata.attacker.test')).toMatchObject({ error: null, address: '169.254.169.254' });
    expect(session.report().decisions).toHaveLength(1);
    expect(session.report().decisions[0]).toMatchObject({ decision: 'allow', shadow: { decision: 'deny', rule: { section: 'network', list: 'block', address: '169.254.169.254' } } });
  });

  it('follows a live policy: a session of a policy source decides with the policy in force', async () => {
    const source = new PolicySource(new AgentPolicy({}));
    const session = source.session();
    const lookup = session.createLookup({ lookup: resolver({ 'a.test': [[v4('169.254.169.254')]] }) });
    expect((await ask(lookup, 'a.test')).error).toBeNull();
    expect(source.update({ network: { block: ['169.254.169.254'] } }).ok).toBe(true);
    expect(findPolicyError((await ask(lookup, 'a.test')).error)).toBeInstanceOf(PolicyDeniedError);
  });
});

describe('session.lookup in the agents that open real connections (servers on 127.0.0.1)', () => {
  let server: Server;
  let port: number;
  let connections = 0;
  let requests = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      requests++;
      res.writeHead(200, { connection: 'close', 'content-type': 'text/plain' }).end('ok');
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  // A policy under which this server's address is allowed only because the allow-list names it exactly.
  const policy = new AgentPolicy({ allowedDomains: ['app.test', 'rebind.test', '127.0.0.1'], blockedDomains: ['127.0.0.2'] });

  const httpGet = (agent: HttpAgent, host: string): Promise<string> =>
    new Promise((resolve, reject) => {
      get({ host, port, path: '/', agent }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += String(chunk)));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });

  it('node:http: a name resolving to an allowed address connects; one resolving to a blocked address never does', async () => {
    const session = policy.session();
    const lookup = session.createLookup({ lookup: resolver({ 'app.test': [[v4('127.0.0.1')]], 'evil.test': [[v4('127.0.0.2')]] }) });
    const agent = new HttpAgent({ lookup: lookup as never });
    const before = connections;
    expect(await httpGet(agent, 'app.test')).toBe('ok');
    expect(connections - before).toBe(1);
    const refused = await httpGet(agent, 'evil.test').catch((error: unknown) => error);
    expect(findPolicyError(refused)).toBeInstanceOf(PolicyDeniedError);
    expect(connections - before).toBe(1);
    expect(session.report().decisions.map((decision) => decision.rule)).toEqual([{ section: 'network', list: 'block', entry: '127.0.0.2', address: '127.0.0.2' }]);
    agent.destroy();
  });

  it('session.fetch with undici: a name that rebinds to a blocked address on its next lookup is refused then, before connecting', async () => {
    const session = policy.session();
    const resolve = resolver({ 'rebind.test': [[v4('127.0.0.1')], [v4('127.0.0.2')]] });
    const dispatcher = new UndiciAgent({ connect: { lookup: session.createLookup({ lookup: resolve }) as never } });
    const before = { connections, requests };
    const first = await session.fetch(`http://rebind.test:${port}/`, { dispatcher } as RequestInit);
    expect(await first.text()).toBe('ok');
    // The server closed the connection: the next request opens another, and its lookup now answers 127.0.0.2.
    const second = await session.fetch(`http://rebind.test:${port}/`, { dispatcher } as RequestInit).catch((error: unknown) => error);
    expect(second).toBeInstanceOf(TypeError);
    expect(findPolicyError(second)).toBeInstanceOf(PolicyDeniedError);
    expect(resolve.asked).toEqual(['rebind.test', 'rebind.test']);
    expect({ connections: connections - before.connections, requests: requests - before.requests }).toEqual({ connections: 1, requests: 1 });
    // The request was allowed by name, then its connection refused by address: both on record.
    expect(session.report().decisions.map((decision) => [decision.decision, decision.rule.section])).toEqual([
      ['allow', 'default'],
      ['allow', 'default'],
      ['deny', 'network'],
    ]);
    await dispatcher.close();
  });
});

// One of this machine's own non-loopback IPv4 addresses (eth0, say), if it has one.
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((info) => info !== undefined && !info.internal && info.family === 'IPv4')?.address;

describe.skipIf(ownAddress === undefined)("session.lookup and this machine's own interface address (a server listening on all interfaces)", () => {
  let server: Server;
  let port: number;
  let connections = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => res.writeHead(200, { connection: 'close' }).end('ok'));
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const httpGet = (agent: HttpAgent): Promise<string> =>
    new Promise((resolve, reject) => {
      get({ host: 'self.attacker.test', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
      }).on('error', reject);
    });

  it(`a name resolving to ${ownAddress} reaches the server unless "localhost" is blocked; then it never connects`, async () => {
    const table = { 'self.attacker.test': [[v4(ownAddress as string)]] };
    const open = new HttpAgent({ lookup: new AgentPolicy({ blockedDomains: ['evil.example'] }).session().createLookup({ lookup: resolver(table) }) as never });
    const before = connections;
    expect(await httpGet(open)).toBe('200');
    expect(connections - before).toBe(1);
    open.destroy();

    const session = new AgentPolicy({ blockedDomains: ['localhost'] }).session();
    const guarded = new HttpAgent({ lookup: session.createLookup({ lookup: resolver(table) }) as never });
    const refused = await httpGet(guarded).catch((error: unknown) => error);
    expect(findPolicyError(refused)).toBeInstanceOf(PolicyDeniedError);
    expect(connections - before).toBe(1);
    expect(session.report().decisions.map((decision) => decision.rule)).toEqual([{ section: 'network', list: 'block', entry: 'localhost', address: ownAddress }]);
    guarded.destroy();
  });
});

describe('session.lookup answers with what it decided (servers on 127.0.0.1 and on the blocked 127.0.0.2)', () => {
  // One port where 127.0.0.1 refuses connections and 127.0.0.2 (blocked) serves: reaching it is the bypass.
  let blocked: Server;
  let allowed: Server;
  let port: number;
  let reachedBlocked = 0;
  let reachedAllowed = 0;
  const refuses = (host: string, at: number): Promise<boolean> =>
    new Promise((resolve) => {
      const socket = connect(at, host);
      socket.on('connect', () => (socket.destroy(), resolve(false)));
      socket.on('error', () => resolve(true));
    });
  beforeAll(async () => {
    for (;;) {
      blocked = createServer((_req, res) => res.writeHead(200, { connection: 'close' }).end('blocked'));
      blocked.on('connection', () => reachedBlocked++);
      await new Promise<void>((resolve) => blocked.listen(0, '127.0.0.2', resolve));
      port = (blocked.address() as AddressInfo).port;
      if (await refuses('127.0.0.1', port)) break;
      await new Promise<void>((resolve) => blocked.close(() => resolve()));
    }
    reachedBlocked = 0;
    allowed = createServer((_req, res) => res.writeHead(200, { connection: 'close' }).end('ok'));
    allowed.on('connection', () => reachedAllowed++);
    await new Promise<void>((resolve) => allowed.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => blocked.close(() => resolve()));
    await new Promise<void>((resolve) => allowed.close(() => resolve()));
  });

  const policy = new AgentPolicy({ allowedDomains: ['app.test', '127.0.0.1'], blockedDomains: ['127.0.0.2'] });
  const fetchThrough = (agent: HttpAgent, at = port): Promise<string> =>
    new Promise((resolve, reject) => {
      get({ host: 'app.test', port: at, path: '/', agent }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += String(chunk)));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
  const settleSockets = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('an address that reads differently after it was checked (a getter) is connected to as it was checked', async () => {
    const session = policy.session();
    const blockedBefore = reachedBlocked;
    let reads = 0;
    const shifty = {
      get address() {
        return reads++ === 0 ? '127.0.0.1' : '127.0.0.2';
      },
      family: 4,
    };
    const agent = new HttpAgent({ lookup: session.createLookup({ lookup: (_hostname, _options, callback) => callback(null, [shifty as LookupAddress]) }) as never });
    const outcome = await fetchThrough(agent).catch((error: unknown) => error);
    await settleSockets();
    expect(reachedBlocked - blockedBefore).toBe(0);
    // 127.0.0.1 refuses on this port: the connection went where it was decided, and failed there.
    expect(outcome).toMatchObject({ code: 'ECONNREFUSED', address: '127.0.0.1' });
    agent.destroy();
  });

  it('happy eyeballs: a cache that updates its entries in place after answering cannot send a later attempt to a blocked address', async () => {
    const session = policy.session();
    const blockedBefore = reachedBlocked;
    // Two allowed forms of 127.0.0.1; the first refuses, so net tries the second 10 ms later, reading it only then.
    const cached: LookupAddress[] = [v4('127.0.0.1'), v6('::ffff:127.0.0.1')];
    const lookup = session.createLookup({
      lookup: (_hostname, _options, callback) => {
        callback(null, cached);
        // The name is rebound, and the cache refreshes the entries it handed out.
        setImmediate(() => (cached[1]!.address = '::ffff:127.0.0.2'));
      },
    });
    const agent = new HttpAgent({ lookup: lookup as never, autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 10 } as never);
    const outcome = await fetchThrough(agent).catch((error: unknown) => error);
    await settleSockets();
    expect(reachedBlocked - blockedBefore).toBe(0);
    expect(outcome).toBeInstanceOf(Error);
    expect(findPolicyError(outcome)).toBeUndefined();
    agent.destroy();
  });

  it('a resolver that calls back twice is heard once: a refused connection opens none afterwards, an allowed one is not broken', async () => {
    const session = policy.session();
    const allowedPort = (allowed.address() as AddressInfo).port;
    const twice = (first: LookupAddress, second: LookupAddress) =>
      new HttpAgent({
        lookup: session.createLookup({
          lookup: (_hostname, _options, callback) => {
            callback(null, [first]);
            callback(null, [second]);
          },
        }) as never,
      });
    const before = reachedAllowed;
    const refused = await fetchThrough(twice(v4('127.0.0.2'), v4('127.0.0.1')), allowedPort).catch((error: unknown) => error);
    await settleSockets();
    expect(findPolicyError(refused)).toBeInstanceOf(PolicyDeniedError);
    expect(reachedAllowed - before).toBe(0);
    expect(await fetchThrough(twice(v4('127.0.0.1'), v4('127.0.0.2')), allowedPort)).toBe('ok');
    expect(session.report().decisions.map((decision) => decision.decision)).toEqual(['deny']);
  });

  it('answers in the forms dns.lookup does: the family is the address\'s own, a zone id is kept but not decided', async () => {
    const session = new AgentPolicy({ allowedDomains: ['app.test', '127.0.0.1'], blockedDomains: ['127.0.0.2', 'fe80::1'] }).session();
    const answering = (entry: unknown) => session.createLookup({ lookup: (_hostname, _options, callback) => callback(null, [entry as LookupAddress]) });
    const allowedPort = (allowed.address() as AddressInfo).port;
    // A resolver that leaves the family out, gives 0, or gives the other one still connects.
    for (const family of [undefined, 0, 6]) {
      const agent = new HttpAgent({ lookup: answering({ address: '127.0.0.1', family }) as never });
      expect(await fetchThrough(agent, allowedPort), String(family)).toBe('ok');
      agent.destroy();
    }
    expect(await ask(answering({ address: '::FFFF:127.0.0.1', family: 4 }), 'app.test', { all: true })).toMatchObject({ error: null, address: [v6('::FFFF:127.0.0.1')] });
    expect(await ask(answering({ address: 'fe80::2%lo', family: 6 }), 'app.test')).toEqual({ error: null, address: 'fe80::2%lo', family: 6 });
    const zoned = await ask(answering({ address: 'fe80::1%lo', family: 6 }), 'app.test');
    expect((findPolicyError(zoned.error) as PolicyDeniedError).decision.rule).toMatchObject({ section: 'network', list: 'block', entry: 'fe80::1', address: '[fe80::1]' });
    // Forms a URL reads as 127.0.0.1 but a socket does not take are refused, not decided as something else.
    for (const address of ['0177.0.0.1', '127.1', '2130706433']) {
      expect((await ask(answering({ address, family: 4 }), 'app.test')).error?.message, address).toMatch(/which is not an IP address/);
    }
  });
});

describe('replaying a refused connection', () => {
  const tempDir = useTempDirs('agentpolicy-lookup-');

  it('decides the recorded address again under the new policy', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    const log = createAuditLog(path);
    const session: PolicySession = new AgentPolicy({ blockedDomains: ['169.254.169.254'] }).session({ sinks: [log] });
    await ask(session.createLookup({ lookup: resolver({ 'metadata.attacker.test': [[v4('169.254.169.254')]] }) }), 'metadata.attacker.test');
    log.close();
    const unblocked = replayAuditLog(path, new AgentPolicy({ allowedDomains: ['metadata.attacker.test'] }));
    expect(unblocked).toMatchObject({ decisions: 1, changed: 1, transitions: { 'deny → allow': 1 } });
    const still = replayAuditLog(path, new AgentPolicy({ allowedDomains: ['metadata.attacker.test'], blockedDomains: ['169.254.0.0', '169.254.169.254'] }));
    expect(still).toMatchObject({ decisions: 1, changed: 0 });
  });

  it('a connection let through under mode: shadow is decided again as a lookup, by its address alone', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    const log = createAuditLog(path);
    const session = AgentPolicy.fromDict({ mode: 'shadow', network: { block: ['169.254.169.254'] } }).session({ sinks: [log] });
    await ask(session.createLookup({ lookup: resolver({ 'metadata.attacker.test': [[v4('169.254.169.254')]] }) }), 'metadata.attacker.test');
    log.close();
    // An allow-list decides names: enforcing one that names the host still lets its connection through.
    expect(replayAuditLog(path, new AgentPolicy({ allowedDomains: ['metadata.attacker.test'] }))).toMatchObject({ decisions: 1, changed: 0 });
    const enforced = replayAuditLog(path, new AgentPolicy({ blockedDomains: ['169.254.169.254'] }));
    expect(enforced).toMatchObject({ decisions: 1, changed: 1, transitions: { 'allow → deny': 1 } });
    expect(enforced.byRule[0]?.examples[0]?.new.reason).toBe('"metadata.attacker.test" resolves to 169.254.169.254, which network.block entry "169.254.169.254" blocks');
  });
});
