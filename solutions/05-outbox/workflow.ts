/**
 * The order workflow for exercise 5: charge the card, reserve the stock —
 * and *queue* the email. send_email is now a transaction step: its outbox row
 * and its record commit together, and the mail service is not called at all
 * while the workflow runs (outbox.ts's relay sends it later).
 */
import { chargeCard, reserveInventory, type Order } from '../../shared/world/services.ts';
import type { Workflow } from './engine.ts';
import { enqueueEmail } from './outbox.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  /** The outbox key the email is queued under, e.g. 'order-1:2'. */
  emailQueued: string;
}

export function orderWorkflow(): Workflow<Order, Receipt> {
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', ({ idempotencyKey }) => chargeCard(order, { idempotencyKey }));
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order));
    const email = await ctx.transaction('send_email', (tx, { idempotencyKey }) => enqueueEmail(tx, idempotencyKey, order));
    return { chargeId: charge.id, onHand: stock.onHand, emailQueued: email.queued };
  };
}
