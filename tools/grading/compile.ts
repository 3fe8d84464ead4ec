/**
 * Type-check exercise code with the course's own compiler settings
 * (tsconfig.json: strict), the way `npm run typecheck` does — and say which
 * file each error is in, so the grader can pin it on one exercise of one
 * submission. Type-checking never runs the code, so one compiler run covers
 * a whole class at once.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { courseRoot } from './impl.ts';

export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  /** e.g. TS2322 */
  code: string;
  /** The compiler's message, as it prints it: `engine.ts(12,5): error TS2322: Type 'string' is not assignable…` */
  text: string;
}

export interface TypeCheckResult {
  diagnostics: Diagnostic[];
  /** The compiler itself failed (it crashed, or ran out of time): nothing can be said about the files. */
  failure?: string;
}

const tscBin = path.join(courseRoot, 'node_modules', 'typescript', 'bin', 'tsc');

/**
 * Type-check every .ts file under `folders`, following their imports (the
 * course's shared code included). `buildInfo`, when given, makes repeated
 * checks of the same folders fast (the learner's watch mode).
 */
export async function typeCheck(folders: string[], { timeoutMs = 120_000, buildInfo }: { timeoutMs?: number; buildInfo?: string } = {}): Promise<TypeCheckResult> {
  if (folders.length === 0) return { diagnostics: [] };
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'course-tsc-'));
  const config = path.join(configDir, 'tsconfig.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      extends: path.join(courseRoot, 'tsconfig.json'),
      compilerOptions: {
        typeRoots: [path.join(courseRoot, 'node_modules', '@types')],
        ...(buildInfo ? { incremental: true, tsBuildInfoFile: buildInfo } : {}),
      },
      include: folders.map((folder) => path.join(realPath(folder), '**', '*.ts')),
    }),
  );
  try {
    const { output, code, timedOut } = await runTsc(['-p', config, '--pretty', 'false'], configDir, timeoutMs);
    if (timedOut) return { diagnostics: [], failure: `the type checker did not finish within ${Math.round(timeoutMs / 1000)} s` };
    const diagnostics = parseDiagnostics(output, configDir);
    if (code !== 0 && diagnostics.length === 0) return { diagnostics, failure: `the type checker failed (exit ${code}):\n${output.slice(0, 2000)}` };
    return { diagnostics };
  } finally {
    fs.rmSync(configDir, { recursive: true, force: true });
  }
}

function runTsc(args: string[], cwd: string, timeoutMs: number): Promise<{ output: string; code: number | null; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tscBin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      if (output.length < 2_000_000) output += chunk.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ output, code, timedOut });
    });
  });
}

/** `file(line,col): error TSxxxx: message` lines, with their indented continuation lines. */
export function parseDiagnostics(output: string, cwd: string): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const line of output.split('\n')) {
    const match = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line);
    if (match) {
      diagnostics.push({
        file: path.resolve(cwd, match[1]!),
        line: Number(match[2]),
        column: Number(match[3]),
        code: match[4]!,
        text: line.trimEnd(),
      });
    } else if (/^\s+\S/.test(line) && diagnostics.length > 0) {
      diagnostics[diagnostics.length - 1]!.text += `\n${line.trimEnd()}`;
    }
  }
  return diagnostics;
}

/** The diagnostics in files under `folder`, with paths shown relative to `relativeTo`. */
export function diagnosticsUnder(diagnostics: Diagnostic[], folder: string, relativeTo: string): string[] {
  const prefix = `${realPath(folder)}${path.sep}`;
  return diagnostics
    .filter((d) => d.file.startsWith(prefix))
    .map((d) => d.text.replace(/^(.+?)\(/, () => `${path.relative(realPath(relativeTo), d.file)}(`));
}

/** The path with every symbolic link resolved (a temp folder may be behind one, as on macOS), or as given. */
function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
