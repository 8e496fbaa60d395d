// Names the approvals README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const policy: import('@agentpolicy/core').AgentPolicy;
declare function currentUser(request: Request): Promise<import('@agentpolicy/approvals').ApprovalsPrincipal | undefined>;
declare function notify(links: unknown): Promise<void>;
declare const input: Record<string, unknown>;
declare function deploy(): Promise<void>;
declare const secret: string;
declare const handlerUrl: string;
declare const authorize: import('@agentpolicy/approvals').ApprovalsAuthorize;
