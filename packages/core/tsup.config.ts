import { defineConfig } from 'tsup';

// The library ships twice, as ESM (`dist/index.js`) and CommonJS (`dist/index.cjs`), each with its own types
// (`.d.ts` / `.d.cts`), so `import` and `require` both work under every TypeScript resolution. The CLI is ESM only:
// it is run, never required.
export default defineConfig([
  {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    // `import.meta.url` (used to load the optional @opentelemetry/api) has a CommonJS equivalent in the CJS build.
    shims: true,
    target: 'node22',
    platform: 'node',
    clean: ['index.*'],
    sourcemap: true,
  },
  {
    entry: ['src/cli.ts'],
    format: ['esm'],
    dts: false,
    target: 'node22',
    platform: 'node',
    clean: ['cli.*'],
    sourcemap: true,
  },
]);
