#!/usr/bin/env node
import { main } from './run-cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`agentpolicy: ${(error as Error)?.message ?? String(error)}\n`);
    process.exitCode = 2;
  },
);
