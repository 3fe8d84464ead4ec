/**
 * A workflow's history as a timeline: what the log recorded, in order, with
 * what the log implies between the records — which claim (fencing token) ran
 * each part, where a run went to wait (a back-off, a sleep, a park for
 * events), and where one run stopped and another took over.
 *
 * The log stores when each entry was RECORDED, not when its step started. A
 * step's start is known only as "after the previous record of the same run"
 * (exact up to the record's own statement); after a wait it is the wait's
 * end plus however long the claim took, and after a takeover it is unknown.
 * The timeline says which: `startedAt` null (unknown), or `approx` (a claim's
 * latency included).
 *
 * Tokens tell the story (chapter 9's queries.ts):
 *   - every claim is token + 1;
 *   - a run that goes to wait releases the workflow with token + 1 as well,
 *     so the run after a wait is normally token + 2;
 *   - so a new token where the previous run did not go to wait — or more than
 *     2 after a wait — means a run stopped without a word (killed, frozen past
 *     its lease) and a later claim took over; the tokens skipped are claims
 *     that recorded nothing before they too stopped.
 *
 * Chapter 9's waits for events are told differently from sleeps: a sleep's
 * entry is recorded by the run that goes to sleep, but a wait's entry — the
 * event it got, or its timeout — once the wait is over: by the SEND that
 * filled it (deliverEvent, in the send's statement: the entry's time is the
 * event's `sent_at`, its token the park's), or by the run after the park (a
 * timeout, or an event that came while no park was there to fill). While it
 * lasts, the wait is a row of `waits` instead. So:
 *   - a park in progress (or cut short by a cancel: its rows stay) is read
 *     from the `waits` rows, at their position in the log — before the waits
 *     of the same park that sends have filled already;
 *   - a park that is over is inferred from the wait's entry: recorded by its
 *     send, or two tokens or more after the run before it (the park's
 *     release, then the claim that took the event), with an event sent after
 *     that run's last record (or a timeout) — an event already there would
 *     have been taken at once, with no park. It lasted from that record (≈:
 *     the park itself is not recorded) until the send that filled the last of
 *     its waits.
 * Entries recorded together — children started in one transaction, waits
 * that ended together, or the waits of one park filled by their sends — are
 * one row of the timeline.
 */
import type { Log, WorkflowRow, waitingOf } from '../../chapters/09-waiting-for-the-world/queries.ts';
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

/** How a wait of a park ended, as its entry in the log says. */
export interface WaitEnded {
  seq: number;
  /** The event's name (`durable:child:<id>` for a child's end). */
  name: string;
  outcome: 'event' | 'timeout';
  /** The event it took: the send's key, its payload, when it was sent (null when the events table did not say). */
  key: string | null;
  payload: unknown;
  sentAt: Date | null;
  /** The child whose end this is (a wait of handle.result()), or null. */
  child: string | null;
}

/** What ended a wait: its time ran out (a back-off, a sleep), its events came, a timeout, a cancel request, the deadline; null while it lasts. */
export type WaitEnd = 'time' | 'event' | 'timeout' | 'cancel' | 'deadline' | null;

export type TimelineEvent =
  | ({ type: 'step'; seq: number; name: string; output: unknown; error: { name: string; message: string; attempts: number } | null } & Timed)
  | ({ type: 'attempt-failed'; seq: number; name: string; attempt: number; error: { name: string; message: string }; retryAt: Date | null } & Timed)
  | { type: 'sleep'; seq: number; name: string; at: Date; token: number; until: Date }
  /** Children started (ctx.startChild), in one transaction: their ids are `<this id>/<seq>`. */
  | ({ type: 'child'; seq: number; children: Array<{ seq: number; name: string; id: string }> } & Timed)
  /** Waits for events that ended together: each one's event, or its timeout. `bySend`: recorded by the sends that filled them, while parked (`at`: the last). */
  | { type: 'event'; seq: number; at: Date; token: number; waits: WaitEnded[]; bySend: boolean }
  /**
   * The workflow held by nobody from `from` until `until`: a back-off before a
   * retry, a sleep, or a park for events (`events`: their names; `until` null:
   * no timeout). `current`: it is waiting now. `approxFrom`: the park's start
   * is not recorded; `from` is the last record before it.
   */
  | { type: 'wait'; reason: 'retry' | 'sleep' | 'event'; from: Date; until: Date | null; ms: number | null; current: boolean; endedBy: WaitEnd; events?: string[]; approxFrom?: boolean }
  /** engine.cancel() (or durable cancel, or the inspector's button) asked for it to stop. */
  | { type: 'cancel'; at: Date; reason: string | null }
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
      /** The previous run went to wait (a back-off, a sleep, a park) and released the workflow. */
      afterWait: boolean;
      /** A takeover: the claims whose runs stopped without a word (killed, frozen past their lease), first to last. */
      stopped: { from: number; to: number } | null;
      /** How many of those recorded nothing. */
      lost: number;
      owner: string | null;
    }
  /** Where it is now. */
  | {
      type: 'now';
      state: 'running' | 'runnable' | 'waiting' | 'completed' | 'failed' | 'cancelled';
      at: Date;
      token: number;
      owner: string | null;
      leaseMsLeft: number;
      startedAt: Date | null;
      sinceMs: number | null;
      nextSeq: number;
      error: string | null;
      /** Running with a cancel request: its run stops at its next step (compensation excepted). */
      cancelRequested: boolean;
    };

export interface Timeline {
  /** The axis: from the workflow's creation to its end (or now, or the end of its wait). */
  from: Date;
  to: Date;
  events: TimelineEvent[];
  /** How many times another run took over (claim events of kind takeover). */
  takeovers: number;
}

/** What chapter 9 keeps beside the log, for the timeline: the events sent (when), the waits in progress, the cancel request. All optional. */
export interface TimelineExtras {
  events?: Array<{ name: string; key: string; sentAt: Date; takenAtSeq: number | null }>;
  waits?: Array<{ seq: number; name: string; until: Date | null }>;
  cancelRequestedAt?: Date | null;
  cancelReason?: string | null;
}

type Step = Log['steps'][number];
type Entry =
  | { kind: 'step'; step: Step }
  | { kind: 'failure'; failure: Log['failures'][number] }
  | { kind: 'children'; steps: Step[] }
  | { kind: 'events'; steps: Step[]; bySend: boolean }
  | { kind: 'park'; waits: Array<{ seq: number; name: string; until: Date | null }> };

const CHILD_EVENT = 'durable:child:';

/** The timeline of one workflow, from its row, its log and its times — a pure function of what the inspector reads. */
export function buildTimeline(row: WorkflowRow, log: Log, times: WorkflowTimes, waiting: ReturnType<typeof waitingOf>, extras: TimelineExtras = {}): Timeline {
  const cancelAt = extras.cancelRequestedAt ?? null;
  const nextSeq = log.steps.length === 0 ? 0 : log.steps[log.steps.length - 1]!.seq + 1;
  // The waits it is parked in: the rows, or (without them) what its row says, placed at the end.
  const parkWaits = extras.waits ?? (row.waitEvents ?? []).map((name, i) => ({ seq: nextSeq + i, name, until: row.waitUntil }));
  const sent = new Map<number, { key: string; sentAt: Date }>();
  for (const event of extras.events ?? []) if (event.takenAtSeq !== null) sent.set(event.takenAtSeq, event);
  /** The wait's entry was recorded by the send of its event (one statement: the same time), not by a run. */
  const filledBySend = (step: Step) => sent.get(step.seq)?.sentAt.getTime() === step.recordedAt.getTime();

  // A step that failed for good has its last attempt twice: in step_failures
  // (retry_at null) and as the step's entry with the error. Shown once, as the entry.
  const failedForGood = new Set(log.steps.filter((s) => s.error).map((s) => s.seq));
  const entries: Entry[] = [];
  for (const step of log.steps) {
    for (const failure of log.failures) {
      if (failure.seq === step.seq && !(failure.retryAt === null && failedForGood.has(failure.seq))) entries.push({ kind: 'failure', failure });
    }
    // Children started together, waits ended together: one statement, one token, one time — one row.
    // Waits of one park filled by their sends: one token (the park's), each its own time — one row too.
    const last = entries[entries.length - 1];
    const bySend = step.kind === 'event' && filledBySend(step);
    const together = (kind: 'children' | 'events') =>
      last?.kind === kind &&
      last.steps[0]!.fencingToken === step.fencingToken &&
      last.steps[last.steps.length - 1]!.seq === step.seq - 1 &&
      (last.kind === 'events' && last.bySend ? bySend : !bySend && last.steps[0]!.recordedAt.getTime() === step.recordedAt.getTime());
    if (step.kind === 'child') {
      if (together('children')) (last as { steps: Step[] }).steps.push(step);
      else entries.push({ kind: 'children', steps: [step] });
    } else if (step.kind === 'event') {
      if (together('events')) (last as { steps: Step[] }).steps.push(step);
      else entries.push({ kind: 'events', steps: [step], bySend });
    } else entries.push({ kind: 'step', step });
  }
  // Failed attempts of the step not recorded yet (it waits for its retry, or runs it now).
  const recorded = new Set(log.steps.map((s) => s.seq));
  for (const failure of log.failures) if (!recorded.has(failure.seq)) entries.push({ kind: 'failure', failure });
  // The park in progress (or cut short), at its position: before the first entry after its first wait.
  if (parkWaits.length > 0) {
    const first = Math.min(...parkWaits.map((w) => w.seq));
    const seqOf = (entry: Entry) => (entry.kind === 'failure' ? entry.failure.seq : entry.kind === 'step' ? entry.step.seq : entry.kind === 'park' ? -1 : entry.steps[0]!.seq);
    let at = entries.findIndex((entry) => seqOf(entry) > first);
    if (at < 0) at = entries.length;
    // Waits of this park that sends filled already (their entries carry the park's token, the row's while it waits) come after it.
    const ofThisPark = (entry: Entry | undefined) => entry?.kind === 'events' && entry.bySend && entry.steps[0]!.fencingToken === row.fencingToken;
    if (waiting?.reason === 'event') while (at > 0 && ofThisPark(entries[at - 1])) at--;
    entries.splice(at, 0, { kind: 'park', waits: parkWaits });
  }

  const events: TimelineEvent[] = [];
  let previousToken = 0;
  let previousAt = times.createdAt;
  let afterWait: Date | null = null;
  /** The token of the last park shown (the release's): the waits its sends filled carry it. */
  let parkToken: number | null = null;
  let takeovers = 0;
  let to = times.createdAt;
  const later = (date: Date) => {
    if (date > to) to = date;
  };
  const expectedClaim = () => (previousToken === 0 ? 1 : afterWait ? previousToken + 2 : previousToken + 1);

  /** A claim event when `token` is a new run; returns when that run's work started, as far as known. */
  const newRun = (token: number): { startedAt: Date | null; approx: boolean } => {
    if (token === previousToken) return { startedAt: previousAt, approx: false };
    const expected = expectedClaim();
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
  /** The entry at `at` by `token` is the run's latest: the next entry is measured from it. */
  const recordedBy = (token: number, at: Date) => {
    later(at);
    previousToken = token;
    previousAt = at;
    afterWait = null;
  };
  /** A back-off's or a sleep's end: its time, unless a cancel request or the deadline came first (either makes it runnable at once). */
  const endOfTimedWait = (from: Date, until: Date): { until: Date; endedBy: WaitEnd } => {
    let end: { until: Date; endedBy: WaitEnd } = { until, endedBy: 'time' };
    if (cancelAt && cancelAt > from && cancelAt < end.until) end = { until: cancelAt, endedBy: 'cancel' };
    if (times.deadlineAt && times.deadlineAt > from && times.deadlineAt < end.until) end = { until: times.deadlineAt, endedBy: 'deadline' };
    return end;
  };
  /**
   * A run parked for events here (it recorded nothing about it: the park is a
   * release). The parker is the run that recorded the entry before — or,
   * after another wait (or at the very start), a claim that recorded nothing
   * before it parked: its claim is shown. From then on the workflow is
   * released: the next run is expected two tokens on.
   */
  const park = (from: { at: Date; approx: boolean } | null, wait: Omit<Extract<TimelineEvent, { type: 'wait' }>, 'type' | 'reason' | 'from' | 'ms' | 'approxFrom'>) => {
    if (previousToken === 0 || afterWait) {
      const parker = expectedClaim();
      const run = newRun(parker);
      previousToken = parker;
      previousAt = run.startedAt ?? afterWait ?? previousAt;
      afterWait = null;
    }
    parkToken = previousToken + 1;
    const start = from ?? { at: previousAt, approx: true };
    const until = wait.until && wait.until < start.at ? start.at : wait.until;
    events.push({ type: 'wait', reason: 'event', from: start.at, ...wait, until, ms: until ? until.getTime() - start.at.getTime() : null, approxFrom: start.approx });
    later(until ?? times.dbNow);
    previousAt = start.at;
    afterWait = wait.current ? null : until ?? times.dbNow;
  };

  entries.forEach((entry, index) => {
    switch (entry.kind) {
      case 'failure': {
        const f = entry.failure;
        events.push({ type: 'attempt-failed', seq: f.seq, name: f.name, attempt: f.attempt, error: f.error, retryAt: f.retryAt, ...timed(f.fencingToken, f.failedAt) });
        recordedBy(f.fencingToken, f.failedAt);
        if (f.retryAt) {
          const current = waiting?.reason === 'retry' && waiting.until.getTime() === f.retryAt.getTime();
          const end = current ? { until: f.retryAt, endedBy: null } : endOfTimedWait(f.failedAt, f.retryAt);
          events.push({ type: 'wait', reason: 'retry', from: f.failedAt, until: end.until, ms: end.until.getTime() - f.failedAt.getTime(), current, endedBy: end.endedBy });
          later(end.until);
          afterWait = end.until;
        }
        return;
      }
      case 'step': {
        const s = entry.step;
        if (s.kind === 'sleep') {
          newRun(s.fencingToken);
          const until = new Date((s.output as { until: string }).until);
          events.push({ type: 'sleep', seq: s.seq, name: s.name, at: s.recordedAt, token: s.fencingToken, until });
          recordedBy(s.fencingToken, s.recordedAt);
          // A sleep already over when recorded released nothing; one still ahead released the workflow until then.
          if (until > s.recordedAt) {
            const current = waiting?.reason === 'sleep' && waiting.until.getTime() === until.getTime();
            const end = current ? { until, endedBy: null } : endOfTimedWait(s.recordedAt, until);
            events.push({ type: 'wait', reason: 'sleep', from: s.recordedAt, until: end.until, ms: end.until.getTime() - s.recordedAt.getTime(), current, endedBy: end.endedBy });
            later(end.until);
            afterWait = end.until;
          }
          return;
        }
        events.push({ type: 'step', seq: s.seq, name: s.name, output: s.output, error: s.error, ...timed(s.fencingToken, s.recordedAt) });
        recordedBy(s.fencingToken, s.recordedAt);
        return;
      }
      case 'children': {
        const first = entry.steps[0]!;
        const children = entry.steps.map((s) => ({ seq: s.seq, name: s.name, id: String((s.output as { id?: unknown } | null)?.id ?? '?') }));
        events.push({ type: 'child', seq: first.seq, children, ...timed(first.fencingToken, first.recordedAt) });
        recordedBy(first.fencingToken, first.recordedAt);
        return;
      }
      case 'events': {
        const first = entry.steps[0]!;
        const token = first.fencingToken;
        const waits: WaitEnded[] = entry.steps.map((s) => {
          const output = s.output as { payload?: unknown; key?: string; timedOut?: boolean } | null;
          const child = s.name.startsWith(CHILD_EVENT) ? s.name.slice(CHILD_EVENT.length) : null;
          if (output?.timedOut) return { seq: s.seq, name: s.name, outcome: 'timeout', key: null, payload: undefined, sentAt: null, child };
          return { seq: s.seq, name: s.name, outcome: 'event', key: output?.key ?? null, payload: output?.payload, sentAt: sent.get(s.seq)?.sentAt ?? null, child };
        });
        if (entry.bySend) {
          // Recorded by the sends, while it was parked: no run's work. The park came first — shown already
          // if it is in progress (its rows), else inferred here: it lasted until the last of these sends.
          const at = new Date(Math.max(...entry.steps.map((s) => s.recordedAt.getTime())));
          if (parkToken !== token) park(null, { until: at, current: false, endedBy: 'event', events: waits.map((w) => w.name) });
          events.push({ type: 'event', seq: first.seq, at, token, waits, bySend: true });
          later(at);
          return;
        }
        if (token !== previousToken) {
          // Recorded by a new run: did a run park for these waits first (see the top of this file)?
          const parker = previousToken === 0 || afterWait ? expectedClaim() : previousToken;
          const since = afterWait ?? previousAt;
          const timedOut = waits.some((w) => w.outcome === 'timeout');
          const lastSent = waits.reduce<Date | null>((latest, w) => (w.sentAt && (!latest || w.sentAt > latest) ? w.sentAt : latest), null);
          if (token >= parker + 2 && (timedOut || (lastSent !== null && lastSent > since))) {
            const until = timedOut ? first.recordedAt : lastSent!;
            park(null, { until, current: false, endedBy: timedOut ? 'timeout' : 'event', events: waits.map((w) => w.name) });
          }
        }
        newRun(token);
        events.push({ type: 'event', seq: first.seq, at: first.recordedAt, token, waits, bySend: false });
        recordedBy(token, first.recordedAt);
        return;
      }
      case 'park': {
        const current = row.status === 'running' && waiting?.reason === 'event';
        const last = index === entries.length - 1;
        // The park's own statement set updated_at; nothing after it does, until the workflow ends.
        const from = last && row.status === 'running' ? { at: times.updatedAt, approx: false } : null;
        const start = from?.at ?? afterWait ?? previousAt;
        if (current) {
          park(from, { until: waiting.until, current: true, endedBy: null, events: entry.waits.map((w) => w.name) });
          return;
        }
        // Over: whichever came first made it runnable — a cancel request, the sends that filled its waits, a timeout, the deadline.
        const ends: Array<{ until: Date; endedBy: WaitEnd }> = [];
        if (cancelAt && cancelAt >= start) ends.push({ until: cancelAt, endedBy: 'cancel' });
        const arrived = new Map<string, Date[]>();
        for (const event of extras.events ?? []) if (event.takenAtSeq === null) arrived.set(event.name, [...(arrived.get(event.name) ?? []), event.sentAt]);
        const needed = new Map<string, number>();
        for (const w of entry.waits) needed.set(w.name, (needed.get(w.name) ?? 0) + 1);
        if ([...needed].every(([name, n]) => (arrived.get(name)?.length ?? 0) >= n)) {
          const filled = [...needed].map(([name, n]) => arrived.get(name)![n - 1]!);
          ends.push({ until: new Date(Math.max(...filled.map((d) => d.getTime()))), endedBy: 'event' });
        }
        const timeouts = entry.waits.map((w) => w.until).filter((u): u is Date => u !== null);
        const soonest = timeouts.length ? new Date(Math.min(...timeouts.map((d) => d.getTime()))) : null;
        if (soonest && soonest <= times.dbNow) ends.push({ until: soonest, endedBy: 'timeout' });
        if (times.deadlineAt && times.deadlineAt >= start && times.deadlineAt <= times.dbNow) ends.push({ until: times.deadlineAt, endedBy: 'deadline' });
        ends.sort((a, b) => a.until.getTime() - b.until.getTime());
        park(from, { ...(ends[0] ?? { until: times.updatedAt, endedBy: null }), current: false, events: entry.waits.map((w) => w.name) });
        return;
      }
    }
  });

  // Where it is now.
  const base = { token: row.fencingToken, owner: row.leaseOwner, leaseMsLeft: row.leaseMsLeft, nextSeq, error: row.error, cancelRequested: cancelAt !== null && row.status === 'running' };
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

  // The cancel request, where it falls in time: before the first row that happened after it.
  if (cancelAt) {
    const timeOf = (e: TimelineEvent): Date | null => (e.type === 'claim' ? null : e.type === 'wait' ? e.from : e.at);
    let at = events.length - 1; // the 'now' row at the latest
    for (let i = 0; i < events.length; i++) {
      const time = timeOf(events[i]!);
      if (time && time > cancelAt) {
        at = i;
        // A claim belongs with the row it precedes.
        while (at > 0 && events[at - 1]!.type === 'claim') at--;
        break;
      }
    }
    events.splice(at, 0, { type: 'cancel', at: cancelAt, reason: extras.cancelReason ?? null });
    later(cancelAt);
  }
  return { from: times.createdAt, to, events, takeovers };
}
