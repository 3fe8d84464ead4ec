/**
 * Chapter 4 as a process — what the demo, the tests and the matrix start,
 * kill and restart:
 *
 *   main.ts start <orderId>…    start these orders' workflows (or resume them, if the log has them)
 *   main.ts recover             resume every workflow the log says is unfinished
 *   main.ts status <orderId>…   what the log knows: STATUS {"order-1":"completed",…}
 *
 * Reads DATABASE_URL (the world's database: the log's tables live beside the
 * inventory table) and WORLD_URL (payments, mail) from the environment.
 */
import pg from 'pg';
import { CourseError, runMain } from '../../shared/errors.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { createEngine } from './engine.ts';
import { createSchema } from './queries.ts';
import { orderWorkflow } from './workflow.ts';

const usage = 'usage: main.ts start <orderId>… | recover | status <orderId>…';

runMain(async () => {
  const [command, ...orderIds] = process.argv.slice(2);
  if (command !== 'start' && command !== 'recover' && command !== 'status') {
    throw new CourseError(`unknown command "${command ?? ''}"`, usage);
  }
  if (!process.env.DATABASE_URL) {
    throw new CourseError('DATABASE_URL is not set: chapter 4 keeps its log in PostgreSQL.', 'Run it through the demo (npm run chapter 4) or the tests, which set it.');
  }
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    await createSchema(db);
    const engine = createEngine({ db, workflows: { order: orderWorkflow() } });

    if (command === 'start') {
      // Put every order in the log first, then run them one by one: if we
      // crash during the first, the others are already in the log, and
      // `recover` will find them too.
      for (const orderId of orderIds) await engine.create('order', orderId, demoOrder(orderId));
      for (const orderId of orderIds) {
        const receipt = await engine.start('order', orderId, demoOrder(orderId));
        console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
      }
    } else if (command === 'recover') {
      const resumed = await engine.recover();
      console.log(`recovered ${resumed.length} unfinished workflow(s)${resumed.length ? `: ${resumed.join(', ')}` : ''}`);
    } else {
      console.log(`STATUS ${JSON.stringify(await engine.status(orderIds))}`);
    }
  } finally {
    await db.end();
  }
});
