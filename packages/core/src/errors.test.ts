import { describe, expect, it } from 'vitest';
import { AgentPolicyError, findPolicyError, PolicyDeniedError, PolicyValidationError } from './errors.js';
import { AgentPolicy } from './policy.js';

describe('errors', () => {
  it('isInstance works across copies (a Symbol.for marker), not only instanceof', () => {
    const foreign = Object.assign(new Error('x'), { code: 'ACTION_DENIED', [Symbol.for('agentpolicy.error')]: true });
    expect(AgentPolicyError.isInstance(foreign)).toBe(true);
    expect(PolicyDeniedError.isInstance(foreign)).toBe(true);
    expect(PolicyValidationError.isInstance(foreign)).toBe(false);
    expect(AgentPolicyError.isInstance(new Error('plain'))).toBe(false);
  });

  it('findPolicyError walks the cause chain', async () => {
    const decision = await new AgentPolicy({ blockedTools: ['x'] }).session().checkTool('x');
    const inner = new PolicyDeniedError(decision);
    const wrapped = new Error('framework error', { cause: new Error('middle', { cause: inner }) });
    expect(findPolicyError(wrapped)).toBe(inner);
    expect(findPolicyError(new Error('none'))).toBeUndefined();
    expect(findPolicyError(null)).toBeUndefined();
    const loop: { cause?: unknown } = {};
    loop.cause = loop;
    expect(findPolicyError(loop)).toBeUndefined();
  });

  it('a validation error lists every issue in its message', () => {
    const error = new PolicyValidationError([{ path: 'a', message: 'bad' }, { path: '', message: 'worse' }]);
    expect(error.message).toContain('2 issues');
    expect(error.message).toContain('a: bad');
    expect(error.message).toContain('(top level): worse');
    expect(error.code).toBe('POLICY_INVALID');
  });
});
