/**
 * The course's running example, the order workflow, written against this
 * chapter's engine: charge the card, reserve the stock, send the email.
 *
 * Each HTTP step hands its idempotency key to the provider (chapter 5): a
 * replay after a crash gets the original charge and the original email back.
 *
 * New in chapter 8:
 *   - Every step has a retry policy. A provider that answers 503, or cannot
 *     be reached, is tried again after a back-off the workflow spends waiting
 *     in the database — no worker slot held, nothing lost to a crash. What
 *     another attempt cannot fix fails at once: the world's errors say which
 *     (`retryable`: a 400, an out-of-stock), and the policy asks them.
 *   - An optional cooling-off period before the confirmation email (the
 *     customer may still cancel): a durable sleep. `coolingOffMs` 0 (the
 *     default) calls no sleep at all, so the log is the one chapters 3–7 wrote.
 *
 * New in chapter 9: optionally, after the charge, the order waits for the
 * payment provider's webhook saying the charge settled — an event another
 * process sends (`main.ts send <order> settled`). Off by default, as the sleep.
 * An order cancelled during its cooling-off puts its stock back (the saga's
 * undo, in ctx.nonCancellable). And a batch of orders, each a child workflow.
 */
import { chargeCard, releaseInventory, reserveInventory, sendEmail, type Order } from '../../shared/world/services.ts';
import type { RetryPolicy, Workflow } from './types.ts';

export interface Receipt {
  chargeId: string;
  onHand: number;
  emailId: string;
}

/** The world's errors say whether trying again can help (ServiceError: 5xx, 409, 429, unreachable; OutOfStockError: never). */
const retry: RetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 200,
  maxDelayMs: 5000,
  nonRetryable: (error) => (error as { retryable?: unknown }).retryable === false,
};

export function orderWorkflow({ coolingOffMs = 0, awaitSettlement = false }: { coolingOffMs?: number; awaitSettlement?: boolean } = {}): Workflow<Order, Receipt> {
  return async (ctx, order) => {
    const charge = await ctx.step('charge_card', ({ idempotencyKey }) => chargeCard(order, { idempotencyKey }), { retry });
    if (awaitSettlement) {
      // Holding no worker while it waits; a webhook sent before this line is not lost.
      const settled = await ctx.waitForEvent<{ chargeId: string }>('settled', { timeoutMs: 60_000 });
      if (!settled) throw new Error(`charge ${charge.id} did not settle within a minute`);
    }
    const stock = await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order), { retry });
    try {
      if (coolingOffMs > 0) await ctx.sleep(coolingOffMs);
    } catch (error) {
      // Cancelled during the cooling-off (`durable cancel`): the saga's undo — the stock goes back on the
      // shelf, in a step that runs and is recorded although the workflow is cancelled. (The demo's payment
      // provider has no refunds; a real order would refund the charge here too, the same way.)
      if (ctx.cancelled) await ctx.nonCancellable(() => ctx.transaction('release_inventory', (tx) => releaseInventory(tx, order)));
      throw error;
    }
    const email = await ctx.step('send_email', ({ idempotencyKey }) => sendEmail(order, { idempotencyKey }), { retry });
    return { chargeId: charge.id, onHand: stock.onHand, emailId: email.id };
  };
}

/**
 * A batch of orders (a wholesale customer's, say): each order a child
 * workflow, started together, waited for together — the batch holds no
 * worker while its orders run, and resumes once, when the last has ended. An
 * order that fails does not fail the batch: it is counted.
 */
export function batchWorkflow(): Workflow<{ orders: Order[] }, { completed: number; failed: string[] }> {
  return async (ctx, { orders }) => {
    const children = await Promise.all(orders.map((order) => ctx.startChild<Receipt>('order', order)));
    const ends = await Promise.allSettled(children.map((child) => child.result()));
    const failed = children.filter((_, i) => ends[i]!.status === 'rejected').map((child) => child.id);
    return { completed: orders.length - failed.length, failed };
  };
}

/**
 * A poison workflow, for the demo and the torture run: its second step kills
 * the process that runs it, every time — as the kernel's out-of-memory killer
 * does to a step that loads too much, or a segfault in a native module. No
 * run of it can report back; the claim counts the attempts (maxAttempts), and
 * the claim after the last fails it instead of taking down another worker.
 */
export function poisonWorkflow(): Workflow<{ size: number }, never> {
  return async (ctx, input) => {
    await ctx.step('open_upload', async () => ({ bytes: input.size }));
    return ctx.step('load_whole_file', async () => {
      process.kill(process.pid, 'SIGKILL'); // what the OOM killer does: no exception, no cleanup
      return new Promise<never>(() => {});
    });
  };
}
