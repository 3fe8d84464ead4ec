/**
 * The course's running example, the order workflow, written against this
 * chapter's engine: charge the card, reserve the stock, send the email.
 *
 * New in chapter 5: each HTTP step hands its idempotency key to the provider.
 * The engine gives every step a key that is the same on every replay of that
 * step (`order-1:0` for the charge of order-1, `order-1:2` for its email), and
 * the payment and mail providers do at most one thing per key: a replay after
 * a crash gets the original charge and the original email back.
 *
 * The email could have gone another way — a row in an outbox table, written in
 * a transaction step and sent later by a relay. See the README for why we use
 * the key here, and what the outbox would buy.
 */
import { chargeCard, reserveInventory, sendEmail, type Order } from '../../shared/world/services.ts';
import type { Workflow } from './types.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

export function orderWorkflow(): Workflow<Order, Receipt> {
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', ({ idempotencyKey }) => chargeCard(order, { idempotencyKey }));
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order));
    const email = await ctx.step('send_email', ({ idempotencyKey }) => sendEmail(order, { idempotencyKey }));
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}
