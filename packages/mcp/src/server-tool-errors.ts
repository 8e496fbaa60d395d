import type { RequestId } from '@modelcontextprotocol/sdk/types.js';

/** What a gated `McpServer`'s tool handlers threw, by the request they ran for; each taken once, by its answer. */
export interface HandlerErrors {
  take(id: RequestId): { readonly error: unknown } | undefined;
}

interface McpServerInternals {
  executeToolHandler?: (tool: unknown, args: unknown, extra: { readonly requestId?: unknown } | undefined) => Promise<unknown>;
}

/** Errors kept for answers not yet settled; more than this many at once and the oldest is dropped (then charged). */
const KEPT_ERRORS = 1024;

const isId = (value: unknown): value is RequestId => typeof value === 'string' || typeof value === 'number';

/**
 * For an SDK `McpServer`: the error each tool handler throws, by the request it ran for. The server answers a handler
 * that throws with an error result carrying only the message, so without this the gate could not tell a refusal from
 * a failure; with it, the call's cost is settled by core's rule on the error itself (released for an agentpolicy
 * error or a 4xx `status` / `statusCode`, charged otherwise), as for a local tool. An `McpServer` serves one
 * connection at a time, whose request ids the gate keeps unique while a call runs. `undefined` for anything else (a
 * low-level `Server`, or an SDK without `executeToolHandler`): there an error result is charged.
 */
export function mcpServerHandlerErrors(server: unknown): HandlerErrors | undefined {
  const internals = (typeof server === 'object' && server !== null ? server : {}) as McpServerInternals;
  const execute = internals.executeToolHandler;
  if (typeof execute !== 'function') return undefined;
  const thrown = new Map<RequestId, { readonly error: unknown }>();
  Object.defineProperty(server, 'executeToolHandler', {
    value: async function (this: unknown, tool: unknown, args: unknown, extra: { readonly requestId?: unknown } | undefined): Promise<unknown> {
      const id = extra?.requestId;
      // Only what this run throws counts for its answer.
      if (isId(id)) thrown.delete(id);
      try {
        return await execute.call(this, tool, args, extra);
      } catch (error) {
        if (isId(id)) {
          if (thrown.size >= KEPT_ERRORS) thrown.delete(thrown.keys().next().value as RequestId);
          thrown.set(id, { error });
        }
        throw error;
      }
    },
    writable: true,
    configurable: true,
  });
  return {
    take: (id) => {
      const found = thrown.get(id);
      thrown.delete(id);
      return found;
    },
  };
}
