import { describe, expect, it } from 'vitest';
import { AgentPolicy } from './policy.js';
import { waitingInputs } from './waiting-inputs.js';

describe('waitingInputs: the input a call waiting for an approval was decided on', () => {
  const policy = AgentPolicy.fromDict({});

  it('is found again only for the same session, call id, tool and arguments as sent, until the call is decided', () => {
    const session = policy.session();
    const call = { id: 'call_1', name: 'send', sent: { to: 'a@x.com' } };
    const decided = { to: 'a@x.com', at: 1_700_000_000 };
    waitingInputs.set(session, call, decided, true);
    expect(waitingInputs.get(session, { ...call, sent: { to: 'a@x.com' } })?.input).toBe(decided);
    expect(waitingInputs.get(session, { ...call, sent: { to: 'b@x.com' } })).toBeUndefined();
    expect(waitingInputs.get(session, { ...call, name: 'other' })).toBeUndefined();
    expect(waitingInputs.get(session, { ...call, id: 'call_2' })).toBeUndefined();
    expect(waitingInputs.get(policy.session(), call)).toBeUndefined();
    waitingInputs.set(session, call, decided, false);
    expect(waitingInputs.get(session, call)).toBeUndefined();
  });

  it('keeps nothing for a call without an id or with arguments it cannot read, and stays bounded', () => {
    const session = policy.session();
    waitingInputs.set(session, { id: undefined, name: 't', sent: {} }, 1, true);
    waitingInputs.set(session, { id: '', name: 't', sent: {} }, 1, true);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    waitingInputs.set(session, { id: 'c', name: 't', sent: cyclic }, 1, true);
    expect(waitingInputs.get(session, { id: 'c', name: 't', sent: cyclic })).toBeUndefined();
    for (let i = 0; i < 1_500; i++) waitingInputs.set(session, { id: `c${i}`, name: 't', sent: '{}' }, i, true);
    expect(waitingInputs.get(session, { id: 'c1499', name: 't', sent: '{}' })?.input).toBe(1_499);
    expect(waitingInputs.get(session, { id: 'c0', name: 't', sent: '{}' })).toBeUndefined();
  });
});
