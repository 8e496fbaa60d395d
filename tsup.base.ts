// What the build of every published package shares (each package's tsup.config.ts spreads it): ESM and CommonJS,
// each with its own types, so `import` and `require` both work under every TypeScript resolution; Node 22.
export const packageBuild = {
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  target: 'node22',
  platform: 'node',
  clean: true,
  sourcemap: true,
} as const;
