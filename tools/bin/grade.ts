/**
 * `npm run grade` — grade a class with the course's own tests and harness.
 *
 *   npm run grade -- --submissions DIR   each subfolder of DIR is one student's copy
 *                                        of exercises/, or a whole clone of the course
 *   npm run grade -- --solutions         grade the reference answers (all points)
 *   npm run grade -- --starters          grade the untouched starters (few points)
 *
 * Options:
 *   --out DIR                reports folder (default grades/, which ignores itself in git)
 *   --parallel N             submissions graded at once (default 2)
 *   --repeats N              each crash test must pass N times to earn its points (default 1)
 *   --test-timeout S         seconds one test may take (default 30)
 *   --crash-test-timeout S   seconds one repetition of a crash test may take (default 60:
 *                            it starts, kills and restarts real processes)
 *   --submission-timeout S   seconds one submission may take, all exercises (default 300)
 *   --exercises 1,3          grade only these exercises
 *   --students ada,brook     grade only these subfolders
 *   --no-hidden              leave out the instructor-only tests
 *   --no-isolation           as root, still run submissions as yourself (only to compare:
 *                            see "What a hostile submission can and cannot do" in the guide)
 *
 * One PostgreSQL server for the run (DATABASE_URL, COURSE_DB=docker, or the
 * embedded one), a fresh database per submission. docs/instructor-guide.md
 * explains the rest.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPostgres } from '../../shared/db/server.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { findExercise, listExercises, type Exercise } from '../grading/exercises.ts';
import { gradeAll } from '../grading/grade.ts';
import { detectIsolation } from '../grading/isolation.ts';
import { stopAllRuns } from '../grading/run-specs.ts';
import { writeReports } from '../grading/reports.ts';
import { startersFolder } from '../grading/starters.ts';
import { ProgressBar, problemsList, summaryTable } from '../grading/terminal.ts';

const usage = 'usage: npm run grade -- --submissions DIR | --solutions | --starters  [--out DIR] [--parallel N] [--repeats N] [--test-timeout S] [--crash-test-timeout S] [--submission-timeout S] [--exercises 1,3] [--students a,b] [--no-hidden] [--no-isolation]';

const options = {
  submissions: { type: 'string' },
  solutions: { type: 'boolean', default: false },
  starters: { type: 'boolean', default: false },
  out: { type: 'string', default: 'grades' },
  parallel: { type: 'string', default: '2' },
  repeats: { type: 'string', default: '1' },
  'test-timeout': { type: 'string', default: '30' },
  'crash-test-timeout': { type: 'string', default: '60' },
  'submission-timeout': { type: 'string', default: '300' },
  exercises: { type: 'string' },
  students: { type: 'string' },
  'no-hidden': { type: 'boolean', default: false },
  'no-isolation': { type: 'boolean', default: false },
} as const;
type Options = ReturnType<typeof parseArgs<{ options: typeof options }>>['values'];

runMain(async () => {
  const { values } = parseArgs({ options, allowPositionals: false });
  const exercises: Exercise[] = values.exercises ? values.exercises.split(',').map((n) => findExercise(n.trim())) : listExercises();
  // The starters and the answers are derived (tools/grading/derive.ts): written out to grade, like a submission.
  const derived = values.starters || values.solutions ? startersFolder(exercises, { answers: values.solutions }) : undefined;
  try {
    await grade(values, exercises, derived?.dir);
  } finally {
    derived?.remove();
  }
});

async function grade(values: Options, exercises: Exercise[], derivedDir: string | undefined): Promise<void> {
  const submissions = chooseSubmissions(values, derivedDir);
  if (submissions.length === 0) throw new CourseError('There is nothing to grade.', usage);

  const settings = {
    exercises,
    hidden: !values['no-hidden'],
    parallel: positive(values.parallel!, '--parallel'),
    repeats: positive(values.repeats!, '--repeats'),
    testTimeoutMs: positive(values['test-timeout']!, '--test-timeout', true) * 1000,
    crashTestTimeoutMs: positive(values['crash-test-timeout']!, '--crash-test-timeout', true) * 1000,
    submissionTimeoutMs: positive(values['submission-timeout']!, '--submission-timeout', true) * 1000,
    isolation: values['no-isolation'] ? ({ kind: 'none', summary: 'none: turned off (--no-isolation)' } as const) : detectIsolation(),
  };
  console.log(
    paint.dim(
      `Grading ${submissions.length} submission(s) on ${exercises.length} exercise(s), ${settings.parallel} at a time; ` +
        `${settings.repeats > 1 ? `crash tests must pass ${settings.repeats}× in a row; ` : ''}` +
        `limits: ${settings.testTimeoutMs / 1000} s per test, ${settings.crashTestTimeoutMs / 1000} s per crash test, ${settings.submissionTimeoutMs / 1000} s per submission.`,
    ),
  );

  // The grader's own cluster, made for this run: password logins only, so each submission's role is an identity.
  const server = await startPostgres({ purpose: 'grade', log: (line) => console.log(paint.dim(line)) });
  // Ctrl-C: the test runs are in process groups of their own and would not hear it.
  let interrupted = false;
  const interrupt = () => {
    interrupted = true;
    stopAllRuns();
    void server.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const bar = new ProgressBar(submissions.length);
  let grades;
  try {
    grades = await gradeAll(submissions, { ...settings, adminUrl: server.url, ownCluster: server.kind === 'embedded' }, { onStart: (s) => bar.start(s), onDone: (g) => bar.finish(g) });
  } finally {
    bar.end();
    if (!interrupted) await server.stop(); // (the interrupt handler stops it itself)
  }

  if (interrupted) return; // no reports of a half-graded class: process.exit(130) follows
  const outDir = path.resolve(values.out!);
  const written = writeReports(grades, outDir);
  console.log(`\n${summaryTable(grades, exercises)}`);
  const problems = problemsList(grades);
  if (problems) console.log(`\n${paint.bold('Why')}\n${problems}`);
  const rel = (p: string) => (p.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), p) : p);
  console.log(paint.dim(`\nReports: ${rel(written.csv)}, ${rel(written.junit)}, ${rel(path.join(outDir, '<student>', 'results.json'))}; checksums in ${rel(written.checksums)} (cd ${rel(outDir)} && sha256sum -c grades.sha256)`));
  const isolation = grades[0]?.isolation;
  if (isolation) console.log(paint.dim(`Isolation: ${isolation}`));
}

/** The submissions to grade: the subfolders of --submissions, or the course's own solutions or starters (derived into `derivedDir`). */
function chooseSubmissions(values: Options, derivedDir: string | undefined): Array<{ student: string; dir: string }> {
  const chosen = [values.submissions !== undefined, values.solutions, values.starters].filter(Boolean).length;
  if (chosen !== 1) throw new CourseError('Say what to grade: one of --submissions DIR, --solutions or --starters.', usage);
  if (values.solutions && derivedDir) return [{ student: 'solutions', dir: derivedDir }];
  if (values.starters && derivedDir) return [{ student: 'starters', dir: derivedDir }];
  const root = path.resolve(values.submissions!);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    throw new CourseError(`--submissions ${values.submissions}: there is no such folder.`, 'Give the folder that holds one subfolder per student.');
  }
  const only = values.students?.split(',').map((s) => s.trim());
  return fs
    .readdirSync(root)
    .filter((name) => !name.startsWith('.') && fs.statSync(path.join(root, name)).isDirectory())
    .filter((name) => !only || only.includes(name))
    .sort()
    .map((student) => ({ student, dir: path.join(root, student) }));
}

function positive(text: string, flag: string, fractional = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (!fractional && !Number.isInteger(n))) {
    throw new CourseError(`${flag} ${text}: that is not a ${fractional ? 'positive number' : 'whole number above 0'}.`, usage);
  }
  return n;
}
