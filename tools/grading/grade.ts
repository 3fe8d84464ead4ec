/**
 * Grade submissions: each in its own workspace, its own database and its own
 * processes, under a time limit — the library behind `npm run grade` and the
 * CI check. (The command line, the progress bar and the reports are in
 * cli/grade.ts and reports.ts.)
 *
 *   prepareSubmissions()   copy each submission's code into a workspace, and
 *                          type-check all of them with one compiler run
 *   gradeSubmission()      run every exercise's tests on one of them
 *   gradeAll()             both, for a class, with bounded parallelism
 */
import path from 'node:path';
import { toError } from '../../shared/errors.ts';
import { diagnosticsUnder, typeCheck } from './compile.ts';
import { createSubmissionDatabase, prepareCluster, type ClusterCheck, type SubmissionDatabase } from './database.ts';
import { testsOf, type Exercise } from './exercises.ts';
import { cleanUpUser, detectIsolation, handOver, newSubmissionUser, type Isolation, type SubmissionUser } from './isolation.ts';
import { runSpecs, type TestOutcome } from './run-specs.ts';
import { buildWorkspace, findExercisesFolder, type Workspace } from './workspace.ts';

export type ExerciseStatus = 'pass' | 'fail' | 'error' | 'missing';

export interface GradedTest extends TestOutcome {
  points: number;
  maxPoints: number;
}

export interface ExerciseGrade {
  number: number;
  slug: string;
  title: string;
  status: ExerciseStatus;
  /** Why it is not a pass, in a few lines (a compiler error, a time limit…). */
  message?: string;
  points: number;
  maxPoints: number;
  tests: GradedTest[];
}

export interface SubmissionGrade {
  student: string;
  /** exercism's meaning: pass = every test passed; fail = some failed; error = some exercise could not even be tested. */
  status: 'pass' | 'fail' | 'error';
  message?: string;
  score: number;
  maxScore: number;
  exercises: ExerciseGrade[];
  durationMs: number;
  /** How this submission was kept apart from the grader and the others (isolation.ts). */
  isolation: string;
}

export interface GradeSettings {
  exercises: Exercise[];
  /** The server's admin URL: each submission gets a role and a database of its own on it. */
  adminUrl: string;
  /** The server is the grader's own, made for this run (it may lock down the whole cluster). */
  ownCluster?: boolean;
  /** What prepareCluster found (default: gradeAll runs it; gradeSubmission alone shares the admin role). */
  cluster?: ClusterCheck;
  /** Run the instructor-only tests too. */
  hidden: boolean;
  repeats: number;
  testTimeoutMs: number;
  crashTestTimeoutMs: number;
  submissionTimeoutMs: number;
  /** Stop each exercise at its first failing test (enough to prove a starter fails). */
  bail?: boolean;
  /** What isolation this machine allows (default: detected, see isolation.ts). */
  isolation?: Isolation;
  /** Folders a submission must not see (in namespaces): where the submissions came from (gradeAll sets them). */
  hide?: string[];
}

/** One submission, ready to grade. */
export interface PreparedSubmission {
  student: string;
  workspace: Workspace;
  /** Compiler errors per exercise slug (only exercises that have some). */
  compileErrors: Map<string, string[]>;
  /** The type checker itself failed: every present exercise is an error, with this message. */
  compileFailure?: string;
  /** The submission could not even be copied: every exercise is an error, with this message. */
  failure?: string;
}

/**
 * Copy each submission (a folder: a clone of the course, or a copy of its
 * `exercises/`) into a workspace, and type-check them all in one run.
 */
export async function prepareSubmissions(submissions: Array<{ student: string; dir: string }>, exercises: Exercise[]): Promise<PreparedSubmission[]> {
  const prepared: PreparedSubmission[] = submissions.map(({ student, dir }) => {
    try {
      return { student, workspace: buildWorkspace(findExercisesFolder(dir), exercises), compileErrors: new Map() };
    } catch (thrown) {
      return { student, workspace: buildWorkspace(undefined, exercises), compileErrors: new Map(), failure: `Could not copy the submission: ${toError(thrown).message}` };
    }
  });
  const folders = prepared.flatMap((p) => [...p.workspace.present].map((slug) => `${p.workspace.implRoot}/${slug}`));
  const checked = await typeCheck(folders);
  for (const p of prepared) {
    if (checked.failure) p.compileFailure = checked.failure;
    for (const slug of p.workspace.present) {
      const errors = diagnosticsUnder(checked.diagnostics, `${p.workspace.implRoot}/${slug}`, p.workspace.implRoot);
      if (errors.length > 0) p.compileErrors.set(slug, errors);
    }
  }
  return prepared;
}

/** Run every exercise's tests on one prepared submission, in a fresh database, within its time limit. */
export async function gradeSubmission(submission: PreparedSubmission, settings: GradeSettings): Promise<SubmissionGrade> {
  const started = Date.now();
  const deadline = started + settings.submissionTimeoutMs;
  const isolation = settings.isolation ?? detectIsolation();
  settings = { ...settings, isolation };
  const cluster = settings.cluster ?? { rolesPerSubmission: false, summary: 'shared: every submission connects as the admin role' };
  let database: SubmissionDatabase | undefined;
  let user: SubmissionUser | undefined;
  const exercises: ExerciseGrade[] = [];
  try {
    if (isolation.kind === 'user') {
      user = newSubmissionUser();
      handOver(submission.workspace.dir, user);
    }
    database = await createSubmissionDatabase(settings.adminUrl, submission.student, cluster);
    for (const exercise of settings.exercises) {
      exercises.push(await gradeExercise(submission, exercise, settings, database.url, deadline, user));
    }
  } catch (thrown) {
    // The grader's own trouble (the database went away): say so for what is left, and go on with the class.
    const message = `The grader could not test this submission: ${toError(thrown).message}`;
    for (const exercise of settings.exercises.slice(exercises.length)) exercises.push(notTested(exercise, settings, 'error', message));
  } finally {
    // Nothing of the submission's may outlive its grading: its processes go before its database.
    if (user) cleanUpUser(user);
    await database?.drop().catch(() => {});
  }
  return { ...summarize(submission.student, exercises, Date.now() - started), isolation: `${isolation.summary}${user ? ` (this one: uid ${user.uid})` : ''}. Database: ${cluster.summary}` };
}

async function gradeExercise(
  submission: PreparedSubmission,
  exercise: Exercise,
  settings: GradeSettings,
  databaseUrl: string,
  deadline: number,
  user: SubmissionUser | undefined,
): Promise<ExerciseGrade> {
  const notes = submission.workspace.notes.get(exercise.slug);
  const noted = (message: string | undefined) => [message, notes?.length ? `Not copied from the submission: ${notes.join('; ')}.` : undefined].filter(Boolean).join('\n') || undefined;
  if (submission.failure) return notTested(exercise, settings, 'error', submission.failure);
  if (!submission.workspace.present.has(exercise.slug)) {
    return notTested(exercise, settings, 'missing', `Not submitted: there is no exercises/${exercise.slug} folder.`);
  }
  const compileErrors = submission.compileFailure ? [submission.compileFailure] : submission.compileErrors.get(exercise.slug);
  if (compileErrors) {
    return notTested(exercise, settings, 'error', noted(`Does not compile (tsc, strict):\n${compileErrors.slice(0, 20).join('\n')}`));
  }
  if (Date.now() >= deadline) {
    return notTested(exercise, settings, 'error', 'Not run: the submission used up its time limit before this exercise.');
  }
  const run = await runSpecs({
    exercise,
    implRoot: submission.workspace.implRoot,
    workdir: submission.workspace.dir,
    databaseUrl,
    hidden: settings.hidden,
    repeats: settings.repeats,
    testTimeoutMs: settings.testTimeoutMs,
    crashTestTimeoutMs: settings.crashTestTimeoutMs,
    deadline,
    bail: settings.bail,
    isolate: true,
    user,
    sandbox: settings.isolation?.kind === 'user' && settings.isolation.namespaces ? { hide: settings.hide ?? [] } : undefined,
  });
  const points = new Map(testsOf(exercise, { hidden: settings.hidden }).map((t) => [t.name, t.points]));
  const tests: GradedTest[] = run.tests.map((test) => {
    const max = points.get(test.name) ?? 0;
    return { ...test, points: test.status === 'pass' ? max : 0, maxPoints: max };
  });
  const couldNotLoad = run.problems.some((p) => p.startsWith('The tests could not be loaded'));
  const status: ExerciseStatus = couldNotLoad ? 'error' : tests.every((t) => t.status === 'pass') ? 'pass' : 'fail';
  return {
    ...identify(exercise),
    status,
    message: noted(run.problems.length ? run.problems.join('\n') : undefined),
    points: sum(tests.map((t) => t.points)),
    maxPoints: sum(tests.map((t) => t.maxPoints)),
    tests,
  };
}

/** An exercise whose tests did not run: every declared test scored 0, with the reason. */
function notTested(exercise: Exercise, settings: GradeSettings, status: ExerciseStatus, message: string | undefined): ExerciseGrade {
  const tests: GradedTest[] = testsOf(exercise, { hidden: settings.hidden }).map((t) => ({
    name: t.name,
    hidden: t.hidden,
    status: 'error',
    message: status === 'missing' ? 'Not submitted.' : `Not run: ${message?.split('\n')[0] ?? 'see the exercise\'s message'}`,
    points: 0,
    maxPoints: t.points,
  }));
  return { ...identify(exercise), status, message, points: 0, maxPoints: sum(tests.map((t) => t.maxPoints)), tests };
}

function identify(exercise: Exercise) {
  return { number: exercise.number, slug: exercise.slug, title: exercise.title };
}

function summarize(student: string, exercises: ExerciseGrade[], durationMs: number): Omit<SubmissionGrade, 'isolation'> {
  const errors = exercises.filter((e) => e.status === 'error');
  const status = errors.length > 0 ? 'error' : exercises.every((e) => e.status === 'pass') ? 'pass' : 'fail';
  return {
    student,
    status,
    message: errors.length ? errors.map((e) => `${e.slug}: ${e.message ?? 'error'}`).join('\n\n') : undefined,
    score: sum(exercises.map((e) => e.points)),
    maxScore: sum(exercises.map((e) => e.maxPoints)),
    exercises,
    durationMs,
  };
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Grade a class: prepare all, then grade `parallel` submissions at a time, reporting each as it finishes. */
export async function gradeAll(
  submissions: Array<{ student: string; dir: string }>,
  settings: GradeSettings & { parallel: number },
  events: { onStart?: (student: string) => void; onDone?: (grade: SubmissionGrade) => void } = {},
): Promise<SubmissionGrade[]> {
  const prepared = await prepareSubmissions(submissions, settings.exercises);
  const isolation = settings.isolation ?? detectIsolation();
  const cluster = settings.cluster ?? (await prepareCluster(settings.adminUrl, { ownCluster: settings.ownCluster ?? false }));
  // Every submission's folder and the folders holding them: no submission may read another's original.
  const hide = [...new Set(submissions.flatMap((s) => [path.resolve(s.dir), path.dirname(path.resolve(s.dir))]))];
  settings = { ...settings, isolation, cluster, hide: [...(settings.hide ?? []), ...hide] };
  const grades: SubmissionGrade[] = new Array(prepared.length);
  let next = 0;
  const worker = async () => {
    while (next < prepared.length) {
      const index = next++;
      const submission = prepared[index]!;
      events.onStart?.(submission.student);
      try {
        grades[index] = await gradeSubmission(submission, settings);
      } finally {
        submission.workspace.remove();
      }
      events.onDone?.(grades[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(settings.parallel, prepared.length)) }, worker));
  return grades;
}
