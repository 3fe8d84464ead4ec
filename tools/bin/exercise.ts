/**
 * `npm run exercise N` — test your exercises/NN-name against its tests.
 *
 *   npm run exercise 1                  type-check, run the tests once, show the score
 *   npm run exercise 1 -- --watch       again each time you save
 *   npm run exercise 1 -- --watch --poll   the same, noticing saves by polling only
 *                                       (for folders where file events never arrive:
 *                                       WSL2 on /mnt/c, some Docker mounts, network drives)
 *
 * Starts the course's PostgreSQL (as `npm run chapter` does) and gives the run
 * a database of its own, dropped at the end.
 */
import { parseArgs } from 'node:util';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { startPostgres } from '../../shared/db/server.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { findExercise, readHints, type Exercise } from '../grading/exercises.ts';
import { identity, testExercise, type LearnerRun } from '../grading/learner.ts';
import { stopAllRuns } from '../grading/run-specs.ts';
import { readState } from '../grading/state.ts';
import { watchFolder } from '../grading/watch.ts';

const usage = 'usage: npm run exercise N [-- --watch [--poll]]';

runMain(async () => {
  const { values, positionals } = parseArgs({
    options: { watch: { type: 'boolean', default: false }, poll: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const [which] = positionals;
  if (!which) throw new CourseError('Which exercise?', usage);
  const exercise = findExercise(which);

  const server = await startPostgres({ purpose: 'dev', log: (line) => console.log(paint.dim(line)) });
  const databaseUrl = await createDatabase(server.url, `exercise_${exercise.number}`);
  // Once, whoever asks first: the end of the run, or Ctrl-C.
  let cleaning: Promise<void> | undefined;
  const cleanUp = () =>
    (cleaning ??= (async () => {
      stopAllRuns(); // a test run still going is in a process group of its own: Ctrl-C does not reach it
      await dropDatabase(databaseUrl, server.url).catch(() => {});
      await server.stop();
    })());

  if (!values.watch) {
    const interrupt = () => void cleanUp().finally(() => process.exit(130));
    process.once('SIGINT', interrupt);
    process.once('SIGTERM', interrupt);
    let run: LearnerRun;
    try {
      run = await testExercise(exercise, { databaseUrl, show: true });
    } finally {
      await cleanUp();
    }
    console.log(verdict(exercise, run));
    process.exitCode = run.passed === run.total && run.outcome === 'tested' ? 0 : 1;
    return;
  }

  // Watch mode: one run now, then one per save. A save during a run queues exactly one more run.
  let running = false;
  let again = false;
  const runNow = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        console.clear();
        const run = await testExercise(exercise, { databaseUrl, show: true });
        console.log(verdict(exercise, run));
        console.log(paint.dim(`\nWatching exercises/${exercise.slug} (${watch.mode}) — save a file to run again, Ctrl-C to stop.`));
      } while (again);
    } finally {
      running = false;
    }
  };
  const watch = watchFolder(exercise.dir, () => void runNow(), { poll: values.poll });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    void runNow();
  });
  watch.close();
  await cleanUp();
});

/** The last line: the score, and what to do next. */
function verdict(exercise: Exercise, run: LearnerRun): string {
  if (run.outcome === 'compile-error') return `\n${paint.red(`✗ ${identity(exercise)}: fix the type errors above first.`)}`;
  if (run.passed === run.total) {
    return `\n${paint.green(`✓ ${identity(exercise)}: all ${run.total} tests pass — ${run.points}/${run.maxPoints} points.`)}\n${paint.dim('See where you are: npm run progress')}`;
  }
  const hints = readHints(exercise).length;
  const shown = readState().exercises[exercise.slug]?.hintsShown ?? 0;
  const hint = hints > shown ? `Stuck? npm run hint ${exercise.number} (hint ${shown + 1} of ${hints})` : hints ? `You have seen all ${hints} hints: npm run hint ${exercise.number} -- --again` : '';
  return [
    '',
    paint.yellow(`✗ ${identity(exercise)}: ${run.passed}/${run.total} tests pass — ${run.points}/${run.maxPoints} points.`),
    ...run.failed.map((name) => paint.dim(`  ✗ ${name}`)),
    hint ? paint.dim(hint) : '',
  ].join('\n');
}
