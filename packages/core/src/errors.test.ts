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

  it('findPolicyError looks into the attempts a retrying framework gathers, the latest first', async () => {
    const session = new AgentPolicy({ blockedTools: ['x', 'y'] }).session();
    const denial = new PolicyDeniedError(await session.checkTool('x'));
    const older = new PolicyDeniedError(await session.checkTool('y'));
    // The AI SDK's RetryError: the attempts in `errors`, the last one also as `lastError`, no `cause`.
    const retryError = Object.assign(new Error('Failed after 3 attempts. Last error: denied'), { reason: 'errorNotRetryable', lastError: denial, errors: [new Error('HTTP 500'), new Error('HTTP 500'), denial] });
    expect(findPolicyError(retryError)).toBe(denial);
    expect(findPolicyError(new Error('outer', { cause: retryError }))).toBe(denial);
    expect(findPolicyError(new AggregateError([new Error('a'), older, denial], 'all failed'))).toBe(denial);
    expect(findPolicyError(new AggregateError([older, new Error('b')]))).toBe(older);
    // Nothing readable, cycles and a wide tree end the search without a throw.
    const hostile = new Proxy({}, { get: () => { throw new Error('no'); } });
    expect(findPolicyError(hostile)).toBeUndefined();
    const cycle: { errors: unknown[] } = { errors: [] };
    cycle.errors.push(cycle, cycle);
    expect(findPolicyError(cycle)).toBeUndefined();
    expect(findPolicyError({ errors: Array.from({ length: 10_000 }, () => new Error('x')) })).toBeUndefined();
  });

  it('a validation error lists every issue in its message', () => {
    const error = new PolicyValidationError([{ path: 'a', message: 'bad' }, { path: '', message: 'worse' }]);
    expect(error.message).toContain('2 issues');
    expect(error.message).toContain('a: bad');
    expect(error.message).toContain('(top level): worse');
    expect(error.code).toBe('POLICY_INVALID');
  });
});
