/**
 * `npm run chapter 3` — the log in PostgreSQL, told in three parts:
 *
 *   1. three orders in one process, killed right after order-2's charge is
 *      recorded; a new process runs `recover` and finishes all three:
 *      exactly once each ✓
 *   2. the log itself: the rows of the `steps` table
 *   3. killed after the stock update, before its record → the stock is
 *      decremented twice ✗ (what chapter 4 is about)
 */
import pg from 'pg';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';
import { listAllSteps } from './queries.ts';

/** Print the `steps` table, one row per recorded step, as psql would (roughly). */
async function showSteps(databaseUrl: string): Promise<void> {
  const db = new pg.Pool({ connectionString: databaseUrl });
  try {
    const steps = await listAllSteps(db);
    const cut = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text);
    say.line(paint.dim(`    ${'workflow_id'.padEnd(12)} ${'seq'.padEnd(4)} ${'name'.padEnd(18)} output`));
    for (const step of steps) {
      say.line(`  ${paint.yellow('┆')} ${step.workflowId.padEnd(12)} ${String(step.seq).padEnd(4)} ${step.name.padEnd(18)} ${paint.dim(cut(JSON.stringify(step.output), 44))}`);
    }
  } finally {
    await db.end();
  }
}

demo(3, async ({ world, run, ledger }) => {
  say.explain(
    'In chapter 2 the log was one JSON file. Each process read it, changed its own copy and wrote\n' +
      'the whole file back — so two processes sharing it erased each other’s records.\n' +
      'Now the log is two tables in PostgreSQL, next to the inventory: `workflows` (one row per\n' +
      'workflow) and `steps` (one row per finished step, keyed by its position 0, 1, 2, …).\n' +
      'Recording a step is one INSERT and a COMMIT; nobody else’s rows are touched.',
  );

  // ── 1. A crash, and recover() ─────────────────────────────────────────────
  const orders = ['order-1', 'order-2', 'order-3'];
  say.title('1. Three orders, a crash, and recover()');
  say.explain(
    'One process starts three orders. It writes all three into `workflows` first, then runs them\n' +
      'one by one. We kill it (SIGKILL) the moment order-2’s charge is committed to the log.\n' +
      'The next process does not get a list of orders: it runs `recover`, which asks the table\n' +
      'for every workflow still `running` and resumes each.',
  );
  await run({ orders, faults: ['after-record:charge_card@2'], restartArgs: ['recover'] });
  const once = await ledger(orders);
  say.verdict(
    once,
    once
      ? 'All three orders: one charge, one stock decrement, one email. order-2’s charge came back from the log (↺).'
      : 'Not exactly once — that should not happen here.',
  );

  // ── 2. The log is a table ─────────────────────────────────────────────────
  say.title('2. The log, as rows');
  say.explain(
    'This is the `steps` table now (SELECT * FROM steps). One row per step, keyed by workflow and\n' +
      'position; replaying order-2 read its rows in one query, in seq order:\n',
  );
  await showSteps(world.databaseUrl);
  say.explain(
    '\nOn replay the engine also checks that the code calls the same step at each position as the\n' +
      'log says; a changed workflow stops with a NonDeterminismError instead of mixing up results.',
  );

  // ── 3. What a separate commit cannot fix ──────────────────────────────────
  say.title('3. Crash after the stock update, before its record');
  say.explain(
    'order-4 this time, killed right after reserve_inventory took the stock — before the step’s\n' +
      'INSERT. The stock UPDATE committed on its own; the record never did.',
  );
  await run({ orders: ['order-4'], faults: ['after-effect:reserve_inventory'] });
  const stockOnce = await ledger(['order-4']);
  say.verdict(
    stockOnce,
    stockOnce
      ? 'order-4’s stock was taken once — that should not happen in this chapter.'
      : 'order-4’s stock was decremented twice: the UPDATE and its record were two commits, and we died between them.',
  );
  say.explain(
    'Both live in the same database now. Chapter 4 runs the stock UPDATE and the step’s INSERT in\n' +
      'ONE transaction: they commit together, or not at all. (The charge happens in another system;\n' +
      'no transaction of ours can include it — that comes after.)',
  );
});
