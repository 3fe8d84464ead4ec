/**
 * A workflow's history as a timeline: what the log recorded, in order, with
 * what the log implies between the records — which claim (fencing token) ran
 * each part, where a run went to wait (a back-off, a sleep), and where one
 * run stopped and another took over.
 *
 * The log stores when each entry was RECORDED, not when its step started. A
 * step's start is known only as "after the previous record of the same run"
 * (exact up to the record's own statement); after a wait it is the wait's
 * end plus however long the claim took, and after a takeover it is unknown.
 * The timeline says which: `startedAt` null (unknown), or `approx` (a claim's
 * latency included).
 *
 * Tokens tell the story (chapter 8's queries.ts):
 *   - every claim is token + 1;
 *   - a run that goes to wait releases the workflow with token + 1 as well,
 *     so the run after a wait is normally token + 2;
 *   - so a new token where the previous run did not go to wait — or more than
 *     2 after a wait — means a run stopped without a word (killed, frozen past
 *     its lease) and a later claim took over; the tokens skipped are claims
 *     that recorded nothing before they too stopped.
 */
import type { Log, WorkflowRow } from '../../chapters/08-failures-and-time/queries.ts';
import type { WorkflowTimes } from './queries.ts';

interface Timed {
  /** When the log recorded it (database clock). */
  at: Date;
  /** The fencing token of the run that recorded it. */
  token: number;
  /** When its work started, as far as the log tells; null: unknown (after a takeover). */
  startedAt: Date | null;
  /** at − startedAt; null when startedAt is. */
  durationMs: number | null;
  /** startedAt includes a claim's latency (after a wait, or the first claim). */
  approx: boolean;
}

export type TimelineEvent =
  | ({ type: 'step'; seq: number; name: string; output: unknown; error: { name: string; message: string; attempts: number } | null } & Timed)
  | ({ type: 'attempt-failed'; seq: number; name: string; attempt: number; error: { name: string; message: string }; retryAt: Date | null } & Timed)
  | { type: 'sleep'; seq: number; name: string; at: Date; token: number; until: Date }
  /** The workflow held by nobody until `until`: a back-off before a retry, or a sleep. `current`: it is waiting now. */
  | { type: 'wait'; reason: 'retry' | 'sleep'; from: Date; until: Date; ms: number; current: boolean }
  /**
   * A new run: `first` (the first claim), `resumed` (the claim after a wait),
   * `takeover` (the run before it stopped without a word). `lost`: claims
   * between the two that recorded nothing. `owner`: known for the latest claim only.
   */
  | {
      type: 'claim';
      token: number;
      kind: 'first' | 'resumed' | 'takeover';
      /** The token of the run that recorded the entry before (0: none). */
      previousToken: number;
      /** The previous run went to wait (a back-off, a sleep) and released the workflow. */
      afterWait: boolean;
      /** A takeover: the claims whose runs stopped without a word (killed, frozen past their lease), first to last. */
      stopped: { from: number; to: number } | null;
      /** How many of those recorded nothing. */
      lost: number;
      owner: string | null;
    }
  /** Where it is now. */
  | { type: 'now'; state: 'running' | 'runnable' | 'waiting' | 'completed' | 'failed'; at: Date; token: number; owner: string | null; leaseMsLeft: number; startedAt: Date | null; sinceMs: number | null; nextSeq: number; error: string | null };

export interface Timeline {
  /** The axis: from the workflow's creation to its end (or now, or the end of its wait). */
  from: Date;
  to: Date;
  events: TimelineEvent[];
  /** How many times another run took over (claim events of kind takeover). */
  takeovers: number;
}

type Entry = { kind: 'step'; step: Log['steps'][number] } | { kind: 'failure'; failure: Log['failures'][number] };

/** The timeline of one workflow, from its row, its log and its times — a pure function of what inspect reads. */
export function buildTimeline(row: WorkflowRow, log: Log, times: WorkflowTimes, waiting: { reason: 'retry' | 'sleep'; until: Date } | null): Timeline {
  // A step that failed for good has its last attempt twice: in step_failures
  // (retry_at null) and as the step's entry with the error. Shown once, as the entry.
  const failedForGood = new Set(log.steps.filter((s) => s.error).map((s) => s.seq));
  const entries: Entry[] = [];
  for (const step of log.steps) {
    for (const failure of log.failures) {
      if (failure.seq === step.seq && !(failure.retryAt === null && failedForGood.has(failure.seq))) entries.push({ kind: 'failure', failure });
    }
    entries.push({ kind: 'step', step });
  }
  // Failed attempts of the step not recorded yet (it waits for its retry, or runs it now).
  const recorded = new Set(log.steps.map((s) => s.seq));
  for (const failure of log.failures) if (!recorded.has(failure.seq)) entries.push({ kind: 'failure', failure });

  const events: TimelineEvent[] = [];
  let previousToken = 0;
  let previousAt = times.createdAt;
  let afterWait: Date | null = null;
  let takeovers = 0;
  let to = times.createdAt;
  const later = (date: Date) => {
    if (date > to) to = date;
  };

  /** A claim event when `token` is a new run; returns when that run's work started, as far as known. */
  const newRun = (token: number): { startedAt: Date | null; approx: boolean } => {
    if (token === previousToken) return { startedAt: previousAt, approx: false };
    const expected = previousToken === 0 ? 1 : afterWait ? previousToken + 2 : previousToken + 1;
    const kind = token === expected && previousToken === 0 ? 'first' : token === expected && afterWait ? 'resumed' : 'takeover';
    const lost = Math.max(0, token - expected);
    // The runs that stopped without a word: the previous one (unless it went to wait or there was none), and every claim between.
    const firstStopped = previousToken === 0 || afterWait ? expected : previousToken;
    const stopped = kind === 'takeover' ? { from: Math.min(firstStopped, token - 1), to: token - 1 } : null;
    if (kind === 'takeover') takeovers++;
    events.push({ type: 'claim', token, kind, previousToken, afterWait: afterWait !== null, stopped, lost, owner: token === row.fencingToken ? row.leaseOwner : null });
    if (kind === 'first') return { startedAt: times.createdAt, approx: true };
    if (kind === 'resumed') return { startedAt: afterWait, approx: true };
    return { startedAt: null, approx: false };
  };
  const timed = (token: number, at: Date): Timed => {
    const { startedAt, approx } = newRun(token);
    return { at, token, startedAt, approx, durationMs: startedAt ? Math.max(0, at.getTime() - startedAt.getTime()) : null };
  };

  for (const entry of entries) {
    if (entry.kind === 'failure') {
      const f = entry.failure;
      events.push({ type: 'attempt-failed', seq: f.seq, name: f.name, attempt: f.attempt, error: f.error, retryAt: f.retryAt, ...timed(f.fencingToken, f.failedAt) });
      later(f.failedAt);
      previousToken = f.fencingToken;
      previousAt = f.failedAt;
      afterWait = null;
      if (f.retryAt) {
        const current = waiting?.reason === 'retry' && waiting.until.getTime() === f.retryAt.getTime();
        events.push({ type: 'wait', reason: 'retry', from: f.failedAt, until: f.retryAt, ms: f.retryAt.getTime() - f.failedAt.getTime(), current });
        later(f.retryAt);
        afterWait = f.retryAt;
      }
      continue;
    }
    const s = entry.step;
    if (s.kind === 'sleep') {
      newRun(s.fencingToken);
      const until = new Date((s.output as { until: string }).until);
      events.push({ type: 'sleep', seq: s.seq, name: s.name, at: s.recordedAt, token: s.fencingToken, until });
      later(s.recordedAt);
      previousToken = s.fencingToken;
      previousAt = s.recordedAt;
      afterWait = null;
      // A sleep already over when recorded released nothing; one still ahead released the workflow until then.
      if (until > s.recordedAt) {
        const current = waiting?.reason === 'sleep' && waiting.until.getTime() === until.getTime();
        events.push({ type: 'wait', reason: 'sleep', from: s.recordedAt, until, ms: until.getTime() - s.recordedAt.getTime(), current });
        later(until);
        afterWait = until;
      }
      continue;
    }
    events.push({ type: 'step', seq: s.seq, name: s.name, output: s.output, error: s.error, ...timed(s.fencingToken, s.recordedAt) });
    later(s.recordedAt);
    previousToken = s.fencingToken;
    previousAt = s.recordedAt;
    afterWait = null;
  }

  // Where it is now.
  const nextSeq = log.steps.length === 0 ? 0 : log.steps[log.steps.length - 1]!.seq + 1;
  const base = { token: row.fencingToken, owner: row.leaseOwner, leaseMsLeft: row.leaseMsLeft, nextSeq, error: row.error };
  if (row.status === 'running' && waiting) {
    // Its wait is the last event, marked current; the token moved on by the release only.
    events.push({ type: 'now', state: 'waiting', at: times.dbNow, startedAt: null, sinceMs: null, ...base });
    later(times.dbNow);
  } else if (row.status === 'running') {
    const held = row.leaseOwner !== null && row.leaseMsLeft > 0;
    // A claim that has recorded nothing yet is a new run (or one that stopped, if its lease is gone).
    // (After a wait that is over but not yet claimed, the token is the release's: no run yet.)
    const released = afterWait !== null && row.fencingToken === previousToken + 1;
    const run = row.fencingToken > previousToken && !released ? newRun(row.fencingToken) : { startedAt: previousToken === 0 || released ? null : previousAt, approx: false };
    const startedAt = held ? run.startedAt : null;
    events.push({ type: 'now', state: held ? 'running' : 'runnable', at: times.dbNow, startedAt, sinceMs: startedAt ? times.dbNow.getTime() - startedAt.getTime() : null, ...base });
    later(times.dbNow);
  } else {
    if (row.fencingToken > previousToken && !(afterWait && row.fencingToken === previousToken + 1)) newRun(row.fencingToken);
    const startedAt = row.fencingToken === previousToken ? previousAt : null;
    events.push({ type: 'now', state: row.status, at: times.updatedAt, startedAt, sinceMs: startedAt ? times.updatedAt.getTime() - startedAt.getTime() : null, ...base });
    later(times.updatedAt);
  }
  return { from: times.createdAt, to, events, takeovers };
}
