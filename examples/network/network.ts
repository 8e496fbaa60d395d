/**
 * agentpolicy network policy against server-side request forgery, offline: an agent that fetches what a page tells it
 * to must never reach the cloud metadata service, a private network or this machine. First the URL forms an attacker
 * can write (decided by `checkHttp`), then a name that resolves to this machine (decided where the connection is
 * opened, by `session.lookup`), against a real "admin" server on 127.0.0.1. Exits non-zero if any outcome is not the
 * expected one.
 */
import type { LookupAddress } from 'node:dns';
import { Agent, createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AgentPolicy, findPolicyError, type PolicyLookupOptions } from '@agentpolicy/core';

const policy = AgentPolicy.fromYaml(fileURLToPath(new URL('./policy.yaml', import.meta.url)));
const session = policy.session();
let failures = 0;
const expect = (label: string, got: string, want: string) => {
  const ok = got === want;
  if (!ok) failures++;
  console.log(`${ok ? ' ' : '✗'} ${label.padEnd(52)} ${got}${ok ? '' : ` (expected ${want})`}`);
};

console.log('URLs, decided by the address they name:');
for (const [url, want] of [
  ['https://docs.python.org/3/', 'allow'],
  ['http://169.254.169.254/latest/meta-data/', 'deny'],
  ['http://0xa9fea9fe/latest/meta-data/', 'deny'],
  ['http://[::ffff:169.254.169.254]/', 'deny'],
  ['http://[64:ff9b::a9fe:a9fe]/ (NAT64)', 'deny'],
  ['http://10.0.3.7:8080/admin', 'deny'],
  ['http://[fd12::7]/', 'deny'],
  ['http://localhost:5432/', 'deny'],
] as const) {
  const decision = await session.checkHttp(url.split(' ')[0] as string);
  const entry = decision.rule.section === 'network' && 'entry' in decision.rule ? ` (${decision.rule.entry})` : '';
  expect(url, `${decision.decision}${entry}`, want === 'allow' ? 'allow' : `deny${entry}`);
}

// An "admin" service listening on this machine, which no agent request should reach.
let connections = 0;
const admin = createServer((_request, response) => response.end('admin secrets'));
admin.on('connection', () => connections++);
await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
const port = (admin.address() as AddressInfo).port;

// The attacker's DNS: a harmless-looking name whose address is this machine. (Offline, a table stands in for DNS;
// without one, session.lookup asks dns.lookup.)
const attackerDns: NonNullable<PolicyLookupOptions['lookup']> = (hostname, _options, callback) =>
  queueMicrotask(() => callback(null, hostname === 'cdn.attacker.example' ? [{ address: '127.0.0.1', family: 4 } satisfies LookupAddress] : []));

const fetchVia = (agent: Agent) =>
  new Promise<string>((resolve, reject) => {
    get({ host: 'cdn.attacker.example', port, path: '/', agent }, (response) => {
      let body = '';
      response.on('data', (chunk) => (body += String(chunk)));
      response.on('end', () => resolve(body));
    }).on('error', reject);
  });

console.log('\nA name that resolves to this machine (the URL check allows the name):');
expect('checkHttp http://cdn.attacker.example/', (await session.checkHttp(`http://cdn.attacker.example:${port}/`)).decision, 'allow');
const unguarded = new Agent({ lookup: attackerDns as never });
expect('without session.lookup, the request reads', await fetchVia(unguarded), 'admin secrets');
unguarded.destroy();
const before = connections;
const guarded = new Agent({ lookup: session.createLookup({ lookup: attackerDns }) as never });
const refused = await fetchVia(guarded).catch((error: unknown) => error);
const denial = findPolicyError(refused);
expect('with session.lookup, the connection is', denial ? 'refused' : `not refused (${String(refused)})`, 'refused');
if (denial) console.log(`    ${denial.message}`);
expect('connections the admin server saw then', String(connections - before), '0');
guarded.destroy();
admin.close();

const report = session.end();
console.log(`\n${report.decisions.length} decisions recorded, ${report.decisions.filter((d) => d.decision === 'deny').length} denied`);
if (failures > 0) {
  console.error(`${failures} outcome(s) not as expected`);
  process.exit(1);
}
