/**
 * Chapter 0 as a process — what the demo, the tests and the matrix start,
 * kill and restart:
 *
 *   main.ts start <orderId>…    run these orders' workflows
 *   main.ts status <orderId>…   what the log knows (chapter 0 has no log)
 *
 * Reads DATABASE_URL (inventory) and WORLD_URL (payments, mail) from the environment.
 */
import pg from 'pg';
import { CourseError, runMain } from '../../shared/errors.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { runWorkflow } from './engine.ts';
import { orderWorkflow } from './workflow.ts';

runMain(async () => {
  const [command, ...orderIds] = process.argv.slice(2);
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    if (command === 'start') {
      for (const orderId of orderIds) {
        const receipt = await runWorkflow(orderId, orderWorkflow(db), demoOrder(orderId));
        console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
      }
    } else if (command === 'status') {
      console.log('STATUS null'); // no log: nothing knows which orders are done
    } else {
      throw new CourseError(`unknown command "${command ?? ''}"`, 'usage: main.ts start <orderId>… | status <orderId>…');
    }
  } finally {
    await db.end();
  }
});
