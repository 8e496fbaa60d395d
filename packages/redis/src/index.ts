export { createRedisBudgetStore, RedisBudgetStore, type RedisBudgetStoreOptions } from './redis-budget-store.js';
export { createRedisRateLimitStore, RedisRateLimitStore, type RedisRateLimitStoreOptions } from './redis-rate-limit-store.js';
export { createRedisApprovalStore, RedisApprovalStore, type RedisApprovalStoreOptions } from './redis-approval-store.js';
export type { IoRedisLike, NodeRedisLike, RedisClientLike, RedisStoreOptions } from './redis-client.js';
export { createRedisHaltStore, RedisHaltStore } from './redis-halt-store.js';
export { createRedisCallKeyStore, RedisCallKeyStore, type RedisCallKeyStoreOptions } from './redis-call-key-store.js';
