/**
 * Exercise 9: chapter 9's send, with its transaction taken out (TODO 1; its
 * other place is endChild, in run.ts). The checks of the arguments, the slot
 * reserved before it and the handover after the COMMIT are the chapter's; the
 * statements you need are in queries.ts, section "events": lockForSend,
 * eventSent and deliverEvent (the last is TODO 3).
 *
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
import { checkWorkflowId, NoSuchWorkflowError, WorkflowNotRunningError } from '../../chapters/09-waiting-for-the-world/errors.ts';
import { explainMissingSchema } from '../../chapters/09-waiting-for-the-world/migrate.ts';
import { deliverEvent, eventSent, inTransaction, lockForSend, WAKE_CHANNEL, type Delivery } from './queries.ts';
import { checkEventName } from './run.ts';
import type { LocalWorker } from '../../chapters/09-waiting-for-the-world/start.ts';

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
    // (Given: the handover around the transaction, as start() does it. `local` is that worker, or undefined.)
    // (Its slot is held until the send commits, a lock wait included: one slot fewer for that long.)
    const local = [...localWorkers].find((worker) => worker.reserve('send'));
    const sentAt = performance.now();
    let outcome: Pick<Delivery, 'delivered' | 'woke' | 'workflowName' | 'claim'>;
    try {
      outcome = await inTransaction(db, async (tx) => {
        // TODO 1: the sender's half of the protocol, in this ONE transaction (`tx`;
        // inTransaction commits when this returns, and rolls back if it throws):
        //
        // 1. Lock the workflow's row FIRST — lockForSend(tx, workflowId) — before
        //    anything else looks or writes. It waits while a waiter's transaction
        //    holds the row; then it says what the workflow is. No row: throw a
        //    NoSuchWorkflowError (errors.ts: a message, then what to do about it).
        // 2. Not 'running' (completed, failed, cancelled): nothing will ever wait
        //    for the event. If this very event (workflow, name, key) was sent
        //    before — eventSent — it is a webhook redelivered after its workflow
        //    finished: not an error, answer
        //    { delivered: false, woke: false, workflowName: null, claim: null }.
        //    Otherwise throw a WorkflowNotRunningError.
        // 3. Deliver the event, still under the lock: deliverEvent (TODO 3) keeps
        //    it once per key, ends the wait it fills if the workflow is parked
        //    for it, and wakes the workflow at its last. Pass it
        //    `{ claimFor: local && { worker: local.name, leaseMs: local.leaseMs, names: local.names }, notify: processTag }`:
        //    if it wakes a workflow `local` has code for, it claims it for
        //    `local` (its answer's `claim`), and the code after the COMMIT
        //    below hands it over.
        //
        // Answer what deliverEvent answers. Why this order, and what goes wrong
        // in any other: README.md ("the lost wake-up").
        void tx;
        void key;
        void recordable;
        throw new Error(`TODO 1: engine.send is not written yet (exercises/09-lost-wake-up/events.ts): event "${name}" for workflow ${workflowId} was not sent`);
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
