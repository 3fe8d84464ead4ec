/**
 * The engine is a real package: `npm pack` here builds it (tsc, to JavaScript
 * and .d.ts) and packs it; the tarball installs into an empty project with
 * npm; and plain Node — no tsx, no TypeScript, no course — runs a workflow
 * across a worker killed with SIGKILL, each step's effect exactly once.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../../shared/testing/database.ts';

const here = path.dirname(new URL(import.meta.url).pathname);
let work: string;
let database: TestDatabase;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'engine-package-'));
  database = await freshDatabase('ch09_package');
});

afterAll(async () => {
  await database?.drop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** npm, quietly, failing the test with its output if it fails. */
function npm(args: string[], cwd: string): string {
  const result = spawnSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 180_000 });
  if (result.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** `node consumer.mjs <role>` in the app, with an environment free of the course's loaders (NODE_OPTIONS) and switches. */
function runConsumer(app: string, role: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: database.url };
  const child = spawn(process.execPath, ['consumer.mjs', role], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.on('close', (code, signal) => (clearTimeout(timer), resolve({ code, signal, output }))));
}

describe('the engine as a package', () => {
  let tarball: string;
  let app: string;

  it('npm pack builds JavaScript and type declarations and packs only the engine: no TypeScript sources, tests, demo or course code', () => {
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', work], here)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(work, packed[0]!.filename);
    const files = packed[0]!.files.map((f) => f.path).sort();
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('dist/migrations/001_log.sql');
    expect(files.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => /main|demo|workflow\.|test|fixtures/.test(f))).toEqual([]);
    expect(files).toContain('dist/cli.js'); // the `durable` command
    // The working tree is left as it was: the build is removed after packing.
    expect(fs.existsSync(path.join(here, 'dist'))).toBe(false);
  });

  it('installs into an empty project, whose compiled code imports nothing from the course', () => {
    app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', '--prefer-offline', tarball], app);
    const installed = path.join(app, 'node_modules', '@durable-course', 'engine', 'dist');
    for (const file of fs.readdirSync(installed).filter((f) => f.endsWith('.js'))) {
      const imports = [...fs.readFileSync(path.join(installed, file), 'utf8').matchAll(/from "([^"]+)"/g)].map((m) => m[1]!);
      expect(imports.filter((from) => !/^(\.\/[\w-]+\.js|pg|node:\w+)$/.test(from)), file).toEqual([]);
    }
    fs.copyFileSync(path.join(here, 'fixtures', 'consumer.mjs'), path.join(app, 'consumer.mjs'));
  });

  it('its type declarations are complete: TypeScript checks a service against them, input and output types included', () => {
    fs.writeFileSync(
      path.join(app, 'check.ts'),
      [
        "import pg from 'pg';",
        "import { ChildWorkflowError, createEngine, type ChildHandle, type LogEntry, type StepInfo, type Workflow } from '@durable-course/engine';",
        'const double: Workflow<{ n: number }, number> = async (ctx, input) => ctx.step(\'double\', async (info: StepInfo) => input.n * 2 + info.fencingToken * 0);',
        'const parent: Workflow<{ n: number }, number> = async (ctx, input) => {',
        "  const child: ChildHandle<number> = await ctx.startChild<number>('double', input);",
        "  const paid = await ctx.waitForEvent<{ amount: number }>('paid', { timeoutMs: 60_000 });",
        '  try { return (await child.result()) + (paid?.amount ?? 0); } catch (error) { if (error instanceof ChildWorkflowError) return -1; throw error; }',
        '};',
        'const engine = createEngine({ db: new pg.Pool(), workflows: { double, parent }, log: (entry: LogEntry) => void entry.workflowId });',
        "await engine.send('some-order', 'paid', { amount: 5 }, { key: 'psp-1' });",
        "await engine.cancel('some-order', { reason: 'customer left' });",
        "const run = await engine.start('double', { n: 1 });",
        'export const output: number = await run.result();',
        '// @ts-expect-error: the input is typed by the workflow',
        "await engine.start('double', { n: 'one' });",
      ].join('\n'),
    );
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023'], strict: true, noEmit: true,
        skipLibCheck: false, // check the package's .d.ts too
        typeRoots: [path.join(here, '..', '..', 'node_modules', '@types')], types: ['node'],
      },
      files: ['check.ts'],
    };
    fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = spawnSync(process.execPath, [path.join(here, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { encoding: 'utf8', timeout: 120_000 });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe('');
    expect(tsc.status).toBe(0);
  });

  it('plain Node runs a workflow across a worker killed with SIGKILL after its second step: every step once, the rest by the next claim', async () => {
    const first = await runConsumer(app, 'first');
    expect(first.signal, first.output).toBe('SIGKILL');
    expect(first.output).not.toContain('NOT KILLED');
    // The engine prints nothing by itself: the killed process said nothing at all.
    expect(first.output).toBe('');

    const second = await runConsumer(app, 'second');
    expect(second.code, second.output).toBe(0);
    expect(second.output).toContain('RESULT {"input":{"n":42},"steps":["one done","two done","three done"]}');
    expect(second.output).toContain('CONNECTION_FAILURE_EXPORTED true');
    // The application's logger got entries naming the workflow, with a timestamp.
    expect(second.output).toMatch(/LOGGED \[.*"\d{4}-\d\d-\d\dT[\d:.]+Z debug step-ran job-1"/);

    const effects = fs.readFileSync(path.join(app, 'effects.txt'), 'utf8').trim().split('\n');
    // Steps one and two under the first claim (token 1); three after the takeover, under token 2.
    expect(effects).toEqual(['job-1:0 one 1', 'job-1:1 two 1', 'job-1:2 three 2']);
  });

  it('ships its command line: the installed `durable` shows the workflow and who recorded each step', () => {
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: database.url };
    const shown = spawnSync(path.join(app, 'node_modules', '.bin', 'durable'), ['show', 'job-1', '--json'], { cwd: app, env, encoding: 'utf8', timeout: 30_000 });
    expect(shown.status, shown.stderr).toBe(0);
    const workflow = JSON.parse(shown.stdout) as { status: string; steps: Array<{ name: string; fencingToken: number }> };
    expect(workflow.status).toBe('completed');
    expect(workflow.steps.map((step) => `${step.name} ${step.fencingToken}`)).toEqual(['one 1', 'two 1', 'three 2']);
    const cancel = spawnSync(path.join(app, 'node_modules', '.bin', 'durable'), ['cancel', 'job-1'], { cwd: app, env, encoding: 'utf8', timeout: 30_000 });
    expect([cancel.status, cancel.stdout]).toEqual([1, 'workflow job-1 is completed: nothing to cancel.\n']);
  });
});
