import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.ts';

export default defineConfig({ ...packageBuild, format: [...packageBuild.format], entry: [...packageBuild.entry] });
