// Prints the lowest and the highest published version of every framework peer range of the packages, as JSON:
// { "low": { "ai": "6.0.0", ... }, "high": { "ai": "7.0.173", ... } }. Versions come from the npm registry.
// "Lowest" is the lowest set that installs together: when a framework's lowest version needs a newer version of
// another (@langchain/langgraph 1.0.0 needs @langchain/core ^1.0.1), or one of its own dependencies, installed at
// the newest version its range allows as every install does, needs one (langchain 1.0.1 depends on
// @langchain/langgraph-checkpoint ^1.0.0, whose newest release needs @langchain/core ^1.1.48), that one is raised to
// the lowest version all of them accept. Raised versions are reported on stderr.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const ranges = new Map();
for (const dir of readdirSync('packages')) {
  const manifest = JSON.parse(readFileSync(`packages/${dir}/package.json`, 'utf8'));
  if (manifest.private) continue;
  for (const [name, range] of Object.entries(manifest.peerDependencies ?? {})) {
    if (name.startsWith('@agentpolicy/')) continue;
    if (ranges.has(name) && ranges.get(name) !== range) throw new Error(`${name}: two peer ranges (${ranges.get(name)}, ${range})`);
    ranges.set(name, range);
  }
}

const parse = (version) => version.split(/[.+-]/).slice(0, 3).map(Number);
const compare = (a, b) => {
  const [x, y] = [parse(a), parse(b)];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
};

const cache = new Map();
const npmView = (spec, field) => {
  const key = `${spec} ${field}`;
  if (!cache.has(key)) cache.set(key, npmViewUncached(spec, field));
  return cache.get(key);
};
const npmViewUncached = (spec, field) => {
  const out = execFileSync('npm', ['view', spec, field, '--json'], { encoding: 'utf8' }).trim();
  return out === '' ? undefined : JSON.parse(out);
};
const versionsOf = (name, range) => [npmView(`${name}@${range}`, 'version') ?? []].flat().filter((version) => !version.includes('-')).sort(compare);

const matching = new Map();
const low = {};
const high = {};
for (const [name, range] of ranges) {
  const versions = versionsOf(name, range);
  if (versions.length === 0) throw new Error(`${name}@${range}: no published version`);
  matching.set(name, versions);
  low[name] = versions[0];
  high[name] = versions.at(-1);
}
for (let changed = true, round = 0; changed && round < 10; round++) {
  changed = false;
  for (const name of ranges.keys()) {
    // Required peers only: an optional peer (langsmith's `openai`) constrains nothing.
    const requiredPeers = (spec) => {
      const optional = npmView(spec, 'peerDependenciesMeta') ?? {};
      return Object.fromEntries(Object.entries(npmView(spec, 'peerDependencies') ?? {}).filter(([peer]) => !optional[peer]?.optional));
    };
    const needs = [[`${name}@${low[name]}`, requiredPeers(`${name}@${low[name]}`)]];
    for (const [dependency, range] of Object.entries(npmView(`${name}@${low[name]}`, 'dependencies') ?? {})) {
      if (ranges.has(dependency)) continue;
      const newest = versionsOf(dependency, range).at(-1);
      if (newest) needs.push([`${dependency}@${newest} (a dependency of ${name}@${low[name]})`, requiredPeers(`${dependency}@${newest}`)]);
    }
    for (const [who, peers] of needs) for (const [peer, peerRange] of Object.entries(peers)) {
      if (!ranges.has(peer) || /^(\*|x|)$/.test(peerRange.trim())) continue;
      const accepted = new Set(versionsOf(peer, peerRange));
      const lowest = matching.get(peer).find((version) => accepted.has(version));
      if (lowest === undefined) throw new Error(`${who} accepts no ${peer} in ${ranges.get(peer)}`);
      if (compare(lowest, low[peer]) > 0) {
        console.error(`framework-versions: lowest ${peer} raised from ${low[peer]} to ${lowest}: ${who} needs ${peer}@${peerRange}`);
        low[peer] = lowest;
        changed = true;
      }
    }
  }
}
console.log(JSON.stringify({ low, high, ranges: Object.fromEntries(ranges) }));
