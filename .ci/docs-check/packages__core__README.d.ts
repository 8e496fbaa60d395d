// Names the core README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare function askAHuman(request: import('@agentpolicy/core').ApprovalRequest): Promise<boolean>;
declare const args: { to: string; subject: string };
declare function sendEmail(args?: { to: string; subject: string }): Promise<void>;
declare function notify(message: string): Promise<void>;
declare const session: import('@agentpolicy/core').PolicySession;
declare const policy: import('@agentpolicy/core').AgentPolicy;
