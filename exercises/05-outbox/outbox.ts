/**
 * Exercise 5 — the outbox: the email leaves the workflow, and is still sent once.
 *
 * Chapter 5 sent the email from a step, under an idempotency key. That ties
 * the workflow to the mail service: when mail is down, the step fails, and
 * after three attempts the workflow is `failed` — with the card charged and
 * the stock taken. Here the workflow only *queues* the email:
 *
 *   send_email step:   BEGIN; INSERT INTO outbox (key, …); INSERT INTO steps …; COMMIT
 *                      — the row exists exactly when the step is recorded
 *   relay, later:      for each pending row: BEGIN; SELECT … FOR UPDATE SKIP LOCKED;
 *                      send it with Idempotency-Key = the row's key; UPDATE … 'sent'; COMMIT
 *
 * The outbox does not make the key unnecessary. A relay killed after the send
 * and before its COMMIT leaves the row pending: the next relay sends it again.
 * Under the same key, the mail service answers with the first email and sends
 * nothing; without it, the customer gets two.
 *
 * YOUR PART: TODO 1 in workflow.ts, TODO 2 and TODO 3 here. The outbox table
 * is in outbox.sql already. README.md says more; `npm run hint 5` helps.
 *
 * The engine, the log's tables and their queries are chapter 5's, unchanged:
 * this exercise imports them from chapters/05-idempotency-keys/.
 */
import fs from 'node:fs';
import type pg from 'pg';
import type { Email, Order } from '../../shared/world/services.ts';
import { inTransaction, type Sql } from '../../chapters/05-idempotency-keys/queries.ts';

const outboxSql = fs.readFileSync(new URL('./outbox.sql', import.meta.url), 'utf8');

/**
 * Create the outbox table (outbox.sql) if it is not there yet — after chapter
 * 5's `createSchema`, which makes the log's. Under an advisory lock, as
 * `createSchema` does: two processes starting at once take turns.
 */
export async function createOutbox(db: pg.Pool): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('durable-execution-course: exercise 5 outbox'))`);
    await tx.query(outboxSql);
  });
}

/** What the relay calls to send one email: `sendEmail` from shared/world/services.ts, or a test's stand-in. */
export type SendEmail = (order: Order, options: { idempotencyKey: string }) => Promise<Email>;

/** What the send_email step returns (and the log records): the email is queued, under this key. */
export interface Queued {
  queued: string;
}

/**
 * Queue the order's confirmation email, on the step's transaction `tx`: the
 * row commits with the step's record, or not at all. `key` is the step's
 * idempotency key; it is the row's primary key, and the key the relay sends.
 */
export async function enqueueEmail(tx: Sql, key: string, order: Order): Promise<Queued> {
  // TODO 2: INSERT the email's row into `outbox` (see outbox.sql) on `tx`:
  // its key, the order's id, and the order itself as the payload (JSON, cast
  // to jsonb, as queries.ts does it).
  void tx;
  void order;
  return { queued: key };
}

/**
 * Send every pending email, oldest first, one transaction per email. Returns
 * how many were sent. A send that fails leaves its row pending for the next
 * pass (the relay goes on with the others); a row another relay is sending
 * right now is skipped, not waited for and not sent twice.
 */
export async function relayOutbox(db: pg.Pool, send: SendEmail): Promise<number> {
  // TODO 3: the relay. For each pending row, oldest first, in a transaction of
  // its own (`inTransaction` in queries.ts):
  //   - take the row with a lock that another relay skips instead of waiting for;
  //   - send its payload with `send`, under which idempotency key?
  //   - mark it sent (and keep the email's id), then commit.
  // A failed send leaves the row pending; go on with the others, and do not
  // try it again in the same pass. Return how many you sent.
  void db;
  void send;
  return 0;
}
