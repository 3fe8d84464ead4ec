/**
 * Exercise 6's order workflow, shared by its spec (which starts orders in
 * process) and its driver (the worker processes the crash tests freeze and
 * kill): chapter 6's order, with a slow step in the middle.
 *
 *   charge_card        the world's payment service, under the step's idempotency key
 *   pack               waits `packMs` — longer than the lease — unless the run's
 *                      signal aborts first: then it stops at once, says so, and fails
 *   reserve_inventory  a transaction step: the stock, and its record, in one commit
 *   send_email         the world's mail service, under the step's idempotency key
 *
 * `packMs` belongs to the process running the step (its PACK_MS), not to the
 * order: a frozen worker's pack can be long and its successor's short, and
 * the step's recorded result is the same either way.
 *
 * Course-owned: a submission never supplies this file.
 */
import { chargeCard, reserveInventory, sendEmail, type Order } from '../../../shared/world/services.ts';
import type { Workflow } from '../../../chapters/06-leasing-workers/engine.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

/**
 * Wait `ms`, or until `signal` aborts: then reject with its reason — what a
 * step that passes its signal on (fetch(url, { signal })) does.
 */
export function pause(ms: number, signal: AbortSignal, onAbort?: (reason: unknown) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      onAbort?.(signal.reason);
      reject(signal.reason);
      return;
    }
    const stop = () => {
      clearTimeout(timer);
      onAbort?.(signal.reason);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    }, ms);
    signal.addEventListener('abort', stop, { once: true });
  });
}

/** The order workflow; `say` prints the pack step's lines (the tests wait for them). */
export function orderWorkflow(options: { packMs: number; say?: (line: string) => void }): Workflow<Order, Receipt> {
  const say = options.say ?? (() => {});
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', ({ idempotencyKey }) => chargeCard(order, { idempotencyKey }));
    await ctx.step('pack', async ({ signal }) => {
      say(`pack started: ${order.orderId} (${options.packMs} ms)`);
      await pause(options.packMs, signal, (reason) => say(`pack stopped: ${order.orderId}: ${reason instanceof Error ? reason.message : String(reason)}`));
      return 'packed';
    });
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order));
    const email = await ctx.step('send_email', ({ idempotencyKey }) => sendEmail(order, { idempotencyKey }));
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}
