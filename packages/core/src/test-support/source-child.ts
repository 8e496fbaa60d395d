import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('..', import.meta.url));

/** Node's flags for a child that runs {@link sourceChildScript}: TypeScript sources through Node's type transform. */
export const SOURCE_CHILD_ARGS: readonly string[] = ['--experimental-transform-types', '--no-warnings', '--input-type=module', '-e'];

/**
 * A module script for a child Node process that imports core's TypeScript sources directly (`.js` specifiers mapped
 * to `.ts`), with `createAuditLog` and `AgentPolicy` in scope, then runs `body`.
 */
export function sourceChildScript(body: string): string {
  return `
    import { registerHooks } from 'node:module';
    registerHooks({ resolve(specifier, context, next) {
      try { return next(specifier, context); } catch (error) {
        if (specifier.startsWith('.') && specifier.endsWith('.js')) return next(specifier.slice(0, -3) + '.ts', context);
        throw error;
      }
    } });
    const { createAuditLog } = await import(${JSON.stringify(join(src, 'audit-log.ts'))});
    const { AgentPolicy } = await import(${JSON.stringify(join(src, 'policy.ts'))});
    ${body}
  `;
}
