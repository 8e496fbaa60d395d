// Two worker processes share one $1.00 budget on Redis: together they can spend it once, not once each.
// Runs offline: it starts its own redis-server on a free 127.0.0.1 port, or uses REDIS_URL.
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function localRedis(): Promise<{ url: string; server?: ChildProcess } | null> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL };
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) return null;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'shared-budget-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG'; i++) {
    if (i > 200) throw new Error('redis-server did not start');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, server };
}

const redis = await localRedis();
if (redis === null) {
  console.error('shared-budget: redis-server is not installed (apt-get install redis-server / brew install redis), or set REDIS_URL');
  process.exit(process.env.CI === 'true' ? 1 : 0);
}

type Result = { name: string; allowed: number; denied: number; tenantSpent: number };
const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));
try {
  const results = await Promise.all(
    ['worker-a', 'worker-b'].map(
      (name) =>
        new Promise<Result>((resolve, reject) => {
          const child = fork(worker, [redis.url, name], { execArgv: ['--experimental-strip-types', '--no-warnings=ExperimentalWarning'] });
          child.once('message', (message) => resolve(message as Result));
          child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`${name} exited with ${code}`))));
        }),
    ),
  );
  for (const r of results) console.log(`${r.name}: ${r.allowed} calls allowed, ${r.denied} denied`);
  const allowed = results.reduce((sum, r) => sum + r.allowed, 0);
  console.log(`together: ${allowed} × $0.08 = $${(allowed * 0.08).toFixed(2)} of the tenant's $1.00 (one process alone would have allowed 12; two, 24)`);
  if (allowed !== 12) throw new Error(`expected exactly 12 calls allowed across both workers, got ${allowed}`);
} finally {
  redis.server?.kill('SIGKILL');
}
