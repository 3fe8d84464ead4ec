/**
 * Exercise 9: chapter 9's send, with its transaction taken out (TODO 1; its
 * other place is endChild, in run.ts). The checks of the arguments and what
 * comes after the COMMIT are the chapter's; the statements you need are in
 * queries.ts, section "events": lockForSend, eventSent, insertEvent and
 * wakeIfWaiting (the last two are TODO 3).
 *
 * `engine.send(workflowId, name, payload, { key })`: an event for a workflow,
 * from anywhere — another process, an HTTP handler, a webhook.
 *
 * One transaction, the sender's half of the protocol in queries.ts ("events"):
 * lock the workflow's row FIRST, then insert the event (once per key), then
 * wake the workflow if it is parked waiting for that name. Taking the same
 * lock as the waiter is what makes the wake-up impossible to lose; the NOTIFY
 * that rides on the wake makes an idle worker elsewhere claim it at once, and
 * this process's own workers are woken in memory.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { checkWorkflowId, NoSuchWorkflowError, WorkflowNotRunningError } from '../../chapters/09-waiting-for-the-world/errors.ts';
import { explainMissingSchema } from '../../chapters/09-waiting-for-the-world/migrate.ts';
import { eventSent, inTransaction, insertEvent, lockForSend, wakeIfWaiting, WAKE_CHANNEL } from './queries.ts';
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
    const outcome: { delivered: boolean; woke: boolean } = await inTransaction(db, async (tx) => {
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
      //    finished: not an error, answer { delivered: false, woke: false }.
      //    Otherwise throw a WorkflowNotRunningError.
      // 3. Insert the event, once per key: insertEvent answers whether it was
      //    new (`delivered`). The same key again is the same event: not a
      //    second one, and it fills no wait, so it wakes nothing.
      // 4. A new event: wake the workflow if it is parked waiting for it —
      //    wakeIfWaiting(tx, workflowId, name, processTag), still under the lock.
      //
      // Answer { delivered, woke }. Why this order, and what goes wrong in any
      // other: README.md ("the lost wake-up").
      void tx;
      void key;
      void recordable;
      throw new Error(`TODO 1: engine.send is not written yet (exercises/09-lost-wake-up/events.ts): event "${name}" for workflow ${workflowId} was not sent`);
    }).catch((thrown: unknown) => Promise.reject(explainMissingSchema(thrown)));
    crashPoint('after-event-sent'); // committed: a crash now loses nothing; a resend with the same key is the same event
    if (outcome.woke) for (const worker of localWorkers) worker.wake();
    return outcome;
  };
}

export { WAKE_CHANNEL };
