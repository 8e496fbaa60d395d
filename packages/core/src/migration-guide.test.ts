/**
 * Every ```ts block of docs/migrating-from-python.md is type-checked against this package's source, with the
 * package's own compiler options, so the guide cannot drift from the API it describes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const GUIDE = fileURLToPath(new URL('../../../docs/migrating-from-python.md', import.meta.url));
const CORE = fileURLToPath(new URL('..', import.meta.url));

interface Snippet {
  /** 1-based line in the guide where the code starts. */
  readonly line: number;
  readonly code: string;
}

function tsSnippets(markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const fence = /^```ts\n([\s\S]*?)^```$/gm;
  for (let match = fence.exec(markdown); match; match = fence.exec(markdown)) {
    snippets.push({ line: markdown.slice(0, match.index).split('\n').length + 1, code: match[1] ?? '' });
  }
  return snippets;
}

/** Type-checks snippets as modules of this package (so `@agentpolicy/core` is its `src`); returns the errors. */
function typecheck(snippets: readonly Snippet[]): string[] {
  const config = ts.readConfigFile(join(CORE, 'tsconfig.json'), ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, CORE);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    paths: { '@agentpolicy/core': [join(CORE, 'src/index.ts')] },
  };
  const files = new Map(snippets.map((snippet, index) => [join(CORE, 'src', '__migration_guide__', `snippet-${index + 1}.ts`), snippet]));
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (name) => files.has(name) || fileExists.call(host, name);
  host.readFile = (name) => files.get(name)?.code ?? readFile.call(host, name);
  host.getSourceFile = (name, language, ...rest) => {
    const snippet = files.get(name);
    return snippet ? ts.createSourceFile(name, snippet.code, language) : getSourceFile.call(host, name, language, ...rest);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .filter((diagnostic) => diagnostic.file && files.has(diagnostic.file.fileName))
    .map((diagnostic) => {
      const file = diagnostic.file as ts.SourceFile;
      const snippet = files.get(file.fileName) as Snippet;
      const { line } = file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      return `docs/migrating-from-python.md:${snippet.line + line}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
    });
}

describe('docs/migrating-from-python.md', () => {
  const snippets = tsSnippets(readFileSync(GUIDE, 'utf8'));

  it('has its TypeScript examples, each a module using the package', () => {
    expect(snippets.length).toBeGreaterThanOrEqual(9);
    for (const snippet of snippets) expect(snippet.code).toContain("from '@agentpolicy/core'");
  });

  it('every TypeScript example type-checks against the library', () => {
    expect(typecheck(snippets)).toEqual([]);
  });

  it('the check can fail: a word-for-word Python call, or a wrong option, is reported at its line in the guide', () => {
    const errors = typecheck([
      { line: 10, code: "import { AgentPolicy } from '@agentpolicy/core';\nconst session = new AgentPolicy({}).session();\nsession.check_tool('x');\n" },
      { line: 20, code: "import { AgentPolicy } from '@agentpolicy/core';\nnew AgentPolicy({ allowed_tools: ['x'] });\n" },
    ]);
    expect(errors).toEqual([
      expect.stringMatching(/^docs\/migrating-from-python\.md:12: Property 'check_tool' does not exist/),
      expect.stringMatching(/^docs\/migrating-from-python\.md:21: .*allowed_tools/),
    ]);
  });
});
