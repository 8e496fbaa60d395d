// agentpolicy benchmark: decision latency, adapter overhead, report cost and memory, with a Set.has floor.
// Usage: pnpm bench                 (full run, writes bench/results/run.tmp.json, which git ignores)
//        BENCH_SAVE=1 pnpm bench    (full run, writes the committed bench/results/latest.json the README quotes)
//        BENCH_QUICK=1 pnpm bench   (a few iterations, only to prove it runs; writes results/quick.tmp.json)
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { join } from 'node:path';
import { AgentPolicy, PolicySource, Replayer, createAuditLog, estimateModelCall, replayAuditLog, splitPromptMedia } from '@agentpolicy/core';

const QUICK = process.env.BENCH_QUICK === '1' || process.argv.includes('--quick');
const SAVE = !QUICK && (process.env.BENCH_SAVE === '1' || process.argv.includes('--save'));
const BATCH = 1000; // operations per timed sample, so sub-microsecond figures sit far above timer resolution
const TIME_MS = QUICK ? 30 : 1500;
const rows = [];
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY, 'i') : undefined;
const gc = globalThis.gc ?? (() => undefined);
const wants = (group) => !ONLY || ONLY.test(group);

const SEED = fileURLToPath(new URL('../examples/quickstart/policy.yaml', import.meta.url));

// Each group runs in a Node process of its own, and this process only gathers what they measured: in one process, the
// heap one group leaves behind (20,000 and 100,000 recorded decisions, a million checks for the memory figure) kept
// the garbage collector busy during the next groups' samples and inflated their figures. A group's process is this
// script with BENCH_ONLY set to that group and BENCH_CHILD_OUT naming the file it writes its results to.
const CHILD_OUT = process.env.BENCH_CHILD_OUT;
const GROUPS = [
  ['seed policy', '^seed policy$'],
  ['observability', '^observability$'],
  ['1,000 tool patterns + 1,000 domains', '^1,000 tool patterns'],
  ['1,000 address ranges', '^1,000 address ranges'],
  ['20 conditional rules + 5 limits', '^20 conditional rules'],
  ['16 KB host (1,000 domains)', '^16 KB host'],
  ['report', '^report$'],
  ['model-call estimate', '^model-call estimate$'],
  ['adapter: AI SDK tool execute', '^adapter: AI SDK'],
  ['adapter: openai chat.completions.create (local server)', '^adapter: openai'],
  ['policy lifecycle', '^policy lifecycle$'],
  ['adapter: MCP tools/call', '^adapter: MCP'],
  ['memory', '^memory$'],
  ['import', '^import$'],
];
if (CHILD_OUT === undefined) {
  const gathered = { rows: [], notes: [], memory: null, importMs: {}, lifecycle: null };
  const scratch = mkdtempSync(join(os.tmpdir(), 'agentpolicy-bench-'));
  try {
    for (const [name, pattern] of GROUPS) {
      if (ONLY && !ONLY.test(name)) continue;
      const out = join(scratch, `${gathered.rows.length}-${Date.now()}.json`);
      execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url)], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, BENCH_ONLY: pattern, BENCH_CHILD_OUT: out },
      });
      const part = JSON.parse(readFileSync(out, 'utf8'));
      // Every process measures the floor; the first one's is kept.
      for (const row of part.rows) if (row.group !== 'floor' || !gathered.rows.some((kept) => kept.group === 'floor')) gathered.rows.push(row);
      gathered.notes.push(...part.notes);
      gathered.memory ??= part.memory;
      Object.assign(gathered.importMs, part.importMs);
      if (part.lifecycle?.replayActionsPerSecond !== null && part.lifecycle !== undefined) gathered.lifecycle = part.lifecycle;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  printAndSave(gathered);
  process.exit(0);
}

/** Runs batched tasks; reports per-operation median and p99 in microseconds. */
async function measure(group, tasks, { batch = BATCH, time = TIME_MS } = {}) {
  if (ONLY && !ONLY.test(group) && group !== 'floor') return;
  gc(); // each group starts from a collected heap, so one group's garbage is not another's pause
  const bench = new Bench({ time, warmupTime: QUICK ? 10 : 300, iterations: QUICK ? 5 : 50 });
  for (const [name, fn] of tasks) bench.add(name, fn);
  await bench.run();
  for (const task of bench.tasks) {
    const result = task.result;
    if (result.state !== 'completed') throw new Error(`${task.name}: ${result.state} ${result.error?.message ?? ''}`);
    rows.push({
      group,
      name: task.name,
      medianUs: (result.latency.p50 * 1000) / batch,
      p99Us: (result.latency.p99 * 1000) / batch,
      samples: result.latency.samplesCount ?? result.totalTime,
    });
  }
}

// ---- floor ---------------------------------------------------------------------------------------------------
const names = new Set(['search_docs', 'read_file', 'send_email']);
let sink = 0;
await measure('floor', [
  ['Set.has (baseline)', () => {
    for (let i = 0; i < BATCH; i++) if (names.has(i & 1 ? 'read_file' : 'delete_prod_db')) sink++;
  }],
]);

// ---- seed policy -----------------------------------------------------------------------------------------------
const seed = AgentPolicy.fromYaml(SEED);
const seedSession = seed.session();
await measure('seed policy', [
  ['evaluate tool allow', () => { for (let i = 0; i < BATCH; i++) seedSession.evaluate({ type: 'tool', name: 'search_docs' }); }],
  ['evaluate tool deny', () => { for (let i = 0; i < BATCH; i++) seedSession.evaluate({ type: 'tool', name: 'delete_prod_db' }); }],
  ['checkTool allow (audit on)', async () => { for (let i = 0; i < BATCH; i++) await seedSession.checkTool('search_docs'); }],
  ['checkTool deny (audit on)', async () => { for (let i = 0; i < BATCH; i++) await seedSession.checkTool('delete_prod_db'); }],
  ['checkHttp allow (audit on)', async () => { for (let i = 0; i < BATCH; i++) await seedSession.checkHttp('https://docs.python.org/3/library/'); }],
  ['checkHttp deny (audit on)', async () => { for (let i = 0; i < BATCH; i++) await seedSession.checkHttp('https://api.twitter.com/2/tweets'); }],
]);
// A session that already holds 20,000 recorded decisions: the retained records are old-generation objects, so this
// shows whether a check still costs the same once the audit trail is full of history.
const fullSession = seed.session({ maxDecisions: 20_000 });
if (wants('seed policy')) for (let i = 0; i < 20_000; i++) await fullSession.checkTool(i % 3 ? 'search_docs' : 'delete_prod_db');
await measure('seed policy', [
  ['checkTool allow after 20,000 decisions', async () => { for (let i = 0; i < BATCH; i++) await fullSession.checkTool('search_docs'); }],
  ['checkTool deny after 20,000 decisions', async () => { for (let i = 0; i < BATCH; i++) await fullSession.checkTool('delete_prod_db'); }],
]);
// A tool call with its input (what the adapters pass): the input is part of the fingerprint, so it is hashed.
const input = { query: 'how do I read a file in python', limit: 10, filters: { lang: 'en', site: 'docs.python.org' } };
await measure('seed policy', [
  ['checkTool allow with input (fingerprinted)', async () => { for (let i = 0; i < BATCH; i++) await seedSession.checkTool('search_docs', { input }); }],
]);
const costSession = AgentPolicy.fromDict({ budget: { max_spend: 1_000_000 } }).session();
await measure('seed policy', [
  ['checkTool with cost (budget reserve+charge)', async () => { for (let i = 0; i < BATCH; i++) await costSession.checkTool('search_docs', { cost: 0.000001 }); }],
]);

// ---- observability: OpenTelemetry without a provider, the audit log sink ------------------------------------------
// The OpenTelemetry API is installed here (core's optional peer) but no provider is registered: the default session
// against one opened with `telemetry: false` is the added cost. The audit sink writes one chained line per decision.
const quiet = seed.session({ telemetry: false, maxDecisions: 10_000 });
const otelNoProvider = seed.session({ maxDecisions: 10_000 });
await measure('observability', [
  ['checkTool allow, telemetry off', async () => { for (let i = 0; i < BATCH; i++) await quiet.checkTool('search_docs'); }],
  ['checkTool allow, OTel API present, no provider', async () => { for (let i = 0; i < BATCH; i++) await otelNoProvider.checkTool('search_docs'); }],
]);
const auditDir = mkdtempSync(join(os.tmpdir(), 'agentpolicy-bench-audit-'));
try {
  const auditLog = createAuditLog(join(auditDir, 'audit.jsonl'), { maxBytes: 16 * 1024 * 1024 });
  const audited = seed.session({ sinks: [auditLog], telemetry: false, maxDecisions: 10_000 });
  await measure('observability', [
    ['checkTool allow, audit log sink', async () => { for (let i = 0; i < BATCH; i++) await audited.checkTool('search_docs'); }],
  ], { time: QUICK ? 30 : 1000 });
  auditLog.close();
} finally {
  rmSync(auditDir, { recursive: true, force: true });
}

// ---- 1,000 patterns ------------------------------------------------------------------------------------------------
const allowTools = [];
const blockTools = [];
for (let i = 0; i < 1000; i++) {
  if (i % 4 === 0) allowTools.push(`mcp__svc${i}__*`);
  else if (i % 4 === 1) blockTools.push(i % 8 === 1 ? `danger_${i}_*` : `drop_table_${i}`);
  else allowTools.push(`tool_${i}`);
}
const allowDomains = [];
const blockDomains = [];
for (let i = 0; i < 1000; i++) {
  if (i % 2 === 0) allowDomains.push(i % 10 === 0 ? `*.api${i}.example.com` : `host${i}.example.org`);
  else blockDomains.push(`bad${i}.example.net`);
}
const large = new AgentPolicy({ allowedTools: allowTools, blockedTools: blockTools, allowedDomains: allowDomains, blockedDomains: blockDomains });
const largeSession = large.session();
const coldNames = Array.from({ length: 10_000 }, (_, i) => (i % 2 ? `mcp__svc${(i % 250) * 4}__op${i}` : `unknown_tool_${i}`));
const coldUrls = Array.from({ length: 10_000 }, (_, i) => `https://h${i}.api${(i % 100) * 10}.example.com/v1`);
let cursor = 0;
await measure('1,000 tool patterns + 1,000 domains', [
  ['checkTool allow (glob)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkTool('mcp__svc400__create'); }],
  ['checkTool allow (exact)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkTool('tool_998'); }],
  ['checkTool deny (block glob)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkTool('danger_9_x'); }],
  ['checkTool, 10k distinct names (memo misses)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkTool(coldNames[cursor++ % coldNames.length]); }],
  ['checkHttp allow (wildcard)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkHttp('https://v2.api500.example.com/x'); }],
  ['checkHttp deny (allow-list miss)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkHttp('https://evil.example.com/'); }],
  ['checkHttp, 10k distinct URLs (memo misses)', async () => { for (let i = 0; i < BATCH; i++) await largeSession.checkHttp(coldUrls[cursor++ % coldUrls.length]); }],
]);

// ---- 1,000 address ranges: IPv4 /8 to /30 and IPv6 /16 to /64 network.block entries, one address of each kind -----
const rangeEntries = [];
for (let i = 0; i < 1000; i++) {
  if (i % 2 === 0) {
    const bits = 8 + (i % 23);
    const value = ((((i * 2654435761) >>> 0) | 0x01000000) >>> (32 - bits)) << (32 - bits) >>> 0;
    rangeEntries.push(`${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}/${bits}`);
  } else rangeEntries.push(`2001:${((i * 7919) & 0xffff).toString(16)}::/32`);
}
const rangesSession = new AgentPolicy({ blockedDomains: rangeEntries }).session();
const blockedInRange = rangeEntries.find((entry) => entry.endsWith('/24') && !entry.includes(':')).replace('.0/24', '.7');
await measure('1,000 address ranges', [
  ['checkHttp deny (IPv4 address in a /24 of 1,000 ranges)', async () => { for (let i = 0; i < BATCH; i++) await rangesSession.checkHttp(`http://${blockedInRange}/`); }],
  ['checkHttp allow (IPv6 address outside 1,000 ranges)', async () => { for (let i = 0; i < BATCH; i++) await rangesSession.checkHttp('http://[2606:4700::1111]/'); }],
]);

// ---- conditional rules and limits, and cedar-wasm deciding the same conditions ---------------------------------
// 20 rules (4 on each of 5 tools, every operator kind) and 5 limits. The checked refund meets its 4 rules (none
// applies) and 3 limits; the worst case puts all 20 rules and 5 limits on one tool. Cedar gets the same conditions
// as forbid policies over the request context (limits have no Cedar counterpart).
const ruleTools = ['refund', 'send_email', 'shell', 'search', 'deploy'];
const ruleSet = (tools) => tools.flatMap((tool) => [
  { deny: `${tool}: too large`, tool, if: { 'input.amount': { gt: 1000 } } },
  { require_approval: `${tool}: other currency`, tool, unless: { 'input.currency': { in: ['USD', 'EUR'] } } },
  { deny: `${tool}: outside mail`, tool, unless: { 'input.to': { glob: '*@ourco.com' } } },
  { deny: `${tool}: flagged`, tool, if: { 'input.reason': { eq: 'test-fraud' } } },
]);
const limitSet = (tool) => [
  { tool: '*', max_calls: 1e9, per: 'session' },
  { tool, max_calls: 1e9, per: '1s' },
  { tool, max_calls: 1e9, per: '1h', scope: 'budget' },
  { tool: 'send_email', max_calls: 5, per: '1m' },
  { tool: 'deploy', max_calls: 1, per: 'session' },
];
const rulesPolicy = AgentPolicy.fromDict({ rules: ruleSet(ruleTools), limits: limitSet('refund') });
const worstPolicy = AgentPolicy.fromDict({
  rules: ruleSet(['refund', 'refund', 'refund', 'refund', 'refund']),
  limits: [{ tool: '*', max_calls: 1e9, per: 'session' }, { tool: 'refund', max_calls: 1e9, per: '1s' }, { tool: 'refund', max_calls: 1e9, per: '1h' }, { tool: 'ref*', max_calls: 1e9, per: 'session', scope: 'budget' }, { tool: 'refund', max_calls: 1e9, per: '1d' }],
});
const refundInput = { amount: 50, currency: 'USD', to: 'a@ourco.com', reason: 'damaged' };
const rulesSession = rulesPolicy.session({ maxDecisions: 10_000 });
const worstSession = worstPolicy.session({ maxDecisions: 10_000 });
const shellSession = rulesPolicy.session({ maxDecisions: 10_000 });
const inputOnlySession = AgentPolicy.fromDict({}).session({ maxDecisions: 10_000 });
const checkRules = await rulesSession.checkTool('refund', { input: refundInput });
if (checkRules.decision !== 'allow') throw new Error(`rules bench: expected allow, got ${checkRules.reason}`);
await measure('20 conditional rules + 5 limits', [
  ['checkTool with the same input, no rules or limits', async () => { for (let i = 0; i < BATCH; i++) await inputOnlySession.checkTool('refund', { input: refundInput }); }],
  ['checkTool with 20 rules + 5 limits (meets 4 rules, 3 limits)', async () => { for (let i = 0; i < BATCH; i++) await rulesSession.checkTool('refund', { input: refundInput }); }],
  ['checkTool with 20 rules + 5 limits, all on the checked tool', async () => { for (let i = 0; i < BATCH; i++) await worstSession.checkTool('refund', { input: refundInput }); }],
  ['checkTool denied by a rule (amount > 1000)', async () => { for (let i = 0; i < BATCH; i++) await shellSession.checkTool('refund', { input: { amount: 5000, currency: 'USD', to: 'a@ourco.com', reason: 'x' } }); }],
  ['evaluate with 20 rules (no limits counted)', () => { for (let i = 0; i < BATCH; i++) rulesSession.evaluate({ type: 'tool', name: 'refund', input: refundInput }); }],
]);
// The rule step alone: what the policy spends deciding the 20 rules for an action already read (no input copy or
// fingerprint, nothing recorded); and the limit step alone: the in-memory store counting the 3 limits refund meets.
const preparedRefund = { type: 'tool', name: 'refund', folded: 'refund', costNanos: 0, input: refundInput };
const { InMemoryRateLimitStore } = await import('@agentpolicy/core');
const limitStore = new InMemoryRateLimitStore();
await measure('20 conditional rules + 5 limits', [
  ['policy.decide: 20 rules, refund meets 4', () => { for (let i = 0; i < BATCH; i++) if (rulesPolicy.decide(preparedRefund, 0, 0, false).decision !== 'allow') sink++; }],
  ['policy.decide: 20 rules, all on refund', () => { for (let i = 0; i < BATCH; i++) if (worstPolicy.decide(preparedRefund, 0, 0, false).decision !== 'allow') sink++; }],
  ['InMemoryRateLimitStore.take × 3 (session, 1s, 1h)', () => {
    for (let i = 0; i < BATCH; i++) {
      limitStore.take('limit:a:session:s', 1e9, null);
      limitStore.take('limit:b:session:s', 1e9, 1000);
      limitStore.take('limit:c:budget:s', 1e9, 3_600_000);
    }
  }],
]);

const cedarNotes = [];
await (async () => {
  const cedar = await import('@cedar-policy/cedar-wasm/nodejs');
  const quote = (text) => JSON.stringify(text);
  const cedarPolicies = ['permit(principal, action, resource);'];
  for (const tool of ruleTools) {
    const on = `forbid(principal, action == Action::"call", resource == Tool::${quote(tool)})`;
    cedarPolicies.push(`${on} when { context has amount && context.amount > 1000 };`);
    cedarPolicies.push(`${on} unless { context has currency && ["USD", "EUR"].contains(context.currency) };`);
    cedarPolicies.push(`${on} unless { context has to && context.to like "*@ourco.com" };`);
    cedarPolicies.push(`${on} when { context has reason && context.reason == "test-fraud" };`);
  }
  const staticPolicies = cedarPolicies.join('\n');
  const prepared = cedar.preparsePolicySet('bench', { staticPolicies });
  if (prepared.type !== 'success') throw new Error(`cedar policy parse: ${JSON.stringify(prepared)}`);
  const request = {
    principal: { type: 'Agent', id: 'a' },
    action: { type: 'Action', id: 'call' },
    resource: { type: 'Tool', id: 'refund' },
    context: refundInput,
    preparsedPolicySetId: 'bench',
    entities: [],
  };
  const answer = cedar.statefulIsAuthorized(request);
  if (answer.type !== 'success' || answer.response.decision !== 'allow') throw new Error(`cedar: expected allow, got ${JSON.stringify(answer)}`);
  const denied = cedar.statefulIsAuthorized({ ...request, context: { ...refundInput, amount: 5000 } });
  if (denied.type !== 'success' || denied.response.decision !== 'deny') throw new Error(`cedar: expected deny, got ${JSON.stringify(denied)}`);
  await measure('20 conditional rules + 5 limits', [
    ['cedar-wasm statefulIsAuthorized, same 20 conditions', () => { for (let i = 0; i < 100; i++) cedar.statefulIsAuthorized(request); }],
  ], { batch: 100 });
})().catch((error) => cedarNotes.push(`cedar-wasm rows skipped: ${error.message}`));
// ---- 16 KB hosts ----------------------------------------------------------------------------------------------------
// 64 distinct hosts in rotation, so no memo can answer: every check parses the URL and matches the host afresh. The
// many-label host is the case that was quadratic when each parent suffix was copied and hashed.
const LONG_BATCH = 20;
const manyLabels = Array.from({ length: 64 }, (_, i) => `https://h${i}.${'a.'.repeat(7_995)}bad1.example.net/`);
const oneLabel = Array.from({ length: 64 }, (_, i) => `https://h${i}${'a'.repeat(16_000)}.example.com/`);
await measure('16 KB host (1,000 domains)', [
  ['checkHttp, 16 KB host of 8,000 labels', async () => { for (let i = 0; i < LONG_BATCH; i++) await largeSession.checkHttp(manyLabels[cursor++ & 63]); }],
  ['checkHttp, 16 KB host of one label', async () => { for (let i = 0; i < LONG_BATCH; i++) await largeSession.checkHttp(oneLabel[cursor++ & 63]); }],
], { batch: LONG_BATCH });

// ---- report() over 100,000 decisions ---------------------------------------------------------------------------
let reportSession = seed.session({ maxDecisions: 100_000 });
if (wants('report')) for (let i = 0; i < 100_000; i++) await reportSession.checkTool(i % 3 ? 'search_docs' : 'delete_prod_db', { cost: i % 5 ? 0 : 0.00001 });
await measure('report', [['report() over 100,000 decisions', () => { sink += reportSession.report().decisions.length; }]], { batch: 1, time: QUICK ? 50 : 1500 });
reportSession = undefined;

// ---- model-call estimate -----------------------------------------------------------------------------------------
// A typical chat request: a system prompt, a few turns, one tool definition, an output limit (and one without).
const chatPrompt = [
  { role: 'system', content: 'You are a helpful assistant that answers questions about the docs.' },
  { role: 'user', content: 'How do I configure the network allow-list?' },
  { role: 'assistant', content: 'Add the hosts under network.allow in the policy file.' },
  { role: 'user', content: 'And subdomains?' },
  { tools: [{ type: 'function', function: { name: 'search_docs', description: 'Search the docs', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }] },
];
const estimatePricing = AgentPolicy.fromDict({}).normalized.pricing;
await estimateModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: chatPrompt }, estimatePricing); // loads the limits catalog once
const modelSession = AgentPolicy.fromDict({ budget: { max_spend: 1_000_000 } }).session({ maxDecisions: 10_000 });
// 100 operations a sample (a sample of 1,000 estimates, about 2 ms, is often cut by the scheduler on a shared machine).
const ESTIMATES = 100;
await measure('model-call estimate', [
  ['estimate: typical chat request (max_tokens set)', () => {
    for (let i = 0; i < ESTIMATES; i++) sink += estimateModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: chatPrompt, maxOutputTokens: 500 }, estimatePricing).nanos;
  }],
  ['estimate: typical chat request (no output limit)', () => {
    for (let i = 0; i < ESTIMATES; i++) sink += estimateModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: chatPrompt }, estimatePricing).nanos;
  }],
  ['estimate: chat request with an image', () => {
    for (let i = 0; i < ESTIMATES; i++) {
      const media = splitPromptMedia([{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'https://x/y.png', detail: 'high' } }] }]);
      sink += estimateModelCall({ model: 'gpt-4o-mini', provider: 'openai', ...media, maxOutputTokens: 500 }, estimatePricing).nanos;
    }
  }],
  ['reserveModelCall + commit(usage)', async () => {
    for (let i = 0; i < ESTIMATES; i++) {
      const reservation = await modelSession.reserveModelCall({ model: 'gpt-4o-mini', provider: 'openai', prompt: chatPrompt, maxOutputTokens: 500 });
      await reservation.commit({ inputTokens: 60, outputTokens: 120 });
    }
  }],
], { batch: ESTIMATES });

// ---- adapters ----------------------------------------------------------------------------------------------------
const adapterNotes = [];
await (async () => {
  const { tool } = await import('ai');
  const { z } = await import('zod');
  const { wrapTools } = await import('@agentpolicy/ai-sdk');
  const session = AgentPolicy.fromDict({ tools: { allow: ['lookup'] } }).session({ maxDecisions: 10_000 });
  const raw = { lookup: tool({ description: 'look up', inputSchema: z.object({ q: z.string() }), execute: async ({ q }) => q.length }) };
  const wrapped = wrapTools(raw, session);
  let id = 0;
  await measure('adapter: AI SDK tool execute', [
    ['raw tool execute', async () => { for (let i = 0; i < BATCH; i++) await raw.lookup.execute({ q: 'x' }, { toolCallId: `c${id++}`, messages: [] }); }],
    ['wrapTools execute', async () => { for (let i = 0; i < BATCH; i++) await wrapped.lookup.execute({ q: 'x' }, { toolCallId: `c${id++}`, messages: [] }); }],
  ]);
})().catch((error) => adapterNotes.push(`AI SDK rows skipped: ${error.message}`));

await (async () => {
  const { default: OpenAI } = await import('openai');
  const { wrapOpenAI } = await import('@agentpolicy/openai');
  const body = JSON.stringify({
    id: 'chatcmpl-1', object: 'chat.completion', created: 0, model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 },
  });
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseURL = `http://127.0.0.1:${server.address().port}/v1`;
  const client = new OpenAI({ apiKey: 'test', baseURL, maxRetries: 0 });
  const session = AgentPolicy.fromDict({ budget: { max_spend: 1_000_000 } }).session({ maxDecisions: 10_000 });
  const governed = wrapOpenAI(client, session);
  const request = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 };
  try {
    await measure('adapter: openai chat.completions.create (local server)', [
      ['raw client', async () => { await client.chat.completions.create(request); }],
      ['wrapOpenAI client', async () => { await governed.chat.completions.create(request); }],
    ], { batch: 1, time: QUICK ? 50 : 2000 });
  } finally {
    server.close();
  }
})().catch((error) => adapterNotes.push(`openai rows skipped: ${error.message}`));

// ---- policy lifecycle: replay an audit log under another policy; checks through a live policy source ------------------
// A recorded log of 10,000 decisions (tools with input, requests, costs, some approved) under the seed policy, replayed
// under a changed one: once from parsed records (the re-decision itself) and once from the file (reading included).
const lifecycle = { replayDecisions: 0, replayActionsPerSecond: null, replayFileActionsPerSecond: null };
if (wants('policy lifecycle')) {
  const dir = mkdtempSync(join(os.tmpdir(), 'agentpolicy-bench-replay-'));
  try {
    const path = join(dir, 'audit.jsonl');
    const log = createAuditLog(path);
    const tools = ['search_docs', 'read_file', 'send_email', 'delete_prod_db', 'shell'];
    const urls = ['https://docs.python.org/3/', 'https://api.github.com/repos/a/b', 'https://api.twitter.com/2/tweets', 'https://example.com/'];
    for (let s = 0; s < 10; s++) {
      const session = seed.session({ id: `bench-${s}`, sinks: [log], telemetry: false });
      for (let i = 0; i < 1000; i++) {
        const k = (i * 7 + s) % 10;
        if (k < 5) await session.checkTool(tools[k], { input: { i }, cost: (i % 4) * 0.0001, approved: i % 5 === 0 });
        else if (k < 9) await session.checkHttp(urls[k - 5], { method: 'GET' });
        else await session.checkCost(0.001, { source: 'model:openai/gpt-4o' });
      }
    }
    log.close();
    const changed = AgentPolicy.fromDict({
      budget: { max_spend: 2 },
      tools: { allow: ['search_docs', 'read_file', 'send_email'], block: ['delete_*'] },
      network: { allow: ['docs.python.org', 'example.com'] },
      approval: { require_for: [{ tool: 'read_file' }, { cost_gt: 0.0002 }] },
    });
    const records = readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
    const decisions = records.filter((record) => record.kind === 'decision').length;
    lifecycle.replayDecisions = decisions;
    await measure('policy lifecycle', [
      ['replay: re-decide one recorded action (parsed records)', () => {
        const replayer = new Replayer(changed);
        for (const record of records) replayer.add(record);
        sink += replayer.report().changed;
      }],
    ], { batch: decisions, time: QUICK ? 30 : 2000 });
    await measure('policy lifecycle', [
      ['replay: one recorded action from the file (read + parse + re-decide)', () => { sink += replayAuditLog(path, changed).changed; }],
    ], { batch: decisions, time: QUICK ? 30 : 2000 });
    const perAction = rows.find((row) => row.name.startsWith('replay: re-decide'))?.medianUs;
    const perFileAction = rows.find((row) => row.name.startsWith('replay: one recorded action from the file'))?.medianUs;
    lifecycle.replayActionsPerSecond = perAction ? Math.round(1e6 / perAction) : null;
    lifecycle.replayFileActionsPerSecond = perFileAction ? Math.round(1e6 / perFileAction) : null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // A session of a live source looks up the current policy and the halts at every check.
  const source = new PolicySource(seed);
  const live = source.session({ telemetry: false, maxDecisions: 10_000 });
  const fixed = seed.session({ telemetry: false, maxDecisions: 10_000 });
  await measure('policy lifecycle', [
    ['checkTool allow, fixed policy', async () => { for (let i = 0; i < BATCH; i++) await fixed.checkTool('search_docs'); }],
    ['checkTool allow, live policy source', async () => { for (let i = 0; i < BATCH; i++) await live.checkTool('search_docs'); }],
  ]);
}

await (async () => {
  const { McpServer } = await import('@modelcontextprotocol/sdk/server/mcp.js');
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const { InMemoryTransport } = await import('@modelcontextprotocol/sdk/inMemory.js');
  const { StreamableHTTPServerTransport } = await import('@modelcontextprotocol/sdk/server/streamableHttp.js');
  const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
  const { z } = await import('zod');
  const { wrapMcpTransport } = await import('@agentpolicy/mcp');
  const makeServer = () => {
    const server = new McpServer({ name: 'bench', version: '1.0.0' });
    server.registerTool('lookup', { inputSchema: { q: z.string() } }, async ({ q }) => ({ content: [{ type: 'text', text: q }] }));
    return server;
  };
  const policy = AgentPolicy.fromDict({ tools: { allow: ['mcp__bench__lookup'] }, budget: { max_spend: 1_000_000 } });
  const session = policy.session({ maxDecisions: 10_000 });
  const options = { server: 'bench', costs: { lookup: 0.000001 } };
  const call = { name: 'lookup', arguments: { q: 'x' } };
  const clients = [];
  const connectPair = async (governed) => {
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await makeServer().connect(serverSide);
    const client = new Client({ name: 'bench', version: '1.0.0' });
    await client.connect(governed ? wrapMcpTransport(clientSide, session, governed === 'free' ? { server: 'bench' } : options) : clientSide);
    clients.push(client);
    return client;
  };
  // The wrapper's own work, without an SDK client or server around it: a transport that answers every call at once.
  const echo = () => {
    const transport = {
      onmessage: undefined,
      start: async () => {},
      close: async () => {},
      send: async (message) => { queueMicrotask(() => transport.onmessage?.({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'ok' }] } })); },
    };
    return transport;
  };
  const roundTrip = async (transport) => {
    let resolve;
    const answered = new Promise((r) => { resolve = r; });
    const previous = transport.onmessage;
    transport.onmessage = resolve;
    await transport.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: call });
    await answered;
    transport.onmessage = previous;
  };
  const rawEcho = echo();
  await rawEcho.start();
  const freeEcho = wrapMcpTransport(echo(), session, { server: 'bench' });
  await freeEcho.start();
  const costEcho = wrapMcpTransport(echo(), session, options);
  await costEcho.start();
  await measure('adapter: MCP tools/call round trip, transport alone', [
    ['raw transport', async () => { for (let i = 0; i < 100; i++) await roundTrip(rawEcho); }],
    ['wrapMcpTransport, no cost', async () => { for (let i = 0; i < 100; i++) await roundTrip(freeEcho); }],
    ['wrapMcpTransport, with a cost', async () => { for (let i = 0; i < 100; i++) await roundTrip(costEcho); }],
  ], { batch: 100 });

  const rawMemory = await connectPair(false);
  const governedMemory = await connectPair(true);
  const freeMemory = await connectPair('free');
  await measure('adapter: MCP tools/call (in-memory transport)', [
    ['raw MCP client (in-memory)', async () => { for (let i = 0; i < 100; i++) await rawMemory.callTool(call); }],
    ['wrapMcpTransport client, no cost (in-memory)', async () => { for (let i = 0; i < 100; i++) await freeMemory.callTool(call); }],
    ['wrapMcpTransport client (in-memory)', async () => { for (let i = 0; i < 100; i++) await governedMemory.callTool(call); }],
  ], { batch: 100 });

  // Streamable HTTP on 127.0.0.1: one server, one MCP session per client.
  const sessions = new Map();
  const http = createServer((request, response) => {
    const id = request.headers['mcp-session-id'];
    let transport = typeof id === 'string' ? sessions.get(id) : undefined;
    const ready = transport
      ? Promise.resolve()
      : (() => {
          transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => crypto.randomUUID(), onsessioninitialized: (sid) => sessions.set(sid, transport) });
          return makeServer().connect(transport);
        })();
    ready.then(() => transport.handleRequest(request, response)).catch(() => response.destroy());
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${http.address().port}/mcp`);
  try {
    const rawHttp = new Client({ name: 'bench', version: '1.0.0' });
    await rawHttp.connect(new StreamableHTTPClientTransport(url));
    const governedHttp = new Client({ name: 'bench', version: '1.0.0' });
    await governedHttp.connect(wrapMcpTransport(new StreamableHTTPClientTransport(url), session, options));
    clients.push(rawHttp, governedHttp);
    await measure('adapter: MCP tools/call (Streamable HTTP, local server)', [
      ['raw MCP client (HTTP)', async () => { await rawHttp.callTool(call); }],
      ['wrapMcpTransport client (HTTP)', async () => { await governedHttp.callTool(call); }],
    ], { batch: 1, time: QUICK ? 50 : 2000 });
  } finally {
    for (const client of clients) await client.close().catch(() => undefined);
    http.closeAllConnections();
    http.close();
  }
})().catch((error) => adapterNotes.push(`MCP rows skipped: ${error.message}`));

// ---- memory ------------------------------------------------------------------------------------------------------
async function heapGrowth(maxDecisions, checks) {
  gc(); gc();
  const before = process.memoryUsage().heapUsed;
  const session = seed.session({ maxDecisions });
  for (let i = 0; i < checks; i++) await session.checkTool(i & 1 ? 'search_docs' : 'delete_prod_db');
  gc(); gc();
  const after = process.memoryUsage().heapUsed;
  sink += session.report().decisionSummary.total;
  return (after - before) / 1024 / 1024;
}
const CHECKS = QUICK ? 20_000 : 1_000_000;
let memory = null;
if (wants('memory')) {
  const bounded = await heapGrowth(10_000, CHECKS);
  const unbounded = await heapGrowth(Infinity, CHECKS);
  memory = { checks: CHECKS, boundedMaxDecisions: 10_000, boundedMB: bounded, unboundedMB: unbounded };
}

// ---- import time -------------------------------------------------------------------------------------------------
// A cold import of each entry point, each in a fresh Node process (median of the runs). The LangChain package is not
// a dependency of the bench: its entries are imported by path, and skipped when it has not been built.
const importMs = {};
if (wants('import')) {
  const runs = QUICK ? 1 : 9;
  const entries = {
    '@agentpolicy/core': '../packages/core/dist/index.js',
    '@agentpolicy/ai-sdk': '../packages/ai-sdk/dist/index.js',
    '@agentpolicy/openai': '../packages/openai/dist/index.js',
    '@agentpolicy/langchain': '../packages/langchain/dist/index.js',
    '@agentpolicy/langchain/handler': '../packages/langchain/dist/handler.js',
  };
  for (const [name, path] of Object.entries(entries)) {
    const url = new URL(path, import.meta.url);
    if (!existsSync(url)) {
      adapterNotes.push(`import time of ${name} skipped: build it first (pnpm build)`);
      continue;
    }
    const samples = [];
    for (let run = 0; run < runs; run++) {
      const script = `const t = performance.now(); await import(${JSON.stringify(url.href)}); console.log(performance.now() - t);`;
      samples.push(Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }).trim()));
    }
    importMs[name] = samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)];
  }
}

// ---- output --------------------------------------------------------------------------------------------------------
const measured = { rows, notes: [...adapterNotes, ...cedarNotes], memory, importMs, lifecycle };
if (CHILD_OUT !== undefined) writeFileSync(CHILD_OUT, JSON.stringify(measured));
if (sink === -1) console.log(sink);

/** Prints the table and the derived figures, and writes the results file. */
function printAndSave({ rows, notes, memory, importMs, lifecycle }) {
  const floor = rows.find((row) => row.group === 'floor').medianUs;
  const targets = {
    'checkTool allow (audit on)': 0.5,
    'checkTool deny (audit on)': 0.5,
    'checkTool allow after 20,000 decisions': 0.5,
    'checkTool deny after 20,000 decisions': 0.5,
    'checkTool allow (glob)': 3,
    'checkTool allow (exact)': 3,
    'checkTool deny (block glob)': 3,
    'checkTool, 10k distinct names (memo misses)': 3,
    'report() over 100,000 decisions': 100_000,
    'checkTool with 20 rules + 5 limits (meets 4 rules, 3 limits)': 1,
    'checkTool with 20 rules + 5 limits, all on the checked tool': 1,
    'policy.decide: 20 rules, refund meets 4': 1,
    'policy.decide: 20 rules, all on refund': 1,
    'estimate: typical chat request (max_tokens set)': 5,
    'estimate: typical chat request (no output limit)': 5,
    'replay: re-decide one recorded action (parsed records)': 2,
  };
  const fmt = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(3)} µs`);
  console.log(`\nagentpolicy bench ${QUICK ? '(quick mode: figures are not meaningful)' : ''}`);
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB\n`);
  console.log('| group | benchmark | median | p99 | × Set.has | target |');
  console.log('|---|---|---:|---:|---:|---|');
  for (const row of rows) {
    const target = targets[row.name];
    const verdict = target === undefined ? '' : `≤ ${fmt(target)} ${row.medianUs <= target ? '✓' : '✗'}`;
    console.log(`| ${row.group} | ${row.name} | ${fmt(row.medianUs)} | ${fmt(row.p99Us)} | ${(row.medianUs / floor).toFixed(0)} | ${verdict} |`);
  }
  const pair = (a, b) => {
    const raw = rows.find((row) => row.name === a);
    const wrapped = rows.find((row) => row.name === b);
    return raw && wrapped ? wrapped.medianUs - raw.medianUs : undefined;
  };
  const toolOverhead = pair('raw tool execute', 'wrapTools execute');
  const otelOverhead = pair('checkTool allow, telemetry off', 'checkTool allow, OTel API present, no provider');
  const auditOverhead = pair('checkTool allow, telemetry off', 'checkTool allow, audit log sink');
  const openaiOverhead = pair('raw client', 'wrapOpenAI client');
  const mcpMemoryOverhead = pair('raw MCP client (in-memory)', 'wrapMcpTransport client (in-memory)');
  const mcpFreeOverhead = pair('raw MCP client (in-memory)', 'wrapMcpTransport client, no cost (in-memory)');
  const mcpGateFree = pair('raw transport', 'wrapMcpTransport, no cost');
  const mcpGateCost = pair('raw transport', 'wrapMcpTransport, with a cost');
  const mcpHttpOverhead = pair('raw MCP client (HTTP)', 'wrapMcpTransport client (HTTP)');
  console.log('');
  if (toolOverhead !== undefined) console.log(`wrapped AI SDK tool overhead: ${fmt(toolOverhead)} per call (target ≤ 2 µs ${toolOverhead <= 2 ? '✓' : '✗'})`);
  if (openaiOverhead !== undefined) console.log(`wrapOpenAI overhead: ${fmt(openaiOverhead)} per request against a local server`);
  if (otelOverhead !== undefined) console.log(`OpenTelemetry API present, no provider: ${fmt(otelOverhead)} added per decision (target ≤ 0.2 µs ${otelOverhead <= 0.2 ? '✓' : '✗'})`);
  if (auditOverhead !== undefined) console.log(`audit log sink: ${fmt(auditOverhead)} added per decision (one chained line, one write)`);
  if (mcpGateFree !== undefined) console.log(`wrapMcpTransport's own work per tools/call: ${fmt(mcpGateFree)} without a cost, ${fmt(mcpGateCost)} with a cost`);
  if (mcpMemoryOverhead !== undefined) console.log(`wrapMcpTransport overhead: ${fmt(mcpFreeOverhead)} per tools/call without a cost, ${fmt(mcpMemoryOverhead)} with a cost (reserved, then settled from the response), over an in-memory transport`);
  if (mcpHttpOverhead !== undefined) console.log(`wrapMcpTransport overhead: ${fmt(mcpHttpOverhead)} per tools/call against a local Streamable HTTP server`);
  if (memory) console.log(`heap growth over ${memory.checks.toLocaleString('en')} checks: ${memory.boundedMB.toFixed(1)} MB with maxDecisions 10,000 (target ≤ 50 MB ${memory.boundedMB <= 50 ? '✓' : '✗'}); ${memory.unboundedMB.toFixed(1)} MB keeping every decision`);
  if (lifecycle && lifecycle.replayActionsPerSecond !== null) {
    console.log(`replay of ${lifecycle.replayDecisions.toLocaleString('en')} recorded decisions: ${lifecycle.replayActionsPerSecond.toLocaleString('en')} actions/s re-decided (goal ≥ 500,000 ${lifecycle.replayActionsPerSecond >= 500_000 ? '✓' : '✗'}); ${lifecycle.replayFileActionsPerSecond?.toLocaleString('en')} actions/s from the file, reading and parsing included`);
  }
  const liveOverhead = pair('checkTool allow, fixed policy', 'checkTool allow, live policy source');
  if (liveOverhead !== undefined) console.log(`live policy source: ${fmt(liveOverhead)} added per check`);

  const ours = rows.find((row) => row.name === 'checkTool with 20 rules + 5 limits (meets 4 rules, 3 limits)');
  const cedarRow = rows.find((row) => row.name === 'cedar-wasm statefulIsAuthorized, same 20 conditions');
  const cedarRatio = ours && cedarRow ? cedarRow.medianUs / ours.medianUs : undefined;
  const inputOnly = rows.find((row) => row.name === 'checkTool with the same input, no rules or limits');
  if (ours && inputOnly) console.log(`20 rules + 5 limits add ${fmt(ours.medianUs - inputOnly.medianUs)} to a checkTool with the same input (${fmt(inputOnly.medianUs)} without them)`);
  if (cedarRatio !== undefined) console.log(`cedar-wasm deciding the same 20 conditions: ${fmt(cedarRow.medianUs)} per decision, ${cedarRatio.toFixed(0)}× checkTool with rules and limits (${fmt(ours.medianUs)})`);
  const decideRow = rows.find((row) => row.name === 'policy.decide: 20 rules, refund meets 4');
  if (cedarRow && decideRow) console.log(`cedar-wasm vs the rule step alone (policy.decide, same conditions): ${(cedarRow.medianUs / decideRow.medianUs).toFixed(0)}×`);
  for (const [name, ms] of Object.entries(importMs)) console.log(`import time (cold, fresh process, median): ${name} ${ms.toFixed(0)} ms`);
  for (const note of notes) console.log(`note: ${note}`);

  const out = {
    date: new Date().toISOString(),
    quick: QUICK,
    machine: { node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30) },
    rows,
    cedarRatio: cedarRatio ?? null,
    overheadUs: { aiSdkTool: toolOverhead ?? null, openaiRequest: openaiOverhead ?? null, otelNoProvider: otelOverhead ?? null, auditSink: auditOverhead ?? null, mcpGate: mcpGateFree ?? null, mcpGateWithCost: mcpGateCost ?? null, mcpCallInMemory: mcpMemoryOverhead ?? null, mcpFreeCallInMemory: mcpFreeOverhead ?? null, mcpCallHttp: mcpHttpOverhead ?? null },
    memory,
    importMs,
    lifecycle,
    notes,
  };
  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}${QUICK ? 'quick.tmp.json' : SAVE ? 'latest.json' : 'run.tmp.json'}`;
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`results: ${file}${SAVE || QUICK ? '' : ' (BENCH_SAVE=1 writes bench/results/latest.json)'}`);
}
