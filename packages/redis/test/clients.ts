// The clients the suites run against: node-redis 6 and 5, ioredis 6 and 5, each on one node and on the cluster.
import { Cluster as IoCluster6, Redis as IoRedis6 } from 'ioredis';
import { Cluster as IoCluster5, Redis as IoRedis5 } from 'ioredis-v5';
import { createClient as createClient6, createCluster as createCluster6 } from 'redis';
import { createClient as createClient5, createCluster as createCluster5 } from 'redis-v5';
import { afterAll } from 'vitest';
import type { RedisClientLike } from '../src/index.js';

export interface ClientHandle {
  readonly client: RedisClientLike;
  ping(): Promise<unknown>;
  close(): Promise<void>;
}

export type ClientKind = 'node-redis@6' | 'node-redis@5' | 'ioredis@6' | 'ioredis@5';
export const CLIENT_KINDS: readonly ClientKind[] = ['node-redis@6', 'node-redis@5', 'ioredis@6', 'ioredis@5'];

const hostPort = (node: string) => {
  const [host, port] = node.replace(/^redis:\/\//, '').split(':');
  return { host: host!, port: Number(port) };
};

function waitReady(client: { status: string; once(event: string, fn: (...args: unknown[]) => void): unknown }): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    client.once('ready', () => resolve());
    client.once('error', (error) => reject(error as Error));
  });
}

/** Connects one client of `kind` to a single node (`url`) or to the cluster (`nodes`). */
export async function connect(kind: ClientKind, target: { url: string } | { nodes: string[] }): Promise<ClientHandle> {
  const reconnect = { reconnectStrategy: () => 100 };
  if (kind === 'node-redis@6' || kind === 'node-redis@5') {
    // The two majors' factories have the same call shape; their generic types just do not unify.
    const createClient = (kind === 'node-redis@6' ? createClient6 : createClient5) as typeof createClient6;
    const createCluster = (kind === 'node-redis@6' ? createCluster6 : createCluster5) as typeof createCluster6;
    if ('url' in target) {
      const client = createClient({ url: target.url, socket: reconnect, disableOfflineQueue: true });
      client.on('error', () => undefined);
      await client.connect();
      return { client: client as unknown as RedisClientLike, ping: () => client.ping(), close: async () => void client.destroy() };
    }
    const cluster = createCluster({ rootNodes: target.nodes.map((node) => ({ url: `redis://${node}` })), defaults: { socket: reconnect, disableOfflineQueue: true } });
    cluster.on('error', () => undefined);
    await cluster.connect();
    return { client: cluster as unknown as RedisClientLike, ping: () => cluster.sendCommand(undefined, true, ['PING']), close: async () => void cluster.destroy() };
  }
  const Redis = (kind === 'ioredis@6' ? IoRedis6 : IoRedis5) as typeof IoRedis6;
  const Cluster = (kind === 'ioredis@6' ? IoCluster6 : IoCluster5) as typeof IoCluster6;
  if ('url' in target) {
    const client = new Redis(target.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 100 });
    client.on('error', () => undefined);
    await waitReady(client as never);
    return { client: client as unknown as RedisClientLike, ping: () => client.ping(), close: async () => void client.disconnect() };
  }
  const cluster = new Cluster(target.nodes.map(hostPort), { enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 1 } });
  cluster.on('error', () => undefined);
  await waitReady(cluster as never);
  return { client: cluster as unknown as RedisClientLike, ping: () => cluster.ping(), close: async () => void cluster.disconnect() };
}

/** Connects clients for one test file: each is closed once the file's tests are done. */
export function clientsClosedAfterAll(): (kind: ClientKind, target: { url: string } | { nodes: string[] }) => Promise<ClientHandle> {
  const handles: ClientHandle[] = [];
  afterAll(async () => {
    await Promise.all(handles.map((handle) => handle.close()));
  });
  return async (kind, target) => {
    const handle = await connect(kind, target);
    handles.push(handle);
    return handle;
  };
}
