// The policy tests of this example through the API, from node:test (vitest works the same way).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatCaseFailure, loadPolicyTests } from '@agentpolicy/core';

const suite = loadPolicyTests(new URL('./policy.test.yaml', import.meta.url).pathname);

for (const policyCase of suite.cases) {
  test(policyCase.name, async () => {
    const result = await policyCase.run();
    assert.ok(result.ok, formatCaseFailure(result).join('\n'));
  });
}
