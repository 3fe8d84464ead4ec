/**
 * `npm run progress` — which exercises pass, as a table and a count.
 *
 * Each exercise's last result is remembered (by `npm run exercise` and by
 * this command). One whose files changed since, or that was never tested, is
 * tested now — quietly — so the table always tells the truth about the files
 * as they are. `--cached` shows the remembered results only, without testing.
 */
import { parseArgs } from 'node:util';
import { createDatabase, dropDatabase } from '../../shared/db/databases.ts';
import { startPostgres, type PostgresServer } from '../../shared/db/server.ts';
import { runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { listExercises, readHints } from '../grading/exercises.ts';
import { testExercise } from '../grading/learner.ts';
import { stopAllRuns } from '../grading/run-specs.ts';
import { fingerprint, readState, type LastRun } from '../grading/state.ts';

runMain(async () => {
  const { values } = parseArgs({ options: { cached: { type: 'boolean', default: false } } });
  const exercises = listExercises();
  const results = new Map<string, LastRun | undefined>();
  let server: PostgresServer | undefined;
  // Ctrl-C: the test run going on is in a process group of its own and would not hear it.
  let stopping: Promise<void> | undefined;
  const stopServer = () => (stopping ??= server?.stop() ?? Promise.resolve());
  const interrupt = () => {
    stopAllRuns();
    void stopServer().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    for (const exercise of exercises) {
      const last = readState().exercises[exercise.slug]?.lastRun;
      if (values.cached || (last && last.fingerprint === fingerprint(exercise))) {
        results.set(exercise.slug, last);
        continue;
      }
      console.log(paint.dim(`testing exercise ${exercise.number} (${last ? 'changed since its last run' : 'never run'})…`));
      server ??= await startPostgres({ purpose: 'dev' });
      const databaseUrl = await createDatabase(server.url, `progress_${exercise.number}`);
      try {
        results.set(exercise.slug, await testExercise(exercise, { databaseUrl, show: false }));
      } finally {
        await dropDatabase(databaseUrl, server.url).catch(() => {});
      }
    }
  } finally {
    await stopServer();
  }

  const state = readState();
  const rows = exercises.map((exercise) => {
    const run = results.get(exercise.slug);
    const hints = readHints(exercise).length;
    const done = run?.outcome === 'tested' && run.passed === run.total;
    const tests = !run ? '–  not run' : run.outcome === 'compile-error' ? '✗  does not compile' : `${done ? '✓' : '✗'}  ${run.passed}/${run.total}`;
    return {
      done,
      cells: [String(exercise.number), exercise.title, tests, run ? `${run.points}/${run.maxPoints}` : '–', `${state.exercises[exercise.slug]?.hintsShown ?? 0}/${hints}`],
    };
  });
  const header = ['#', 'exercise', 'tests', 'points', 'hints'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('   ');
  console.log(`\n${paint.bold(line(header))}`);
  for (const row of rows) console.log(row.done ? paint.green(line(row.cells)) : line(row.cells));

  const passing = rows.filter((r) => r.done).length;
  const testsPassed = [...results.values()].reduce((sum, r) => sum + (r?.passed ?? 0), 0);
  const testsTotal = exercises.reduce((sum, e) => sum + e.points.size, 0);
  console.log(`\n${paint.bold(`${passing}/${exercises.length}`)} exercises pass · ${testsPassed}/${testsTotal} tests`);
  const next = exercises.find((_, i) => !rows[i]!.done);
  if (next) console.log(paint.dim(`Next: npm run exercise ${next.number}`));
});
