#!/usr/bin/env node
// The `agentpolicy` command. This file is committed (not built) so that installing the package can always link the
// bin, even in a checkout that has not been built yet; the CLI itself is dist/cli.js.
await import('../dist/cli.js');
