/**
 * Test the learner's own exercise folder — what `npm run exercise N` and
 * `npm run progress` share. The same specs, the same runner and the same
 * type check as the grader, on `exercises/` in place (no copy), without the
 * instructor-only tests; the result is remembered in the state file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CourseError } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { diagnosticsUnder, typeCheck } from './compile.ts';
import type { Exercise } from './exercises.ts';
import { runSpecs } from './run-specs.ts';
import { fingerprint, stateDir, updateState, type LastRun } from './state.ts';

export interface LearnerRun extends LastRun {
  compileErrors: string[];
  failed: string[];
}

export async function testExercise(exercise: Exercise, { databaseUrl, show }: { databaseUrl: string; show: boolean }): Promise<LearnerRun> {
  const print = identity(exercise);
  if (!fs.existsSync(exercise.dir)) {
    throw new CourseError(`${path.relative(process.cwd(), exercise.dir) || exercise.dir} is missing.`, `npm run reset-exercise ${exercise.number} puts the starter back.`);
  }
  const before = fingerprint(exercise);
  // Type errors first, as the grader does: code that does not compile scores nothing there.
  const checked = await typeCheck([exercise.dir], { buildInfo: path.join(stateDir(), 'tsc', `${exercise.slug}.tsbuildinfo`) });
  const compileErrors = checked.failure ? [checked.failure] : diagnosticsUnder(checked.diagnostics, exercise.dir, process.cwd());
  const maxPoints = [...exercise.points.values()].reduce((a, b) => a + b, 0);
  let run: LearnerRun;
  if (compileErrors.length > 0) {
    if (show) console.log(`${paint.red(`${print} does not compile`)} ${paint.dim('(tsc, strict — the grader would stop here too):')}\n${compileErrors.join('\n')}`);
    run = { at: new Date().toISOString(), fingerprint: before, outcome: 'compile-error', passed: 0, total: exercise.points.size, points: 0, maxPoints, compileErrors, failed: [] };
  } else {
    const result = await runSpecs({
      exercise,
      implRoot: path.dirname(exercise.dir),
      databaseUrl,
      hidden: false,
      repeats: 1,
      testTimeoutMs: 30_000,
      crashTestTimeoutMs: 60_000,
      deadline: Date.now() + 10 * 60_000,
      showOutput: show,
    });
    const passed = result.tests.filter((t) => t.status === 'pass' && !t.undeclared);
    run = {
      at: new Date().toISOString(),
      fingerprint: before,
      outcome: 'tested',
      passed: passed.length,
      total: exercise.points.size,
      points: passed.reduce((sum, t) => sum + (exercise.points.get(t.name) ?? 0), 0),
      maxPoints,
      compileErrors: [],
      failed: result.tests.filter((t) => t.status !== 'pass').map((t) => `${t.name}${t.status === 'error' && t.message ? ` — ${t.message.split('\n')[0]}` : ''}`),
    };
    if (show && result.problems.length > 0) console.log(paint.yellow(result.problems.join('\n')));
  }
  const { compileErrors: _c, failed: _f, ...remembered } = run;
  updateState(exercise.slug, (entry) => {
    entry.lastRun = remembered;
  });
  return run;
}

/** "exercise 1 (a step that failed for good is a result too)" */
export function identity(exercise: Exercise): string {
  return `exercise ${exercise.number} (${exercise.title})`;
}
