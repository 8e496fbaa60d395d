import { describe, expect, it } from 'vitest';
import { findApprovalResponse } from './find-approval-response.js';

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
    expect(findApprovalResponse(history, 'call-1')).toEqual({ approvalId: 'ap-1', approved: true, reason: 'fine' });
    expect(findApprovalResponse(history, 'call-2')).toEqual({ approvalId: 'ap-2', approved: false, reason: 'no' });
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
});
