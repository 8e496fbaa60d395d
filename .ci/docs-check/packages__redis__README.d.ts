// Names the Redis README's snippets leave to the reader. Read by .ci/check-docs.mjs; not part of any package.
declare const tenantId: string;
