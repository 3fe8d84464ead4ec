/**
 * `engine.send(workflowId, name, payload, { key })`: an event for a workflow,
 * from anywhere — another process, an HTTP handler, a webhook.
 *
 * One transaction, the sender's half of the protocol in queries.ts ("events"):
 * lock the workflow's row FIRST, then deliver the event (once per key) — and
 * if the workflow is parked waiting for it, end that wait right there, in its
 * log. Taking the same lock as the waiter is what makes the wake-up impossible
 * to lose. The send that ends the last wait wakes the workflow: handed to a
 * worker of this process with a free slot, claimed in the send's own statement
 * (as start() does), or else runnable with a NOTIFY for an idle worker
 * elsewhere, and this process's own workers woken in memory. The woken run
 * replays its wait from the log and goes straight on to its next step.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { checkWorkflowId, NoSuchWorkflowError, WorkflowNotRunningError } from './errors.ts';
import { explainMissingSchema } from './migrate.ts';
import { deliverEvent, eventSent, inTransaction, lockForSend, WAKE_CHANNEL, type Delivery } from './queries.ts';
import { checkEventName } from './run.ts';
import type { LocalWorker } from './start.ts';

export interface SendParts {
  db: pg.Pool;
  /** The crash-test hook: `after-event-sent`, once the event is committed. */
  crashPoint(name: string): void;
  /** The payload as the log records it, or a refusal of what JSON cannot carry (too large included). */
  toRecordable(value: unknown, where: string): unknown;
  localWorkers: Set<LocalWorker>;
  /** This process's NOTIFY payload: its own workers ignore it (woken in memory). */
  processTag: string;
}

export function createSend({ db, toRecordable, localWorkers, processTag, crashPoint }: SendParts) {
  return async function send(workflowId: string, name: string, payload: unknown, options: { key?: string } = {}): Promise<{ delivered: boolean; woke: boolean }> {
    checkWorkflowId(workflowId);
    checkEventName(name);
    const key = options.key ?? randomUUID();
    if (typeof key !== 'string' || key === '' || Buffer.byteLength(key) > 1024) throw new RangeError(`an event key is a non-empty string of at most 1024 bytes; got ${JSON.stringify(key)}`);
    if (payload === undefined) throw new RangeError(`the payload of event "${name}" is undefined: send null, or a value`);
    const recordable = toRecordable(payload, `the payload of event "${name}" for workflow ${workflowId}`);
    // A worker of this process with a free slot takes the workflow if this send wakes it: no claim, no NOTIFY.
    // (Its slot is held until the send commits, a lock wait included: one slot fewer for that long.)
    const local = [...localWorkers].find((worker) => worker.reserve('send'));
    const sentAt = performance.now();
    let outcome: Pick<Delivery, 'delivered' | 'woke' | 'workflowName' | 'claim'>;
    try {
      outcome = await inTransaction(db, async (tx) => {
        const target = await lockForSend(tx, workflowId);
        if (!target) throw new NoSuchWorkflowError(`workflow ${workflowId} is not in the log: event "${name}" was not sent`, 'Check the id; start() the workflow before sending it events.');
        if (target.status !== 'running') {
          // A webhook redelivered after its workflow finished: the same event, already delivered — not an error.
          if (await eventSent(tx, { workflowId, name, key })) return { delivered: false, woke: false, workflowName: null, claim: null };
          throw new WorkflowNotRunningError(`workflow ${workflowId} is ${target.status}: nothing will wait for event "${name}", which was not sent`, 'Send events only to running workflows.');
        }
        return deliverEvent(tx, { workflowId, name, key, payload: recordable }, { claimFor: local && { worker: local.name, leaseMs: local.leaseMs, names: local.names }, notify: processTag });
      });
    } catch (thrown) {
      local?.unreserve();
      throw explainMissingSchema(thrown);
    }
    crashPoint('after-event-sent'); // committed: a crash now loses nothing; a resend with the same key is the same event
    if (outcome.claim) local!.take(outcome.claim, sentAt);
    else {
      local?.unreserve();
      // Woken: this process's workers that can run it claim it now (the others would only defer it); the NOTIFY tells the rest.
      if (outcome.woke) for (const worker of localWorkers) if (worker.names.includes(outcome.workflowName!)) worker.wake();
    }
    return { delivered: outcome.delivered, woke: outcome.woke };
  };
}

export { WAKE_CHANNEL };
