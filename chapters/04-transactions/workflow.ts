/**
 * The course's running example, the order workflow, written against this
 * chapter's engine: charge the card, reserve the stock, send the email.
 *
 * New in chapter 4: the stock update runs on the transaction the engine hands
 * it, so it commits together with the step's record. The workflow no longer
 * needs a database handle of its own.
 */
import { chargeCard, reserveInventory, sendEmail, type Order } from '../../shared/world/services.ts';
import type { Workflow } from './engine.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

export function orderWorkflow(): Workflow<Order, Receipt> {
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', () => chargeCard(order));
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order));
    const email = await ctx.step('send_email', () => sendEmail(order));
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}
