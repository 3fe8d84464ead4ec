/**
 * Exercise 3's tests, as a process they can kill and restart: a workflow on
 * the implementation under test (IMPL_ROOT), and the learner's inspect() and
 * listRuns() asked from a *new* process — the only honest way to show they
 * read the log and not some memory of the process that wrote it.
 *
 *   03-inspect.ts start <id> <n>            a workflow calling the step add_item n times
 *   03-inspect.ts inspect <id> [status]     INSPECT <json of engine.inspect(id)>
 *                                           RUNS <json of engine.listRuns({ status })>
 *
 * Reads DATABASE_URL (a scratch schema of the run's database). Course-owned:
 * a submission's own copy of this file, if it has one, is never run.
 */
import pg from 'pg';
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';

type Engine = typeof import('../../../exercises/03-inspect/engine.ts');
type Queries = typeof import('../../../exercises/03-inspect/queries.ts');

runMain(async () => {
  const [command, id, arg] = process.argv.slice(2);
  if ((command !== 'start' && command !== 'inspect') || !id) {
    throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 03-inspect.ts start <id> <n> | inspect <id> [status]');
  }
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  const { createEngine } = await importImpl<Engine>('03-inspect', 'engine.ts');
  const { createSchema } = await importImpl<Queries>('03-inspect', 'queries.ts');

  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    await createSchema(db);
    const engine = createEngine({
      db,
      workflows: {
        loop: async (ctx, { items }: { items: number }) => {
          const added: string[] = [];
          for (let i = 0; i < items; i++) added.push(await ctx.step('add_item', async () => `item ${i}`));
          return { added };
        },
      },
    });
    if (command === 'start') {
      const output = await engine.start('loop', id, { items: Number(arg ?? 3) });
      console.log(`workflow ${id} completed: ${JSON.stringify(output)}`);
    } else {
      console.log(`INSPECT ${JSON.stringify((await engine.inspect(id)) ?? null)}`);
      const status = arg as 'running' | 'completed' | 'failed' | undefined;
      console.log(`RUNS ${JSON.stringify(await engine.listRuns(status ? { status } : {}))}`);
    }
  } finally {
    await db.end();
  }
});
