/**
 * The learner's commands, run the way a learner runs them, against the test
 * run's server through DATABASE_URL (so this also proves DATABASE_URL works).
 */
import { describe, expect, inject, it } from 'vitest';
import { listChapters } from '../../shared/scenarios.ts';
import { runScript } from '../../shared/testing/processes.ts';

const run = (script: string, args: string[]) => runScript(script, args, { DATABASE_URL: inject('adminDatabaseUrl') });

describe('npm run chapter N', () => {
  for (const chapter of listChapters()) {
    it(`chapter ${chapter.number}'s demo runs end to end: a real kill, a restart, the ledger`, () => {
      const { status, output } = run('tools/bin/chapter.ts', [String(chapter.number)]);
      // A crash point (chapters 0–5) or a kill from outside (chapter 6's live view): a real SIGKILL either way.
      expect(output).toMatch(/killed with SIGKILL/);
      expect(output).toContain('The ledger');
      expect(status, output).toBe(0);
    });
  }

  it('an unknown chapter is a clear error listing the chapters', () => {
    const { status, output } = run('tools/bin/chapter.ts', ['42']);
    expect(status).toBe(1);
    expect(output).toContain('no chapter "42"');
  });
});

describe('npm run matrix', () => {
  it('prints each scenario against each chapter', () => {
    const { status, output } = run('tools/bin/matrix.ts', ['--chapters', '0,1', '--scenarios', 'retry-after-error,crash-after-charge-recorded']);
    expect(status, output).toBe(0);
    expect(output).toMatch(/\| a step fails once \(no crash\); the process retries the workflow \| ✗ charged twice \| ✓ exactly once \|/);
    expect(output).toMatch(/\| crash after the charge is recorded \| – \| ✗ charged twice \|/);
  });
});

describe('npm run diff', () => {
  /** The files a diff shows, in order, by their `diff --git` lines (the later chapter's path). */
  const filesShown = (output: string) => [...output.matchAll(/^diff --git a\/\S+ b\/chapters\/[^/]+\/(\S+)$/gm)].map((m) => m[1]!);

  it('shows what chapter 1 adds to chapter 0', () => {
    const { output } = run('tools/bin/diff.ts', ['0', '1']);
    expect(output).toContain('chapters/01-dict-log/engine.ts');
    expect(output).toContain('+      steps.set(name, result);');
  });

  it('shows the engine first and only the code; the tests and the README are named in the header, with the flag that shows them', () => {
    const { status, output } = run('tools/bin/diff.ts', ['3', '4']);
    expect(status, output).toBe(0);
    expect(output.split('\n')[0]).toBe('From chapter 3 (03-postgres-log) to chapter 4 (04-transactions):');
    expect(output).toMatch(/the tests +3 files: crash\.test\.ts, engine\.test\.ts \(deleted\), fixtures\/workflows\.ts \(deleted\) +\(npm run diff 3 4 -- --tests\)/);
    expect(output).toMatch(/the text +1 file: README\.md +\(npm run diff 3 4 -- --text\)/);
    const files = filesShown(output);
    expect(files[0]).toBe('engine.ts');
    expect(files).toContain('schema.sql');
    expect(files.filter((f) => /\.test\.ts$|README\.md$|fixtures\//.test(f))).toEqual([]);
    expect(output).toContain('+  transaction<T>(name: string, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T>;');
  });

  it('--all: the code, then the tests, then the text, each under its heading; --tests: the tests alone; --stat a summary of each', () => {
    const all = run('tools/bin/diff.ts', ['3', '4', '--all']).output;
    const files = filesShown(all);
    const firstTest = files.findIndex((f) => f.endsWith('.test.ts'));
    expect(files[0]).toBe('engine.ts');
    expect(firstTest).toBeGreaterThan(files.indexOf('demo.ts'));
    expect(files.at(-1)).toBe('README.md');
    expect(all.indexOf('━━ the code (6 files)')).toBeLessThan(all.indexOf('━━ the tests (3 files)'));
    expect(all.indexOf('━━ the tests (3 files)')).toBeLessThan(all.indexOf('━━ the text (1 file)'));
    expect(all).not.toContain('not shown');

    const tests = run('tools/bin/diff.ts', ['3', '4', '--tests']).output;
    expect(filesShown(tests).every((f) => f.endsWith('.test.ts') || f.startsWith('fixtures/'))).toBe(true);
    expect(filesShown(tests)).toHaveLength(3);

    const stat = run('tools/bin/diff.ts', ['3', '4', '--stat']);
    expect(stat.status, stat.output).toBe(0);
    expect(stat.output).toMatch(/engine\.ts +\| +\d+ [+-]+\n/);
    expect(stat.output).toContain('6 files changed');
    expect(stat.output).not.toMatch(/README\.md +\|/);
  });
});
