export { createRedisBudgetStore, RedisBudgetStore, type RedisBudgetStoreOptions } from './redis-budget-store.js';
export type { IoRedisLike, NodeRedisLike, RedisClientLike, RedisStoreOptions } from './redis-client.js';
