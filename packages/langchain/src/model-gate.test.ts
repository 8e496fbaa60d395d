import { AgentPolicy } from '@agentpolicy/core';
import { describe, expect, it } from 'vitest';
import { isGated, runGated } from './model-gate.js';

describe('model gate', () => {
  it('is shared by every copy of the module (entry points, ESM and CommonJS builds)', async () => {
    // A query string makes Vite load a second, separate instance of the module, as a second bundle would.
    const specifier = './model-gate.js?second-copy';
    const copy = (await import(/* @vite-ignore */ specifier)) as typeof import('./model-gate.js');
    expect(copy.isGated).not.toBe(isGated);
    const session = new AgentPolicy({}).session();
    const other = new AgentPolicy({}).session();
    expect(copy.isGated(session)).toBe(false);
    const seen = await runGated(session, async () => [copy.isGated(session), copy.isGated(other)]);
    expect(seen).toEqual([true, false]);
    expect(await copy.runGated(other, async () => isGated(other))).toBe(true);
    expect(isGated(session)).toBe(false);
  });
});
