import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.ts';

export default defineConfig({ ...packageBuild, format: [...packageBuild.format], entry: ['src/index.ts', 'src/handler.ts', 'src/middleware.ts', 'src/embeddings.ts'] });
