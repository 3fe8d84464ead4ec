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
 */
import type pg from 'pg';
import { toError } from '../../shared/errors.ts';
import { trace } from '../../shared/narrate.ts';
import type { Email, Order } from '../../shared/world/services.ts';
import { inTransaction, type Sql } from './queries.ts';

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
  await tx.query(`INSERT INTO outbox (key, order_id, payload) VALUES ($1, $2, $3::jsonb)`, [key, order.orderId, JSON.stringify(order)]);
  return { queued: key };
}

/**
 * Send every pending email, oldest first, one transaction per email. Returns
 * how many were sent. A send that fails leaves its row pending for the next
 * pass (the relay goes on with the others); a row another relay is sending
 * right now is skipped, not waited for and not sent twice.
 */
export async function relayOutbox(db: pg.Pool, send: SendEmail): Promise<number> {
  let sent = 0;
  const failed: string[] = []; // keys this pass gave up on: not tried again in the same pass
  for (;;) {
    const done = await inTransaction(db, async (tx) => {
      // Lock one pending row; SKIP LOCKED: a row another relay holds is not ours to send.
      const { rows } = await tx.query<{ key: string; payload: Order }>(
        `SELECT key, payload FROM outbox
          WHERE status = 'pending' AND NOT (key = ANY($1::text[]))
          ORDER BY created_at, key
          LIMIT 1
          FOR UPDATE SKIP LOCKED`,
        [failed],
      );
      const row = rows[0];
      if (!row) return 'empty' as const;
      let email: Email;
      try {
        // The row's key: a resend after a crash is the same request, and the provider sends it once.
        email = await send(row.payload, { idempotencyKey: row.key });
      } catch (thrown) {
        trace.info(`outbox: ${row.key} not sent (${toError(thrown).message}); it stays pending`);
        failed.push(row.key);
        return 'failed' as const;
      }
      // Sent, not yet marked: a crash here leaves the row pending (and the lock drops with the connection).
      await tx.query(`UPDATE outbox SET status = 'sent', email_id = $2, sent_at = now() WHERE key = $1`, [row.key, email.id]);
      trace.info(`outbox: sent ${row.key} as ${email.id}`);
      return 'sent' as const;
    });
    if (done === 'empty') return sent;
    if (done === 'sent') sent += 1;
  }
}
