// Checks packed tarballs the way the registry will see them: every manifest range is a real version range (no
// `workspace:`, `catalog:`, `link:` or `file:`), LICENSE is there, repository / homepage / bugs are set, every file
// the exports map, `main`, `types` and `bin` name is in the tarball, and the README has no relative link (dead on
// the registry page), no `#anchor` that none of its headings makes, and no link into this repository's GitHub tree
// to a file the checkout does not have. Run from the repository root.
// Usage: node .ci/check-packed.mjs <dir with .tgz files>
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { anchorsOf, linksOf } from './markdown.mjs';

const dir = process.argv[2];
const rootManifest = JSON.parse(readFileSync('package.json', 'utf8'));
const repoUrl = rootManifest.repository.url.replace(/^git\+/, '').replace(/\.git$/, '');
const problems = [];
const tarballs = readdirSync(dir).filter((name) => name.endsWith('.tgz'));
if (tarballs.length === 0) problems.push(`no tarballs in ${dir}`);

function filesOf(value, out = []) {
  if (typeof value === 'string') out.push(value);
  else if (value && typeof value === 'object') for (const inner of Object.values(value)) filesOf(inner, out);
  return out;
}

for (const tarball of tarballs) {
  const where = mkdtempSync(join(tmpdir(), 'agentpolicy-unpacked-'));
  execFileSync('tar', ['-xzf', join(dir, tarball), '-C', where]);
  const root = join(where, 'package');
  const problem = (message) => problems.push(`${tarball}: ${message}`);
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']) {
    for (const [name, range] of Object.entries(manifest[field] ?? {})) {
      if (/^(workspace|catalog|link|file|portal):/.test(range)) problem(`${field}.${name} is "${range}", which no registry install can resolve`);
    }
  }
  if (!existsSync(join(root, 'LICENSE'))) problem('no LICENSE file');
  else if (!readFileSync(join(root, 'LICENSE'), 'utf8').startsWith('MIT License')) problem('LICENSE is not the MIT license');
  if (manifest.license !== 'MIT') problem(`license is ${JSON.stringify(manifest.license)}, not "MIT"`);
  for (const field of ['repository', 'homepage', 'bugs', 'description', 'engines']) if (!manifest[field]) problem(`no "${field}" field`);

  for (const file of new Set([...filesOf(manifest.exports), ...filesOf(manifest.bin), manifest.main, manifest.types].filter(Boolean))) {
    if (!existsSync(join(root, file))) problem(`${file} is named in the manifest but not in the tarball`);
  }
  for (const [subpath, conditions] of Object.entries(manifest.exports ?? {})) {
    if (typeof conditions !== 'object') continue;
    for (const [condition, target] of Object.entries(conditions)) {
      if (typeof target !== 'object' || Object.keys(target)[0] !== 'types') problem(`exports["${subpath}"].${condition} does not list its own "types" first`);
    }
  }
  for (const file of filesOf(manifest.bin)) {
    if (!readFileSync(join(root, file), 'utf8').startsWith('#!/usr/bin/env node')) problem(`bin ${file} has no node shebang`);
  }

  if (!existsSync(join(root, 'README.md'))) problem('no README.md');
  else {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const anchors = anchorsOf(readme);
    for (const link of linksOf(readme)) {
      if (link.startsWith(`${repoUrl}/`)) {
        const path = /^\/(?:blob|tree)\/main\/([^#?]*)/.exec(link.slice(repoUrl.length))?.[1];
        if (path === undefined) {
          if (!/^\/(issues|pulls|releases)\b/.test(link.slice(repoUrl.length))) problem(`README link ${link} is not a /blob/main/ or /tree/main/ link`);
        } else if (!existsSync(decodeURIComponent(path) || '.')) problem(`README link ${link} names ${path}, which the repository does not have`);
        continue;
      }
      if (/^(https?:|mailto:)/.test(link)) continue;
      if (link.startsWith('#')) {
        if (!anchors.has(decodeURIComponent(link.slice(1)))) problem(`README link ${link} matches no heading`);
      } else problem(`README link ${link} is relative: dead on the registry page (use an absolute URL)`);
    }
  }
}

if (problems.length > 0) {
  console.error(`check-packed: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`check-packed: ${tarballs.length} tarballs ok (${tarballs.join(', ')})`);
