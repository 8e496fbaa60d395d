/** A `tools/call`'s arguments as the policy decides them. */
export interface ToolInput {
  readonly input: unknown;
  /** The server rejects the arguments before the handler runs (it answers with an error result). */
  readonly rejected: boolean;
}

/** Reads the arguments of a `tools/call` for a tool (by its name on the server) as its handler will get them. */
export type ToolInputReader = (tool: string, args: unknown) => Promise<ToolInput>;

interface McpServerInternals {
  _registeredTools?: Record<string, { inputSchema?: unknown } | undefined>;
  validateToolInput?: (tool: unknown, args: unknown, name: string) => Promise<unknown>;
}

/**
 * For an SDK `McpServer`: the arguments a tool handler will be called with, parsed by the tool's own `inputSchema`
 * (defaults filled in, transforms and coercions applied) with the server's own `validateToolInput`, so the policy,
 * the approval request and the cost read what the handler gets. The server still parses the call's arguments itself.
 * (Older SDKs, which parsed in the handler with the schema's `safeParseAsync`, are read the same way.) `undefined`
 * for anything else: a low-level `Server`, whose handlers get the arguments as they are.
 */
export function mcpServerInputReader(server: unknown): ToolInputReader | undefined {
  const internals = (typeof server === 'object' && server !== null ? server : {}) as McpServerInternals;
  if (typeof internals._registeredTools !== 'object' || internals._registeredTools === null) return undefined;
  // SDKs before `validateToolInput` called the schema's own `safeParseAsync` in the handler, as this does.
  const validate =
    typeof internals.validateToolInput === 'function'
      ? internals.validateToolInput
      : async (tool: unknown, args: unknown): Promise<unknown> => {
          const schema = (tool as { inputSchema?: { safeParseAsync?: (value: unknown) => Promise<{ success: boolean; data?: unknown }> } }).inputSchema;
          if (typeof schema?.safeParseAsync !== 'function') return args;
          const result = await schema.safeParseAsync(args);
          if (!result.success) throw new Error('invalid arguments');
          return result.data;
        };
  return async (name, args) => {
    // Read at call time: tools registered, removed or changed after the gate was set up are seen as they are now.
    const tools = internals._registeredTools;
    const tool = tools !== undefined && Object.hasOwn(tools, name) ? tools[name] : undefined;
    // An unknown tool is refused by the server; a tool without an input schema gets no arguments.
    if (tool?.inputSchema === undefined) return { input: args, rejected: false };
    let parsed: unknown;
    try {
      parsed = await validate.call(server, tool, args, name);
    } catch {
      // The server answers these arguments with an error result and the handler does not run. They are decided as
      // they are, so a call a rule denies is recorded and answered as a denial.
      return { input: args, rejected: true };
    }
    return { input: typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed : args, rejected: false };
  };
}
