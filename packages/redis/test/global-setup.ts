// Vitest global setup: one redis-server and one 3-node cluster for the whole run, stopped at the end. REDIS_URL (and
// REDIS_CLUSTER_NODES, comma-separated host:port) use servers of your own instead. Without redis-server the Redis
// suites are skipped loudly, except under CI=true, where that is a failure. Other packages' suites that need a real
// Redis use the same setup through `redisGlobalSetup` (packages/approvals, without the cluster).
import type { TestProject } from 'vitest/node';
import { freePort, haveRedisServer, startCluster, startRedis } from './redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string | null;
    clusterNodes: string[] | null;
    redisServer: boolean;
  }
}

/** A vitest global setup that starts redis-server (and, with `cluster`, a 3-node cluster) and provides their addresses. */
export function redisGlobalSetup(options: { cluster: boolean }): (project: TestProject) => Promise<() => Promise<void>> {
  return (project) => setup(project, options.cluster);
}

export default redisGlobalSetup({ cluster: true });

async function setup(project: TestProject, withCluster: boolean): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  const server = haveRedisServer();
  let redisUrl = process.env.REDIS_URL ?? null;
  let clusterNodes = process.env.REDIS_CLUSTER_NODES ? process.env.REDIS_CLUSTER_NODES.split(',') : null;
  if (!server && (redisUrl === null || (withCluster && clusterNodes === null))) {
    const message = 'redis-server is not installed: the Redis suites are SKIPPED (apt-get install redis-server / brew install redis)';
    if (process.env.CI === 'true') throw new Error(`${message}; under CI=true that is a failure`);
    console.warn(`\n${'!'.repeat(100)}\n!! ${message}\n${'!'.repeat(100)}\n`);
  }
  if (redisUrl === null && server) {
    const single = await startRedis(await freePort());
    stops.push(single.stop);
    redisUrl = single.url;
  }
  if (withCluster && clusterNodes === null && server) {
    const cluster = await startCluster();
    stops.push(cluster.stop);
    clusterNodes = cluster.nodes.map((node) => `127.0.0.1:${node.port}`);
  }
  project.provide('redisUrl', redisUrl);
  project.provide('clusterNodes', clusterNodes);
  project.provide('redisServer', server);
  return async () => {
    await Promise.all(stops.map((stop) => stop()));
  };
}
