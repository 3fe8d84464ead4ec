/**
 * Exercise 4's little shop, shared by its spec (in process) and its driver
 * (the process the crash tests kill): the order workflow with a compensation,
 * and the business tables it touches — all in the test's scratch schema.
 *
 *   charges   the payment provider's ledger. A charge is written on its own
 *             connection, in autocommit — outside any step's transaction, as an
 *             HTTP call would be: no rollback of ours can take it back.
 *   refunds   what undoes a charge. The demo world's payment provider has no
 *             refund endpoint, so a refund is a business row, written on the
 *             compensation's `tx`: it commits with the step's record, or not at all.
 *   inventory, stock_movements   the world's own tables (shared/world/schema.sql),
 *             and its reserveInventory(), which throws OutOfStockError
 *             (`retryable: false`) when the shelf is short.
 *
 * Course-owned: a submission never supplies this file.
 */
import fs from 'node:fs';
import type pg from 'pg';
import { reserveInventory, type Order } from '../../../shared/world/services.ts';
import type { Context } from '../../../exercises/04-compensation/engine.ts';

const worldSchema = fs.readFileSync(new URL('../../../shared/world/schema.sql', import.meta.url), 'utf8');

/** The business tables, with `onHand` widgets on the shelf (run once per schema, before any process starts). */
export async function createShop(db: pg.Pool, onHand: number): Promise<void> {
  await db.query(worldSchema);
  await db.query(`
    CREATE TABLE IF NOT EXISTS charges (
      id           bigserial PRIMARY KEY,
      order_id     text      NOT NULL,
      amount_cents int       NOT NULL
    );
    CREATE TABLE IF NOT EXISTS refunds (
      id         bigserial PRIMARY KEY,
      order_id   text      NOT NULL,
      charge_id  text      NOT NULL
    );`);
  await db.query(`INSERT INTO inventory (sku, on_hand) VALUES ('widget', $1) ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand`, [onHand]);
}

/** Put widgets back on the shelf (stock that arrives while a workflow is down). */
export async function restock(db: pg.Pool, onHand: number): Promise<void> {
  await db.query(`UPDATE inventory SET on_hand = $1 WHERE sku = 'widget'`, [onHand]);
}

/** An order for `qty` widgets. */
export function order(orderId: string, qty = 1): Order {
  return { orderId, customer: 'cus_ada', email: 'ada@example.com', amountCents: 4200, sku: 'widget', qty };
}

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

/**
 * The order workflow, with its saga: once the card is charged, a refund is
 * what undoes it — registered, not run. When the stock step then fails for
 * good, the engine runs refund_card.
 */
export function orderWorkflow(db: pg.Pool) {
  return async (ctx: Context, input: Order): Promise<Receipt> => {
    const charge = await ctx.step('charge_card', async () => {
      const { rows } = await db.query<{ id: string }>(
        `INSERT INTO charges (order_id, amount_cents) VALUES ($1, $2) RETURNING 'ch_' || id AS id`,
        [input.orderId, input.amountCents],
      );
      return { id: rows[0]!.id };
    });
    ctx.compensate('refund_card', async (tx) => {
      await tx.query(`INSERT INTO refunds (order_id, charge_id) VALUES ($1, $2)`, [input.orderId, charge.id]);
      return { refunded: charge.id };
    });
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, input));
    const email = await ctx.step('send_email', async () => ({ id: `msg_${input.orderId}` }));
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}

export interface Effects {
  charges: number;
  refunds: number;
  stockDecrements: number;
}

/** How many times each effect really happened for this order. */
export async function effectsOf(db: pg.Pool, orderId: string): Promise<Effects> {
  const { rows } = await db.query<Effects>(
    `SELECT (SELECT count(*)::int FROM charges WHERE order_id = $1) AS charges,
            (SELECT count(*)::int FROM refunds WHERE order_id = $1) AS refunds,
            (SELECT count(*)::int FROM stock_movements WHERE order_id = $1) AS "stockDecrements"`,
    [orderId],
  );
  return rows[0]!;
}

/** The log, as the tests read it: each step's position, name, and whether it is a recorded failure. */
export async function loggedSteps(db: pg.Pool, workflowId: string): Promise<Array<{ seq: number; name: string; failed: boolean }>> {
  const { rows } = await db.query<{ seq: number; name: string; failed: boolean }>(
    `SELECT seq, name, error IS NOT NULL AS failed FROM steps WHERE workflow_id = $1 ORDER BY seq`,
    [workflowId],
  );
  return rows;
}

/** The workflow's row: status and error. */
export async function workflowRow(db: pg.Pool, workflowId: string): Promise<{ status: string; error: string | null } | undefined> {
  const { rows } = await db.query<{ status: string; error: string | null }>(`SELECT status, error FROM workflows WHERE id = $1`, [workflowId]);
  return rows[0];
}
