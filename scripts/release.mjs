// Publishes the packages whose version is not on the registry yet, in dependency order (core before the adapters),
// from tarballs made by `pnpm pack` — which turns every `workspace:` range into the real version range — after
// .ci/check-packed.mjs has checked them. Then tags the release with `changeset tag`.
//
// Usage (from the repository root, packages built, versions set by `pnpm version-packages`):
//   node scripts/release.mjs              publish (needs npm credentials)
//   node scripts/release.mjs --dry-run    everything but the upload and the tags (CI runs this)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dryRun = process.argv.includes('--dry-run');
const pnpmVersion = JSON.parse(readFileSync('package.json', 'utf8')).packageManager.split('@')[1];
const run = (command, args, options = {}) => execFileSync(command, args, { stdio: 'inherit', ...options });
const pnpm = (args, options) => run('npx', ['-y', `pnpm@${pnpmVersion}`, ...args], options);

const packages = readdirSync('packages')
  .map((dir) => ({ dir: join('packages', dir), manifest: JSON.parse(readFileSync(join('packages', dir, 'package.json'), 'utf8')) }))
  .filter(({ manifest }) => !manifest.private);
const byName = new Map(packages.map((pkg) => [pkg.manifest.name, pkg]));
const siblingsOf = ({ manifest }) =>
  [...new Set(['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((field) => Object.keys(manifest[field] ?? {})))].filter((name) => byName.has(name));

// Dependency order: a package comes after every sibling it depends on (a cycle is an error).
const ordered = [];
const state = new Map();
const visit = (pkg, path) => {
  if (state.get(pkg) === 'done') return;
  if (state.get(pkg) === 'visiting') throw new Error(`release: dependency cycle ${[...path, pkg.manifest.name].join(' → ')}`);
  state.set(pkg, 'visiting');
  for (const name of siblingsOf(pkg)) visit(byName.get(name), [...path, pkg.manifest.name]);
  state.set(pkg, 'done');
  ordered.push(pkg);
};
for (const pkg of packages) visit(pkg, []);

const published = (name, version) => {
  try {
    return execFileSync('npm', ['view', `${name}@${version}`, 'version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() === version;
  } catch {
    return false; // E404: the package or this version is not on the registry
  }
};
const pending = ordered.filter(({ manifest }) => !published(manifest.name, manifest.version));
console.log(`release: order ${ordered.map(({ manifest }) => `${manifest.name}@${manifest.version}`).join(' → ')}`);
if (pending.length === 0) {
  console.log('release: every version is already on the registry; nothing to publish');
  process.exit(0);
}

const out = mkdtempSync(join(tmpdir(), 'agentpolicy-release-'));
try {
  for (const { dir } of pending) pnpm(['pack', '--pack-destination', out], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  run('node', ['.ci/check-packed.mjs', out]);

  const tarballs = readdirSync(out);
  const tarballOf = ({ manifest }) => {
    const file = `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`;
    if (!tarballs.includes(file)) throw new Error(`release: pnpm pack made no ${file}`);
    return join(out, file);
  };
  // Every range on a sibling must accept the version of it being released (or already on the registry).
  for (const pkg of pending) {
    const packed = JSON.parse(execFileSync('tar', ['-xzOf', tarballOf(pkg), 'package/package.json'], { encoding: 'utf8' }));
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
      for (const [name, range] of Object.entries(packed[field] ?? {})) {
        const sibling = byName.get(name);
        if (sibling && !new RegExp(`^[\\^~]?${sibling.manifest.version.replaceAll('.', '\\.')}$`).test(range)) {
          throw new Error(`release: ${pkg.manifest.name} ${field}.${name} is "${range}", not a range on ${name}@${sibling.manifest.version}`);
        }
      }
    }
  }

  for (const pkg of pending) {
    console.log(`release: ${dryRun ? 'would publish' : 'publishing'} ${pkg.manifest.name}@${pkg.manifest.version}`);
    run('npm', ['publish', tarballOf(pkg), '--access', 'public', '--loglevel=warn', ...(dryRun ? ['--dry-run'] : [])], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  if (!dryRun) run('npx', ['changeset', 'tag']);
  console.log(`release: ${dryRun ? 'dry run ok' : 'published'}: ${pending.map(({ manifest }) => `${manifest.name}@${manifest.version}`).join(', ')}`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
