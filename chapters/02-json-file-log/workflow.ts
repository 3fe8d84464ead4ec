/**
 * The course's running example, the order workflow, written against this
 * chapter's engine: charge the card, reserve the stock, send the email.
 */
import type { Queryable } from '../../shared/world/services.ts';
import { chargeCard, reserveInventory, sendEmail, type Order } from '../../shared/world/services.ts';
import type { Workflow } from './engine.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

export function orderWorkflow(db: Queryable): Workflow<Order, Receipt> {
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', () => chargeCard(order));
    const stock = await ctx.step('reserve_inventory', () => reserveInventory(db, order));
    const email = await ctx.step('send_email', () => sendEmail(order));
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}
