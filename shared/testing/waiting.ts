/**
 * Waiting in tests: a pause, polling until something is true, until workflows
 * are completed.
 *
 *   await until('order-1 completed', async () => (await engine.status(['order-1']))['order-1'] === 'completed');
 */
import type pg from 'pg';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ask `check` every `everyMs` until it says true; throw, naming `what`, after `timeoutMs`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 20_000, everyMs = 100 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Wait until every id is completed in the log's `workflows` table (chapters 3
 * on), asking again while the database does not answer (a server restarting).
 */
export async function untilCompleted(db: pg.Pool, ids: string[], { timeoutMs = 30_000 } = {}): Promise<void> {
  const left = () =>
    db
      .query<{ n: number }>(`SELECT count(*)::int AS n FROM workflows WHERE id = ANY($1) AND status <> 'completed'`, [ids])
      .then((r) => r.rows[0]!.n)
      .catch(() => ids.length);
  await until(`workflow(s) ${ids.join(', ')} completed`, async () => (await left()) === 0, { timeoutMs, everyMs: 200 });
}
