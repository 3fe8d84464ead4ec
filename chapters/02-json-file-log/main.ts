/**
 * Chapter 2 as a process — what the demo, the tests and the matrix start,
 * kill and restart:
 *
 *   main.ts start <orderId>…    run these orders' workflows (or resume them from the log;
 *                               a completed one replays from the log and does nothing)
 *   main.ts status <orderId>…   what the log knows, as one line:
 *                               STATUS {"order-1":"completed","order-2":"running","order-3":"missing"}
 *
 * Reads DATABASE_URL (inventory) and WORLD_URL (payments, mail) from the
 * environment, and WORLD_DIR: the log is $WORLD_DIR/workflow-log.json.
 *
 * LOG_WRITER=naive swaps the atomic writer for a plain truncate-and-write.
 * It exists only to show what that does: a crash mid-write tears the log,
 * and the next start refuses to run.
 */
import path from 'node:path';
import pg from 'pg';
import { CourseError, runMain } from '../../shared/errors.ts';
import { demoOrder } from '../../shared/world/services.ts';
import { openLog, runWorkflow, writeLogAtomically, writeLogNaively, type LogWriter, type WorkflowStatus } from './engine.ts';
import { orderWorkflow } from './workflow.ts';

function logFile(): string {
  const dir = process.env.WORLD_DIR;
  if (!dir) {
    throw new CourseError('WORLD_DIR is not set, so there is nowhere to keep the workflow log.', 'Start this process with the world\'s environment (world.env), or set WORLD_DIR to a directory.');
  }
  return path.join(dir, 'workflow-log.json');
}

function chooseWriter(): LogWriter {
  const choice = process.env.LOG_WRITER ?? 'atomic';
  if (choice === 'atomic') return writeLogAtomically;
  if (choice === 'naive') return writeLogNaively;
  throw new CourseError(`LOG_WRITER=${choice} is not a writer I know.`, 'Use LOG_WRITER=atomic (the default) or LOG_WRITER=naive (to watch a crash tear the log).');
}

runMain(async () => {
  const [command, ...orderIds] = process.argv.slice(2);
  // Read the log once, before anything else: a corrupt log stops us here,
  // before any workflow has had the chance to do anything twice.
  const log = await openLog(logFile(), { writer: chooseWriter() });
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  try {
    if (command === 'start') {
      for (const orderId of orderIds) {
        const receipt = await runWorkflow(log, orderId, orderWorkflow(db), demoOrder(orderId));
        console.log(`workflow ${orderId} completed: ${JSON.stringify(receipt)}`);
      }
    } else if (command === 'status') {
      const status: Record<string, WorkflowStatus> = {};
      for (const orderId of orderIds) status[orderId] = log.statusOf(orderId);
      console.log(`STATUS ${JSON.stringify(status)}`);
    } else {
      throw new CourseError(`unknown command "${command ?? ''}"`, 'usage: main.ts start <orderId>… | status <orderId>…');
    }
  } finally {
    await db.end();
  }
});
