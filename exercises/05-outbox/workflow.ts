/**
 * The order workflow for exercise 5: charge the card, reserve the stock —
 * and *queue* the email. send_email is now a transaction step: its outbox row
 * and its record commit together, and the mail service is not called at all
 * while the workflow runs (outbox.ts's relay sends it later).
 */
import { chargeCard, reserveInventory, sendEmail, type Order } from '../../shared/world/services.ts';
import type { Workflow } from '../../chapters/05-idempotency-keys/engine.ts';
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
    // TODO 1: this still calls the mail service, as chapter 5 did — and fails
    // when mail is down. Make send_email a *transaction* step that queues the
    // email with enqueueEmail (outbox.ts), on the step's tx, under its key.
    const email = await ctx.step('send_email', ({ idempotencyKey }) => sendEmail(order, { idempotencyKey }));
    return { chargeId: charge.id, onHand: stock.onHand, emailQueued: email.id };
  };
}
