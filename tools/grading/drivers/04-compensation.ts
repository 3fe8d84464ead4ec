/**
 * Exercise 4's tests, as a process they can kill and restart: the shop's
 * order workflow (04-compensation-shop.ts) on the implementation under test
 * (IMPL_ROOT).
 *
 *   04-compensation.ts start <orderId> <qty>   run (or resume) the order; prints
 *                                              `workflow <id> completed: …` or `workflow <id> failed: <message>`
 *
 * Reads DATABASE_URL (a scratch schema of the run's database, where the spec
 * created the shop's tables). A workflow that ends failed is a normal outcome
 * here: exit 0. Course-owned: a submission's own copy of this file, if it has
 * one, is never run.
 */
import pg from 'pg';
import { CourseError, runMain } from '../../../shared/errors.ts';
import { importImpl } from '../impl.ts';
import { order, orderWorkflow } from './04-compensation-shop.ts';

type Engine = typeof import('../../../exercises/04-compensation/engine.ts');
type Queries = typeof import('../../../exercises/04-compensation/queries.ts');

runMain(async () => {
  const [command, orderId, qty] = process.argv.slice(2);
  if (command !== 'start' || !orderId) {
    throw new CourseError(`bad arguments: ${process.argv.slice(2).join(' ')}`, 'usage: 04-compensation.ts start <orderId> <qty>');
  }
  if (process.env.GRADE_WORKDIR) process.chdir(process.env.GRADE_WORKDIR);
  const { createEngine } = await importImpl<Engine>('04-compensation', 'engine.ts');
  const { createSchema } = await importImpl<Queries>('04-compensation', 'queries.ts');

  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    await createSchema(db);
    const engine = createEngine({ db, workflows: { order: orderWorkflow(db) } });
    try {
      const receipt = await engine.start('order', orderId, order(orderId, Number(qty ?? 1)));
      console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
    } catch (thrown) {
      console.log(`workflow ${orderId} failed: ${thrown instanceof Error ? thrown.message : String(thrown)}`);
    }
  } finally {
    await db.end();
  }
});
