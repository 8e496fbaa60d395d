// Names the core README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare function askAHuman(request: import('@agentpolicy/core').ApprovalRequest): Promise<boolean>;
declare function sendEmail(): Promise<void>;
