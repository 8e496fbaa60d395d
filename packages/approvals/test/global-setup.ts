// One redis-server for the run, started (or taken from REDIS_URL) by packages/redis's own test setup; no cluster.
import { redisGlobalSetup } from '../../redis/test/global-setup.ts';

export default redisGlobalSetup({ cluster: false });
