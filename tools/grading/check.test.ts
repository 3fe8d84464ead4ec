/**
 * The exercises' tests mean something (rustlings' `dev check`): every
 * reference answer passes all its tests — the instructor-only ones too — and
 * every untouched starter fails at least one. Both must type-check. Graded
 * exactly as a class is graded (workspace, own database, own processes).
 *
 * The starters tested are the pristine copies (tools/grading/starters/), so
 * this stays true on a learner's machine however far their exercises/ has
 * come; in CI, exercises/ must also still BE those starters.
 */
import { describe, expect, inject, it } from 'vitest';
import { listExercises } from './exercises.ts';
import { gradeSubmission, prepareSubmissions, type GradeSettings } from './grade.ts';
import { courseRoot } from './impl.ts';
import { changedFromStarter, startersFolder } from './starters.ts';

const exercises = listExercises();
const settings: GradeSettings = {
  exercises,
  adminUrl: inject('adminDatabaseUrl'),
  hidden: true,
  repeats: 1,
  testTimeoutMs: 30_000,
  crashTestTimeoutMs: 60_000,
  submissionTimeoutMs: 240_000,
};

describe('the exercises and their tests', () => {
  it('every solution passes all its tests and every untouched starter fails at least one; both type-check', { timeout: 300_000 }, async () => {
    const pristine = startersFolder();
    const [solutions, starters] = await prepareSubmissions(
      [
        { student: 'solutions', dir: `${courseRoot}/solutions` },
        { student: 'starters', dir: pristine.dir },
      ],
      exercises,
    );
    pristine.remove(); // the workspace has its own copy
    try {
      for (const submission of [solutions!, starters!]) {
        expect(submission.compileFailure).toBeUndefined();
        expect(Object.fromEntries(submission.compileErrors), `${submission.student} must type-check`).toEqual({});
        expect([...submission.workspace.present].sort()).toEqual(exercises.map((e) => e.slug));
      }
      const [solved, started] = await Promise.all([
        gradeSubmission(solutions!, settings),
        // One failing test is all it takes: stop each exercise there.
        gradeSubmission(starters!, { ...settings, bail: true }),
      ]);

      for (const exercise of solved.exercises) {
        const failing = exercise.tests.filter((t) => t.status !== 'pass').map((t) => `${t.name}: ${t.message}`);
        expect(failing, `solutions/${exercise.slug} must pass every test`).toEqual([]);
        // Every test the specs ran has its points declared, and every declared test ran.
        expect(exercise.tests.filter((t) => t.undeclared).map((t) => t.name), `tests of ${exercise.slug} missing from points.json`).toEqual([]);
        expect(exercise.points).toBe(exercise.maxPoints);
      }
      expect(solved.exercises.some((e) => e.tests.some((t) => t.hidden))).toBe(true); // the instructor-only example ran

      for (const exercise of started.exercises) {
        expect(exercise.status, `exercises/${exercise.slug}: the untouched starter must fail a test`).toBe('fail');
        expect(exercise.tests.some((t) => t.status === 'fail'), exercise.slug).toBe(true);
      }
    } finally {
      solutions!.workspace.remove();
      starters!.workspace.remove();
    }
  });

  it.runIf(process.env.CI)('in CI, exercises/ is exactly the pristine starters (after changing a starter: npm run reset-exercise -- --record N)', () => {
    for (const exercise of exercises) expect(changedFromStarter(exercise), `exercises/${exercise.slug}`).toEqual([]);
  });
});
