// Checks the READMEs (the root one, every package's and example's) against the code:
// - every ```ts block type-checks as a module against the built packages and the installed frameworks, with the
//   repository's strict compiler options. The names a snippet leaves to the reader (`baseModel`, `messages`,
//   `askAHuman`) are declared, per README, in .ci/docs-check/<README path with / as __>.d.ts, e.g.
//   .ci/docs-check/packages__core__README.d.ts; the snippets of one README are checked together;
// - every ```yaml block is a valid policy (core's own loader);
// - a block that is deliberately a fragment says so on the line before its fence:
//   <!-- docs-check: skip (the reason) -->
// - every relative link points to a file that exists, and every #anchor to a heading of the page it names;
// - core's README lists every error code of packages/core/src/errors.ts in its "Error codes" table.
// Needs the packages built. Usage: node .ci/check-docs.mjs
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { anchorsOf, codeBlocksOf, linksOf } from './markdown.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const problems = [];
const workspaceDirs = ['packages', 'examples'].flatMap((group) =>
  existsSync(join(ROOT, group)) ? readdirSync(join(ROOT, group)).map((name) => join(ROOT, group, name)) : [],
);
const readmes = [join(ROOT, 'README.md'), ...workspaceDirs.map((dir) => join(dir, 'README.md'))].filter((file) => existsSync(file));
const where = (file, line) => `${relative(ROOT, file)}:${line}`;

// TypeScript and the core package come from the workspace.
const require = createRequire(join(ROOT, 'packages/core/package.json'));
const ts = createRequire(join(ROOT, 'package.json'))('typescript');
const core = await import(pathToFileURL(join(ROOT, 'packages/core/dist/index.js')).href);

// ---- links and anchors -------------------------------------------------------------------------------------------
for (const file of [...readmes, ...(existsSync(join(ROOT, 'docs')) ? readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).map((n) => join(ROOT, 'docs', n)) : [])]) {
  const text = readFileSync(file, 'utf8');
  for (const link of linksOf(text)) {
    if (/^(https?:|mailto:)/.test(link)) continue;
    const [path, anchor] = link.split('#');
    const target = path ? resolve(dirname(file), decodeURIComponent(path)) : file;
    if (!existsSync(target)) {
      problems.push(`${relative(ROOT, file)}: link ${link} points to a missing file`);
      continue;
    }
    if (anchor && target.endsWith('.md') && !anchorsOf(readFileSync(target, 'utf8')).has(decodeURIComponent(anchor))) {
      problems.push(`${relative(ROOT, file)}: link ${link} matches no heading of ${relative(ROOT, target)}`);
    }
  }
}

// ---- error codes -------------------------------------------------------------------------------------------------
{
  const source = readFileSync(join(ROOT, 'packages/core/src/errors.ts'), 'utf8');
  const union = /export type AgentPolicyErrorCode =([^;]+);/.exec(source)?.[1] ?? '';
  const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((match) => match[1]);
  const readme = readFileSync(join(ROOT, 'packages/core/README.md'), 'utf8');
  const table = /^## Error codes\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? '';
  if (codes.length === 0) problems.push('packages/core/src/errors.ts: no AgentPolicyErrorCode union found');
  for (const code of codes) if (!table.includes(`| \`${code}\` |`)) problems.push(`packages/core/README.md: the Error codes table has no row for ${code}`);
  for (const match of table.matchAll(/^\| `([A-Z_]+)` \|/gm)) if (!codes.includes(match[1])) problems.push(`packages/core/README.md: the Error codes table lists ${match[1]}, which errors.ts does not define`);
}

// ---- code blocks -------------------------------------------------------------------------------------------------
const snippets = [];
let yamlChecked = 0;
let skipped = 0;
for (const file of readmes) {
  for (const block of codeBlocksOf(readFileSync(file, 'utf8'))) {
    const checked = ['ts', 'typescript', 'yaml', 'yml'].includes(block.lang);
    if (!checked) continue;
    if (block.marker !== undefined) {
      if (!/^skip \(.+\)$/.test(block.marker)) problems.push(`${where(file, block.line - 1)}: a docs-check marker must read "skip (reason)"`);
      skipped++;
      continue;
    }
    if (block.lang === 'yaml' || block.lang === 'yml') {
      yamlChecked++;
      try {
        core.AgentPolicy.fromYamlString(block.code);
      } catch (error) {
        problems.push(`${where(file, block.line)}: this YAML block is not a valid policy (mark it "<!-- docs-check: skip (reason) -->" if it is a fragment):\n${error.message}`);
      }
    } else snippets.push({ file, line: block.line, code: block.code });
  }
}

// A control snippet that must fail, so a check that silently passes everything is caught.
const CONTROL = '(control snippet)';
snippets.push({ file: CONTROL, line: 1, code: "import { AgentPolicy } from '@agentpolicy/core';\nAgentPolicy.fromYaml(42);\n" });

// The snippets live in a scratch project whose node_modules links every package they import to the copy the
// workspace installed (the built @agentpolicy packages, the frameworks at the versions the repository tests).
let controlFailed = false;
const scratch = mkdtempSync(join(tmpdir(), 'agentpolicy-docs-'));
try {
  const modules = join(scratch, 'node_modules');
  mkdirSync(join(modules, '@types'), { recursive: true });
  writeFileSync(join(scratch, 'package.json'), '{ "type": "module", "private": true }\n');
  const linked = new Set();
  const link = (name) => {
    if (linked.has(name)) return;
    for (const dir of [ROOT, ...workspaceDirs]) {
      const candidate = join(dir, 'node_modules', name);
      if (!existsSync(candidate)) continue;
      mkdirSync(dirname(join(modules, name)), { recursive: true });
      symlinkSync(realpathSync(candidate), join(modules, name), 'dir');
      linked.add(name);
      return;
    }
  };
  link('@types/node');
  // Packages the ambient declarations name (`import('x').T`) are linked too.
  const ambientDir = join(import.meta.dirname, 'docs-check');
  for (const name of readdirSync(ambientDir)) {
    for (const match of readFileSync(join(ambientDir, name), 'utf8').matchAll(/import\('([^'.][^']*)'\)/g)) {
      const specifier = match[1];
      link(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
    }
  }
  const files = new Map();
  snippets.forEach((snippet, index) => {
    for (const match of snippet.code.matchAll(/(?:from|import)\s+'([^'.][^']*)'/g)) {
      const specifier = match[1];
      if (specifier.startsWith('node:')) continue;
      link(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
    }
    const module = /^\s*(import|export)\s/m.test(snippet.code) ? snippet.code : `${snippet.code}\nexport {};`;
    const name = join(scratch, `snippet-${index + 1}.ts`);
    writeFileSync(name, module);
    files.set(name, snippet);
  });
  const base = ts.readConfigFile(join(ROOT, 'tsconfig.base.json'), ts.sys.readFile).config.compilerOptions;
  const { options } = ts.convertCompilerOptionsFromJson({ ...base, noEmit: true, declaration: false, typeRoots: [join(modules, '@types')] }, scratch);
  for (const readme of new Set([...files.values()].map((snippet) => snippet.file))) {
    const names = [...files].filter(([, snippet]) => snippet.file === readme).map(([name]) => name);
    // The README's declarations are copied into the scratch project as a module that declares them globally (.ts,
    // not .d.ts), so their `import('…')` types resolve through its node_modules and are checked like the snippets
    // (a .d.ts would be skipped by skipLibCheck, and a name it could not resolve would quietly become any).
    const declared = join(import.meta.dirname, 'docs-check', `${relative(ROOT, readme).replace(/\.md$/, '').replaceAll('/', '__')}.d.ts`);
    const ambient = join(scratch, `ambient-${relative(ROOT, readme).replace(/\.md$/, '').replaceAll('/', '__')}.ts`);
    if (existsSync(declared)) writeFileSync(ambient, `export {};\ndeclare global {\n${readFileSync(declared, 'utf8').replace(/^declare /gm, '')}\n}\n`);
    const program = ts.createProgram(existsSync(declared) ? [...names, ambient] : names, options);
    const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => !d.file || names.includes(d.file.fileName) || d.file.fileName === ambient);
    for (const diagnostic of diagnostics) {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      const snippet = diagnostic.file && files.get(diagnostic.file.fileName);
      if (!snippet) {
        const shown = diagnostic.file?.fileName === ambient ? `${relative(ROOT, declared)}:${diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0).line - 1}` : diagnostic.file ? relative(ROOT, diagnostic.file.fileName) : 'compiler';
        problems.push(`${shown}: ${message}`);
        continue;
      }
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      if (snippet.file === CONTROL) controlFailed = true;
      else problems.push(`${where(snippet.file, snippet.line + line)}: ${message}`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (!controlFailed) problems.push('the control snippet (a number passed as a file path) type-checked: the snippet check is not working');

if (problems.length > 0) {
  console.error(`check-docs: ${problems.length} problem(s):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`check-docs: ${snippets.length - 1} TypeScript and ${yamlChecked} YAML blocks checked, ${skipped} marked skip, links and error codes ok (${readmes.length} READMEs)`);
