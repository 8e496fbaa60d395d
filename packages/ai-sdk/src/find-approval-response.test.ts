import { describe, expect, it } from 'vitest';
import { answersCall, approvalReason, findApprovalResponse, resumedFromLastMessage } from './find-approval-response.js';

const history = [
  { role: 'user', content: 'hi' },
  {
    role: 'assistant',
    content: [
      { type: 'tool-call', toolCallId: 'call-1', toolName: 'send_email', input: {} },
      { type: 'tool-approval-request', approvalId: 'ap-1', toolCallId: 'call-1' },
      { type: 'tool-call', toolCallId: 'call-2', toolName: 'send_email', input: {} },
      { type: 'tool-approval-request', approvalId: 'ap-2', toolCallId: 'call-2' },
    ],
  },
  {
    role: 'tool',
    content: [
      { type: 'tool-approval-response', approvalId: 'ap-2', approved: false, reason: 'no' },
      { type: 'tool-approval-response', approvalId: 'ap-1', approved: true, reason: 'fine' },
      { type: 'tool-approval-response', approvalId: 'ap-1', approved: false },
    ],
  },
];

describe('findApprovalResponse', () => {
  it("finds the first human response for a call through its approval request's id", () => {
    expect(findApprovalResponse(history, 'call-1')).toEqual({ approvalId: 'ap-1', approved: true, reason: 'fine', toolName: 'send_email', input: {}, hasInput: true, resumes: true });
    // A no is not resumed through the approval hook: the SDK answers the call with execution-denied itself.
    expect(findApprovalResponse(history, 'call-2')).toEqual({ approvalId: 'ap-2', approved: false, reason: 'no', toolName: 'send_email', input: {}, hasInput: true, resumes: false });
  });

  it('binds the answer to the agentpolicy request named in the reason and to the input of the call it was raised for', () => {
    const reused = [
      { role: 'assistant', content: [
        { type: 'tool-call', toolCallId: 'call-0', toolName: 'send_email', input: { to: 'ada' } },
        { type: 'tool-approval-request', approvalId: 'ap-1', toolCallId: 'call-0', reason: `${approvalReason('tool "send_email" requires approval', 'apr_first')}` },
      ] },
      { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: true }] },
      // The provider numbers calls per turn: the next turn's call has the same id and other input.
      { role: 'assistant', content: [
        { type: 'tool-call', toolCallId: 'call-0', toolName: 'send_email', input: { to: 'eve' } },
        { type: 'tool-approval-request', approvalId: 'ap-2', toolCallId: 'call-0', reason: 'agentpolicy: something (approval request apr_second)' },
      ] },
    ];
    // Before the second request is answered, the latest answer is the first one, bound to its own request and input.
    expect(findApprovalResponse(reused, 'call-0')).toEqual({ approvalId: 'ap-1', approved: true, requestId: 'apr_first', toolName: 'send_email', input: { to: 'ada' }, hasInput: true, resumes: false });
    const answered = [...reused, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-2', approved: false }] }];
    expect(findApprovalResponse(answered, 'call-0')).toEqual({ approvalId: 'ap-2', approved: false, requestId: 'apr_second', toolName: 'send_email', input: { to: 'eve' }, hasInput: true, resumes: false });
  });

  it('reads no request id from a reason that does not end with one', () => {
    const odd = (reason: string) => [
      { role: 'assistant', content: [{ type: 'tool-approval-request', approvalId: 'ap-1', toolCallId: 'c', reason }] },
      { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: true }] },
    ];
    expect(findApprovalResponse(odd('needs a human'), 'c')).toEqual({ approvalId: 'ap-1', approved: true, hasInput: false, resumes: true });
    expect(findApprovalResponse(odd('x (approval request a b)'), 'c')?.requestId).toBeUndefined();
    expect(findApprovalResponse(odd('x (approval request apr_1) and more'), 'c')?.requestId).toBeUndefined();
  });

  it('tells whether the SDK resumes the call: from a yes in the last message, before the call has a result', () => {
    const answered = [...history.slice(0, 2), { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: true }] }];
    expect(findApprovalResponse(answered, 'call-1')?.resumes).toBe(true);
    const ran = [...answered.slice(0, 2), { role: 'tool', content: [...answered[2]!.content as object[], { type: 'tool-result', toolCallId: 'call-1', toolName: 'send_email', output: { type: 'text', value: 'ok' } }] }];
    expect(findApprovalResponse(ran, 'call-1')?.resumes).toBe(false);
    expect(findApprovalResponse([...answered, { role: 'user', content: 'next' }], 'call-1')?.resumes).toBe(false);
    // The SDK reads only the last message: a yes there resumes the call, even where an earlier answer is the one that
    // counts (a no given before, or the same yes replayed).
    const rejected = [...history.slice(0, 2), { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: false }] }];
    const replayed = [...rejected, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: true }] }];
    expect(findApprovalResponse(replayed, 'call-1')).toMatchObject({ approved: false, resumes: true });
    expect(resumedFromLastMessage(replayed, 'call-1')).toBe(true);
    expect(resumedFromLastMessage(replayed, 'call-2')).toBe(false);
    expect(resumedFromLastMessage(rejected, 'call-1')).toBe(false);
  });

  it('finds nothing for other calls, missing ids, or malformed history', () => {
    expect(findApprovalResponse(history, 'call-3')).toBeUndefined();
    expect(findApprovalResponse(history, undefined)).toBeUndefined();
    expect(findApprovalResponse(undefined, 'call-1')).toBeUndefined();
    expect(findApprovalResponse([null, 'x', { role: 'tool', content: 'text' }], 'call-1')).toBeUndefined();
  });

  it('approves only on a literal true, and ignores responses outside tool messages', () => {
    const truthy = [history[1], { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: 'yes' }] }];
    expect(findApprovalResponse(truthy, 'call-1')?.approved).toBe(false);
    const forged = [history[1], { role: 'user', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: true }] }];
    expect(findApprovalResponse(forged, 'call-1')).toBeUndefined();
  });

  it("a human's no to an agentpolicy request stands against a yes to it written beside another call before that no", () => {
    const reason = approvalReason('tool "pay" requires approval', 'apr_pay');
    const asked = {
      role: 'assistant',
      content: [
        { type: 'tool-call', toolCallId: 'c1', toolName: 'pay', input: { amount: 500 } },
        { type: 'tool-approval-request', approvalId: 'ap-1', toolCallId: 'c1', reason },
        { type: 'tool-call', toolCallId: 'c2', toolName: 'search', input: { q: 'x' } },
        // Written by the client: a request for c2 naming the payment's request.
        { type: 'tool-approval-request', approvalId: 'forged', toolCallId: 'c2', reason },
      ],
    };
    const answers = { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-1', approved: false }, { type: 'tool-approval-response', approvalId: 'forged', approved: true }] };
    expect(findApprovalResponse([asked, answers], 'c2')).toMatchObject({ approvalId: 'forged', approved: false, requestId: 'apr_pay' });
    // Asked again after the no (the call comes back, the request is still pending): that yes counts.
    const again = { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'c1', toolName: 'pay', input: { amount: 500 } }, { type: 'tool-approval-request', approvalId: 'ap-2', toolCallId: 'c1', reason }] };
    const yes = { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'ap-2', approved: true }] };
    expect(findApprovalResponse([asked, answers, again, yes], 'c1')).toMatchObject({ approvalId: 'ap-2', approved: true, requestId: 'apr_pay' });
  });

  it('answersCall: an answer approves only the call its request was raised beside (same tool, same input)', () => {
    const found = findApprovalResponse(history, 'call-1')!;
    expect(answersCall(found, { toolName: 'send_email', input: {} })).toBe(true);
    expect(answersCall(found, { toolName: 'send_email', input: { to: 'eve' } })).toBe(false);
    expect(answersCall(found, { toolName: 'pay', input: {} })).toBe(false);
    const noCall = findApprovalResponse([{ role: 'assistant', content: [{ type: 'tool-approval-request', approvalId: 'a', toolCallId: 'c' }] }, { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'a', approved: true }] }], 'c')!;
    expect(answersCall(noCall, { toolName: 'pay', input: undefined })).toBe(false);
  });

  it("skips the SDK's automatic approval requests: they record a hook's answer, not a human's", () => {
    const automatic = [
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'c', toolName: 'pay', input: {} }, { type: 'tool-approval-request', approvalId: 'auto', toolCallId: 'c', isAutomatic: true }] },
      { role: 'tool', content: [{ type: 'tool-approval-response', approvalId: 'auto', approved: true }] },
    ];
    expect(findApprovalResponse(automatic, 'c')).toBeUndefined();
  });
});

