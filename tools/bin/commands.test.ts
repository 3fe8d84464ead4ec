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
  it('shows what chapter 1 adds to chapter 0', () => {
    const { output } = run('tools/bin/diff.ts', ['0', '1']);
    expect(output).toContain('chapters/01-dict-log/engine.ts');
    expect(output).toContain('+      steps.set(name, result);');
  });
});
