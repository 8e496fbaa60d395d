#!/usr/bin/env bash
# Installs the packages the way users do: packs every package with pnpm (as a release does), checks the tarballs
# (.ci/check-packed.mjs), then installs them into fresh throwaway apps outside the monorepo, with the frameworks at
# the lowest and the highest version of each peer range, and runs the smoke test in each (.ci/pack-smoke/):
#
#   app            package manager  module format                                frameworks
#   esm            npm              ESM JavaScript (.mjs, types stripped)         highest
#   commonjs       npm              CommonJS (require)                            lowest
#   ts-nodenext    pnpm             TypeScript, nodenext + node16 (+ .cts)        highest
#   ts-bundler     yarn 1           TypeScript, bundler resolution                lowest
#
# Each app also runs the CLI through its bin, and the CLI is run with npx from outside any project.
# Needs Node >= 22.12, the packages built, and the npm registry. Usage: bash .ci/pack-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE="$ROOT/.ci/pack-smoke"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentpolicy-pack-smoke.XXXXXX")
[ "${PACK_SMOKE_KEEP:-}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

PNPM_VERSION=$(node -p 'require("./package.json").packageManager.split("@")[1]')
TS_VERSION=$(node -p 'require("./package.json").devDependencies.typescript')
TYPES_NODE_VERSION=$(node -p 'require("./package.json").devDependencies["@types/node"]')
pnpm() { npx -y "pnpm@${PNPM_VERSION}" "$@"; }
yarn1() { npx -y yarn@1 "$@"; }
say() { echo "pack-smoke: $*"; }

say "packing every package with pnpm pack (it rewrites workspace: ranges to real ones)"
# Every package that is published (private ones, such as the test servers, are not).
mapfile -t PUBLIC < <(node -e 'const fs = require("node:fs"); for (const d of fs.readdirSync("packages")) { const m = JSON.parse(fs.readFileSync(`packages/${d}/package.json`, "utf8")); if (!m.private) console.log(m.name); }')
pnpm -r "${PUBLIC[@]/#/--filter=}" pack --pack-destination "$WORK/tarballs" >/dev/null
node .ci/check-packed.mjs "$WORK/tarballs"

# The checks can fail: `npm pack` leaves workspace: ranges, and a tarball without LICENSE and with a relative README
# link must be refused too.
mkdir -p "$WORK/bad/unpacked"
(cd packages/ai-sdk && npm pack --silent --pack-destination "$WORK/bad" >/dev/null)
tar -xzf "$WORK"/tarballs/agentpolicy-core-*.tgz -C "$WORK/bad/unpacked"
rm "$WORK/bad/unpacked/package/LICENSE"
printf '\nSee [the examples](../../examples/).\n' >>"$WORK/bad/unpacked/package/README.md"
tar -czf "$WORK/bad/broken-core.tgz" -C "$WORK/bad/unpacked" package
if node .ci/check-packed.mjs "$WORK/bad" >"$WORK/bad.log" 2>&1; then cat "$WORK/bad.log"; echo "pack-smoke: check-packed passed bad tarballs" >&2; exit 1; fi
for expected in 'peerDependencies.@agentpolicy/core is "workspace:' 'no LICENSE file' 'README link ../../examples/ is relative'; do
  grep -qF "$expected" "$WORK/bad.log" || { cat "$WORK/bad.log"; echo "pack-smoke: check-packed missed: $expected" >&2; exit 1; }
done
say "check-packed refuses npm pack's workspace: range, a missing LICENSE and a relative README link"

TARBALLS=("$WORK"/tarballs/*.tgz)
CORE_TGZ=$(ls "$WORK"/tarballs/agentpolicy-core-*.tgz)

versions=$(node "$SMOKE/framework-versions.mjs")
frameworks() { node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]]; console.log(Object.entries(v).map(([n, x]) => `${n}@${x}`).join(" "))' "$versions" "$1"; }
read -r -a LOW <<<"$(frameworks low)"
read -r -a HIGH <<<"$(frameworks high)"
# Apps that use the AI SDK or LangChain tools have zod (a peer of ai and of LangGraph); the repository's version.
ZOD="zod@$(node -p 'require("./packages/ai-sdk/package.json").devDependencies.zod')"
LOW+=("$ZOD")
HIGH+=("$ZOD")
say "frameworks, lowest: ${LOW[*]}"
say "frameworks, highest: ${HIGH[*]}"

# new_app <name> <module type>: an empty project with the smoke files.
new_app() {
  local app="$WORK/apps/$1"
  mkdir -p "$app"
  printf '{ "name": "smoke-%s", "private": true, "version": "0.0.0", "type": "%s" }\n' "$1" "$2" >"$app/package.json"
  cp "$SMOKE"/policy.yaml "$SMOKE"/invalid-policy.yaml "$app/"
  echo "$app"
}

# The ESM entry and its checks, as plain JavaScript (Node's own type stripping).
to_mjs() {
  node --no-warnings=ExperimentalWarning --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    import { stripTypeScriptTypes } from "node:module";
    const [from, to] = process.argv.slice(1);
    const js = stripTypeScriptTypes(readFileSync(from, "utf8")).replaceAll("./run-smoke.ts", "./run-smoke.mjs");
    writeFileSync(to, js);
  ' "$1" "$2"
}

# cli_checks <app dir>: the bin the install linked, through npx, as a user runs it inside a project.
cli_checks() {
  (
    cd "$1"
    npx --no-install agentpolicy validate policy.yaml
    npx --no-install @agentpolicy/core validate policy.yaml >/dev/null
    if npx --no-install agentpolicy validate invalid-policy.yaml >"$WORK/invalid.out" 2>&1; then
      echo "pack-smoke: an invalid policy validated" >&2
      exit 1
    fi
    grep -q 'tools.alow' "$WORK/invalid.out" || { cat "$WORK/invalid.out"; exit 1; }
  )
}

ts_config() { # ts_config <file> <module> <moduleResolution> <files…>
  local file=$1 module=$2 resolution=$3
  shift 3
  node -e '
    const [file, module, moduleResolution, ...files] = process.argv.slice(1);
    const compilerOptions = { module, moduleResolution, target: "ES2023", lib: ["ES2023", "DOM"], strict: true,
      noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, noEmit: true, allowImportingTsExtensions: true,
      skipLibCheck: true, types: ["node"] };
    require("node:fs").writeFileSync(file, JSON.stringify({ compilerOptions, files }, null, 2));
  ' "$file" "$module" "$resolution" "$@"
}

say "app esm (npm, ESM JavaScript, highest frameworks)"
app=$(new_app esm module)
to_mjs "$SMOKE/smoke.ts" "$app/smoke.mjs"
to_mjs "$SMOKE/run-smoke.ts" "$app/run-smoke.mjs"
cp "$SMOKE/light-entry.mjs" "$app/"
(cd "$app" && npm install --no-audit --no-fund --loglevel=error "${TARBALLS[@]}" "${HIGH[@]}" >/dev/null)
(cd "$app" && node smoke.mjs "esm, npm, highest" && node light-entry.mjs)
cli_checks "$app"

say "app commonjs (npm, require(), lowest frameworks)"
app=$(new_app commonjs commonjs)
cp "$SMOKE/smoke.cjs" "$app/"
to_mjs "$SMOKE/run-smoke.ts" "$app/run-smoke.mjs"
(cd "$app" && npm install --no-audit --no-fund --loglevel=error "${TARBALLS[@]}" "${LOW[@]}" >/dev/null)
(cd "$app" && node smoke.cjs "commonjs, npm, lowest")
cli_checks "$app"

say "app ts-nodenext (pnpm, TypeScript nodenext and node16, highest frameworks)"
app=$(new_app ts-nodenext module)
cp "$SMOKE/smoke.ts" "$SMOKE/run-smoke.ts" "$SMOKE/cjs-check.cts" "$app/"
ts_config "$app/tsconfig.nodenext.json" nodenext nodenext smoke.ts run-smoke.ts cjs-check.cts
ts_config "$app/tsconfig.node16.json" node16 node16 smoke.ts run-smoke.ts cjs-check.cts
(cd "$app" && pnpm add --reporter=silent "${TARBALLS[@]}" "${HIGH[@]}" "typescript@$TS_VERSION" "@types/node@$TYPES_NODE_VERSION")
(cd "$app" && npx --no-install tsc -p tsconfig.nodenext.json && npx --no-install tsc -p tsconfig.node16.json)
(cd "$app" && node smoke.ts "typescript nodenext, pnpm, highest")
cli_checks "$app"

say "app ts-bundler (yarn 1, TypeScript bundler resolution, lowest frameworks)"
app=$(new_app ts-bundler module)
cp "$SMOKE/smoke.ts" "$SMOKE/run-smoke.ts" "$app/"
ts_config "$app/tsconfig.json" preserve bundler smoke.ts run-smoke.ts
tarball_specs=()
for tarball in "${TARBALLS[@]}"; do tarball_specs+=("file:$tarball"); done
# yarn 1 does not dedupe a framework's own dependency against the app's lower version (langchain 1.0.1 gets a
# nested @langchain/langgraph 1.7.3), and warns about that nested copy's peers; the warnings go to a log.
(cd "$app" && yarn1 add --silent --no-progress --non-interactive --cache-folder "$WORK/yarn-cache" \
  "${tarball_specs[@]}" "${LOW[@]}" "typescript@$TS_VERSION" "@types/node@$TYPES_NODE_VERSION" >/dev/null 2>"$WORK/yarn.log") ||
  { cat "$WORK/yarn.log"; exit 1; }
say "yarn: $(grep -c '^warning' "$WORK/yarn.log" || true) peer warnings about framework dependencies (not ours)"
if grep '^warning' "$WORK/yarn.log" | grep -q '@agentpolicy'; then grep '@agentpolicy' "$WORK/yarn.log"; exit 1; fi
(cd "$app" && npx --no-install tsc -p tsconfig.json)
(cd "$app" && node smoke.ts "typescript bundler, yarn 1, lowest")
cli_checks "$app"

say "the CLI through npx, outside any project"
mkdir -p "$WORK/outside" && cp "$SMOKE/policy.yaml" "$WORK/outside/"
(
  cd "$WORK/outside"
  # The two documented forms; from the registry they read `npx @agentpolicy/core …` and
  # `npx -p @agentpolicy/core agentpolicy …`.
  npx -y "file:$CORE_TGZ" validate policy.yaml
  npx -y -p "$CORE_TGZ" agentpolicy --version
)

say "ok"
