// @agentpolicy/redis benchmark: a shared-budget check against a bare PING on the same connection, and checks per
// second from 8 processes. Starts its own redis-server on a free 127.0.0.1 port (or uses REDIS_URL).
// Usage: pnpm --filter @agentpolicy/redis bench      (run by the root `pnpm bench` too; BENCH_QUICK=1 for a short run)
import { fork, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { AgentPolicy } from '@agentpolicy/core';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { createRedisBudgetStore } from '../dist/index.js';

const QUICK = process.env.BENCH_QUICK === '1';
const WORKERS = 8;

async function connect(kind, url) {
  if (kind === 'ioredis') {
    const client = new Redis(url, { enableOfflineQueue: false });
    await new Promise((resolve, reject) => { client.once('ready', resolve); client.once('error', reject); });
    return { client, ping: () => client.ping(), close: () => client.disconnect() };
  }
  const client = createClient({ url, disableOfflineQueue: true });
  await client.connect();
  return { client, ping: () => client.ping(), close: () => client.destroy() };
}

// ---- worker mode: run checks with `inFlight` concurrent, for `ms`, report the count --------------------------------
if (process.argv[2] === 'worker') {
  const [, , , kind, url, budgetKey, msText, inFlightText] = process.argv;
  const handle = await connect(kind, url);
  const session = new AgentPolicy({ budget: 1_000_000 }).session({ store: createRedisBudgetStore({ client: handle.client }), budgetKey, maxDecisions: 0 });
  process.send({ ready: true });
  process.once('message', async () => {
    const until = performance.now() + Number(msText);
    let checks = 0;
    let denied = 0;
    const lane = async () => {
      while (performance.now() < until) {
        const decision = await session.checkCost(0.000001, { source: 'bench' });
        checks++;
        if (decision.decision !== 'allow') denied++;
      }
    };
    await Promise.all(Array.from({ length: Number(inFlightText) }, lane));
    process.send({ checks, denied });
    handle.close();
    process.exit(0);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: () => undefined };
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) return null;
  const port = await freePort();
  const dir = mkdtempSync(join(os.tmpdir(), 'agentpolicy-bench-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG'; i++) {
    if (i > 200) throw new Error('redis-server did not start');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

// One operation at a time, PING and check alternating on the same connection, so both see the same machine state.
async function latency(kind, url) {
  const handle = await connect(kind, url);
  const session = new AgentPolicy({ budget: 1_000_000 }).session({ store: createRedisBudgetStore({ client: handle.client }), budgetKey: `bench:latency:${kind}`, maxDecisions: 0 });
  const rounds = QUICK ? 500 : 20_000;
  const ping = [];
  const check = [];
  for (let i = 0; i < rounds + 200; i++) {
    let start = performance.now();
    await handle.ping();
    const p = performance.now() - start;
    start = performance.now();
    const decision = await session.checkCost(0.000001, { source: 'bench' });
    const c = performance.now() - start;
    if (decision.decision !== 'allow') throw new Error(`bench check not allowed: ${decision.reason}`);
    if (i >= 200) {
      ping.push(p);
      check.push(c);
    }
  }
  handle.close();
  ping.sort((a, b) => a - b);
  check.sort((a, b) => a - b);
  return { pingP50: quantile(ping, 0.5) * 1000, checkP50: quantile(check, 0.5) * 1000, checkP99: quantile(check, 0.99) * 1000, pingP99: quantile(ping, 0.99) * 1000 };
}

async function throughput(kind, url) {
  const ms = QUICK ? 500 : 5000;
  const budgetKey = `bench:throughput:${kind}:${Date.now()}`;
  const script = fileURLToPath(import.meta.url);
  const workers = Array.from({ length: WORKERS }, () => fork(script, ['worker', kind, url, budgetKey, String(ms), '32'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
  const results = Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
  const start = performance.now();
  for (const worker of workers) worker.send('go');
  const done = await results;
  const seconds = (performance.now() - start) / 1000;
  const checks = done.reduce((sum, r) => sum + r.checks, 0);
  if (done.some((r) => r.denied > 0)) throw new Error('a throughput check was denied');
  return { checks, seconds, perSecond: checks / seconds };
}

async function main() {
  const redis = await startRedis();
  if (redis === null) {
    const message = 'redis bench: redis-server is not installed; skipped (apt-get install redis-server / brew install redis)';
    if (process.env.CI === 'true') throw new Error(message);
    console.log(message);
    return;
  }
  try {
    const rows = [];
    for (const kind of ['node-redis', 'ioredis']) {
      const lat = await latency(kind, redis.url);
      const tput = await throughput(kind, redis.url);
      rows.push({ client: kind, ...lat, ratioP50: lat.checkP50 / lat.pingP50, checksPerSecond8Processes: tput.perSecond });
    }
    const fmt = (us) => `${us.toFixed(0)} µs`;
    console.log(`\n@agentpolicy/redis bench ${QUICK ? '(quick mode: figures are not meaningful)' : ''}`);
    console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}; redis-server on 127.0.0.1\n`);
    console.log('| client | PING p50 | check p50 | check p99 | check p50 ÷ PING p50 (goal ≤ 1.5) | checks/s, 8 processes (goal ≥ 20,000) |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const row of rows) {
      console.log(`| ${row.client} | ${fmt(row.pingP50)} | ${fmt(row.checkP50)} | ${fmt(row.checkP99)} | ${row.ratioP50.toFixed(2)} | ${Math.round(row.checksPerSecond8Processes).toLocaleString('en')} |`);
    }
    const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, QUICK ? 'redis-quick.tmp.json' : 'redis-latest.json'), `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, rows }, null, 2)}\n`);
  } finally {
    redis.stop();
  }
}

if (process.argv[2] !== 'worker') await main();
