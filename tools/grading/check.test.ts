/**
 * The exercises' tests mean something (rustlings' `dev check`): every
 * reference answer passes all its tests — the instructor-only ones too — and
 * every untouched starter fails at least one. Both must type-check. Graded
 * exactly as a class is graded (workspace, own database, own processes).
 *
 * Starters and answers are derived, as reset and the grader derive them: the
 * chapter + the starter patch (+ the solution patch). So this stays true on a
 * learner's machine however far their exercises/ has come. Each starter
 * patch must still fit its chapter where it changes it (a chapter change
 * there fails here); in CI, exercises/ must also still BE the derived starters
 * — a chapter change anywhere fails there.
 */
import fs from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { listExercises } from './exercises.ts';
import { prepareCluster } from './database.ts';
import { gradeSubmission, prepareSubmissions, type GradeSettings } from './grade.ts';
import { chapterDrift, deriveStarter, starterPatchFile } from './derive.ts';
import { parsePatch } from './patch.ts';
import { changedFromStarter, pristineStarter, referenceAnswer, startersFolder } from './starters.ts';

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
    const pristine = startersFolder(exercises);
    const answers = startersFolder(exercises, { answers: true });
    const [solutions, starters] = await prepareSubmissions(
      [
        { student: 'solutions', dir: answers.dir },
        { student: 'starters', dir: pristine.dir },
      ],
      exercises,
    );
    pristine.remove(); // the workspaces have their own copies
    answers.remove();
    try {
      for (const submission of [solutions!, starters!]) {
        expect(submission.compileFailure).toBeUndefined();
        expect(Object.fromEntries(submission.compileErrors), `${submission.student} must type-check`).toEqual({});
        expect([...submission.workspace.present].sort()).toEqual(exercises.map((e) => e.slug));
      }
      // As the grader does it: each submission its own role, which may create nothing but its own tables.
      const cluster = await prepareCluster(settings.adminUrl, { ownCluster: false });
      expect(cluster.rolesPerSubmission).toBe(true);
      const [solved, started] = await Promise.all([
        gradeSubmission(solutions!, { ...settings, cluster }),
        // One failing test is all it takes: stop each exercise there.
        gradeSubmission(starters!, { ...settings, cluster, bail: true }),
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

  it("each exercise follows its chapter: the chapter's files are as its starter patch was made against, and starter and answer derive", () => {
    for (const exercise of exercises) {
      // A chapter edit anywhere in a file the exercise extends: derive the exercise again (npx tsx tools/grading/derive.ts --write).
      expect(chapterDrift(exercise.slug), `chapter files changed under exercises/${exercise.slug}`).toEqual([]);
      const patch = parsePatch(fs.readFileSync(starterPatchFile(exercise.slug), 'utf8'), exercise.slug);
      expect(deriveStarter(exercise.slug, { exact: true }).size, exercise.slug).toBe(patch.files.length);
      expect([...referenceAnswer(exercise).keys()].sort(), exercise.slug).toEqual([...pristineStarter(exercise).keys()].sort());
    }
  });

  it.runIf(process.env.CI)('in CI, exercises/ is exactly the derived starters (after a chapter changed: npx tsx tools/grading/derive.ts --write; after changing a starter: npm run reset-exercise -- --record N)', () => {
    for (const exercise of exercises) expect(changedFromStarter(exercise), `exercises/${exercise.slug}`).toEqual([]);
  });
});
