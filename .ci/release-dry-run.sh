#!/usr/bin/env bash
# The release flow, end to end but without uploading: in a scratch worktree of HEAD, apply the pending changesets
# (`changeset version`), build, then run scripts/release.mjs --dry-run, which packs with pnpm, checks the tarballs
# and `npm publish --dry-run`s them in dependency order. Usage: bash .ci/release-dry-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=$(node -p 'require("./package.json").packageManager.split("@")[1]')
pnpm() { npx -y "pnpm@${PNPM_VERSION}" "$@"; }

COPY="$(mktemp -d "${TMPDIR:-/tmp}/agentpolicy-release.XXXXXX")/repo"
git worktree add --quiet --detach "$COPY" HEAD
trap 'git worktree remove --force "$COPY"' EXIT
cd "$COPY"

pnpm install --frozen-lockfile --prefer-offline --reporter=silent
pnpm exec changeset status
pnpm exec changeset version
echo "release-dry-run: versions after changeset version:"
for manifest in packages/*/package.json; do node -p '(({ name, version }) => `  ${name}@${version}`)(require(process.argv[1]))' "$PWD/$manifest"; done
pnpm --filter './packages/*' -r --reporter=silent build
node scripts/release.mjs --dry-run
