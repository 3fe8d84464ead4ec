/**
 * The timeline read from a log: which claim ran what, where a run went to
 * wait, where one took over — from tokens alone, as chapter 9 writes them —
 * and chapter 9's parks for events (told by the entry the send that filled a
 * wait records — or, for a timeout, the run after the park — or by the waits
 * rows while it lasts), children started, and
 * cancel requests.
 */
import { describe, expect, it } from 'vitest';
import type { Log, WorkflowRow } from '../../chapters/09-waiting-for-the-world/queries.ts';
import { buildTimeline, type TimelineEvent } from './timeline.ts';

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms);

function row(fields: Partial<WorkflowRow>): WorkflowRow {
  return { id: 'w', name: 'report', input: {}, status: 'completed', output: null, error: null, fencingToken: 1, leaseOwner: 'B', leaseMsLeft: 0, attempts: 1, maxAttempts: 5, deadlineInMs: null, waitEvents: null, waitUntil: null, parentId: null, ...fields };
}

function step(seq: number, name: string, token: number, ms: number, extra: Partial<Log['steps'][number]> = {}): Log['steps'][number] {
  return { workflowId: 'w', seq, name, kind: 'step', output: { ok: seq }, error: null, fencingToken: token, recordedAt: at(ms), ...extra };
}

const times = (updatedMs: number, nowMs = updatedMs) => ({ createdAt: at(0), updatedAt: at(updatedMs), deadlineAt: null, leaseExpiresAt: at(updatedMs), dbNow: at(nowMs) });
const shape = (events: TimelineEvent[]) =>
  events.map((e) => {
    switch (e.type) {
      case 'claim':
        return `claim ${e.token} ${e.kind}${e.stopped ? ` stopped ${e.stopped.from}-${e.stopped.to}` : ''}`;
      case 'now':
        return `now ${e.state}`;
      case 'wait':
        return `wait ${e.reason}${e.current ? ' current' : ''}${e.endedBy && e.endedBy !== 'time' ? ` by ${e.endedBy}` : ''}`;
      case 'child':
        return `child ${e.children.map((c) => c.id).join(',')}@${e.token}`;
      case 'event':
        return `event ${e.waits.map((w) => `${w.name}:${w.outcome}`).join(',')}@${e.token}`;
      case 'cancel':
        return `cancel ${e.reason}`;
      default:
        return `${e.type} ${e.name}@${e.token}`;
    }
  });
const entry = (seq: number, name: string, token: number, ms: number, kind: Log['steps'][number]['kind'], output: unknown) => step(seq, name, token, ms, { kind, output });
const sentAt = (ms: number) => at(ms);

describe('the timeline', () => {
  it('a failed attempt, its back-off, a sleep, and a takeover after the sleep (the claim after it was killed)', () => {
    // The log of the fixture's report {flaky: 1, sleepMs: 500}, worker A killed during upload: tokens 1, 3, 6.
    const log: Log = {
      steps: [
        step(0, 'fetch_rows', 1, 311),
        step(1, 'render_pdf', 3, 1244),
        { ...step(2, 'sleep', 3, 1246), kind: 'sleep', output: { until: at(1746).toISOString() } },
        step(3, 'upload', 6, 3059),
        step(4, 'email_link', 6, 3361),
      ],
      failures: [{ seq: 1, attempt: 1, name: 'render_pdf', error: { name: 'ServiceError', message: '503' }, fencingToken: 1, retryAt: at(937), failedAt: at(614) }],
    };
    const timeline = buildTimeline(row({ fencingToken: 6 }), log, times(3363), null);
    expect(shape(timeline.events)).toEqual([
      'claim 1 first',
      'step fetch_rows@1',
      'attempt-failed render_pdf@1',
      'wait retry',
      'claim 3 resumed',
      'step render_pdf@3',
      'sleep sleep@3',
      'wait sleep',
      'claim 6 takeover stopped 5-5', // token 4 was the sleep's release, 5 the claim after it (killed)
      'step upload@6',
      'step email_link@6',
      'now completed',
    ]);
    expect(timeline.takeovers).toBe(1);
    const steps = timeline.events.filter((e) => e.type === 'step');
    expect(steps.map((s) => [s.durationMs, s.approx])).toEqual([
      [311, true], // since the creation: the first claim's latency included
      [307, true], // since the back-off ended
      [null, false], // after a takeover: its start is not in the log
      [302, false], // since the previous record of the same run
    ]);
    expect(timeline.to).toEqual(at(3363));
  });

  it('a worker killed mid-run without a wait: the next token takes over; claims that recorded nothing are counted', () => {
    const log: Log = { steps: [step(0, 'a', 1, 100), step(1, 'b', 1, 200), step(2, 'c', 4, 3000)], failures: [] };
    const timeline = buildTimeline(row({ fencingToken: 4 }), log, times(3100), null);
    const claim = timeline.events.find((e) => e.type === 'claim' && e.kind === 'takeover');
    expect(claim).toMatchObject({ token: 4, previousToken: 1, stopped: { from: 1, to: 3 }, lost: 2, owner: 'B' });
  });

  it('running now: held by its owner; a wait that is over but not yet claimed is no takeover', () => {
    const held = buildTimeline(row({ status: 'running', fencingToken: 2, leaseOwner: 'A', leaseMsLeft: 800 }), { steps: [step(0, 'a', 1, 100)], failures: [] }, times(100, 400), null);
    expect(shape(held.events)).toEqual(['claim 1 first', 'step a@1', 'claim 2 takeover stopped 1-1', 'now running']);

    const failures: Log['failures'] = [{ seq: 1, attempt: 1, name: 'b', error: { name: 'E', message: 'x' }, fencingToken: 1, retryAt: at(500), failedAt: at(200) }];
    const waiting = buildTimeline(row({ status: 'running', fencingToken: 2, leaseOwner: null, leaseMsLeft: 300 }), { steps: [step(0, 'a', 1, 100)], failures }, times(200, 200), { reason: 'retry', until: at(500) });
    expect(shape(waiting.events)).toEqual(['claim 1 first', 'step a@1', 'attempt-failed b@1', 'wait retry current', 'now waiting']);

    const due = buildTimeline(row({ status: 'running', fencingToken: 2, leaseOwner: null, leaseMsLeft: 0 }), { steps: [step(0, 'a', 1, 100)], failures }, times(200, 900), null);
    expect(shape(due.events)).toEqual(['claim 1 first', 'step a@1', 'attempt-failed b@1', 'wait retry', 'now runnable']);
    expect(due.takeovers).toBe(0);
  });

  it('a step that failed for good is shown once, with its error', () => {
    const error = { name: 'DeclinedError', message: 'declined' };
    const log: Log = {
      steps: [step(0, 'validate', 1, 10), step(1, 'charge', 1, 20, { output: null, error: { ...error, attempts: 1 } })],
      failures: [{ seq: 1, attempt: 1, name: 'charge', error, fencingToken: 1, retryAt: null, failedAt: at(20) }],
    };
    const timeline = buildTimeline(row({ status: 'failed', error: 'declined' }), log, times(22), null);
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'step validate@1', 'step charge@1', 'now failed']);
  });

});

describe('chapter 9: parks for events, children, cancellation', () => {
  it('a wait that parked: the run before recorded its last entry, the event was sent later, the run two tokens on took it', () => {
    // order-1 of the demo: charge (token 1), parked for "settled" (release: 2), the send woke it, token 3 took the event.
    const log: Log = {
      steps: [step(0, 'charge_card', 1, 160), entry(1, 'settled', 3, 4350, 'event', { key: 'evt_psp_001', payload: { chargeId: 'ch_1' } }), step(2, 'reserve_inventory', 3, 4385)],
      failures: [],
    };
    const events = [{ name: 'settled', key: 'evt_psp_001', sentAt: sentAt(1900), takenAtSeq: 1 }];
    const timeline = buildTimeline(row({ fencingToken: 3 }), log, times(4400), null, { events });
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'step charge_card@1', 'wait event by event', 'claim 3 resumed', 'event settled:event@3', 'step reserve_inventory@3', 'now completed']);
    const wait = timeline.events.find((e) => e.type === 'wait')!;
    expect(wait).toMatchObject({ from: at(160), until: at(1900), ms: 1740, approxFrom: true, events: ['settled'] });
    const got = timeline.events.find((e) => e.type === 'event')!;
    expect(got).toMatchObject({ seq: 1, waits: [{ outcome: 'event', key: 'evt_psp_001', payload: { chargeId: 'ch_1' }, sentAt: at(1900), child: null }] });
    expect(timeline.takeovers).toBe(0);
    // The step after it: measured from the event's record, the same run.
    expect(timeline.events.find((e) => e.type === 'step' && e.name === 'reserve_inventory')).toMatchObject({ durationMs: 35, approx: false });
  });

  it('an event sent before the wait is taken at once: no park — by the same run, or by a takeover', () => {
    const early = [{ name: 'settled', key: 'k', sentAt: sentAt(50), takenAtSeq: 1 }];
    const same = buildTimeline(row({ fencingToken: 1 }), { steps: [step(0, 'a', 1, 100), entry(1, 'settled', 1, 120, 'event', { key: 'k', payload: 1 })], failures: [] }, times(130), null, { events: early });
    expect(shape(same.events)).toEqual(['claim 1 first', 'step a@1', 'event settled:event@1', 'now completed']);
    // Two tokens on, but the event was there before the run of token 1 recorded `a`: it would have been taken then — so a takeover, not a park.
    const taken = buildTimeline(row({ fencingToken: 3 }), { steps: [step(0, 'a', 1, 100), entry(1, 'settled', 3, 3000, 'event', { key: 'k', payload: 1 })], failures: [] }, times(3100), null, { events: early });
    expect(shape(taken.events)).toEqual(['claim 1 first', 'step a@1', 'claim 3 takeover stopped 1-2', 'event settled:event@3', 'now completed']);
  });

  it('a wait that timed out', () => {
    const log: Log = { steps: [step(0, 'prepare', 1, 100), entry(1, 'approved', 3, 900, 'event', { timedOut: true }), step(2, 'expire', 3, 910)], failures: [] };
    const timeline = buildTimeline(row({ fencingToken: 3 }), log, times(920), null, {});
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'step prepare@1', 'wait event by timeout', 'claim 3 resumed', 'event approved:timeout@3', 'step expire@3', 'now completed']);
    expect(timeline.events.find((e) => e.type === 'event')).toMatchObject({ waits: [{ outcome: 'timeout', key: null, sentAt: null }] });
  });

  it('children started in one transaction are one row; their ends, taken together after one park, one more', () => {
    const t = 200;
    const log: Log = {
      steps: [
        entry(0, 'report', 1, t, 'child', { id: 'w/0' }),
        entry(1, 'report', 1, t, 'child', { id: 'w/1' }),
        entry(2, 'report', 1, t, 'child', { id: 'w/2' }),
        entry(3, 'durable:child:w/0', 3, 2000, 'event', { key: 'end', payload: { status: 'completed', output: { url: 'a' } } }),
        entry(4, 'durable:child:w/1', 3, 2000, 'event', { key: 'end', payload: { status: 'failed', error: 'boom' } }),
        entry(5, 'durable:child:w/2', 3, 2000, 'event', { key: 'end', payload: { status: 'completed', output: { url: 'c' } } }),
        step(6, 'summarize', 3, 2010),
      ],
      failures: [],
    };
    const events = [
      { name: 'durable:child:w/0', key: 'end', sentAt: sentAt(700), takenAtSeq: 3 },
      { name: 'durable:child:w/2', key: 'end', sentAt: sentAt(1800), takenAtSeq: 5 },
      { name: 'durable:child:w/1', key: 'end', sentAt: sentAt(1200), takenAtSeq: 4 },
    ];
    const timeline = buildTimeline(row({ fencingToken: 3 }), log, times(2020), null, { events });
    expect(shape(timeline.events)).toEqual([
      'claim 1 first',
      'child w/0,w/1,w/2@1',
      'wait event by event',
      'claim 3 resumed',
      'event durable:child:w/0:event,durable:child:w/1:event,durable:child:w/2:event@3',
      'step summarize@3',
      'now completed',
    ]);
    // Woken by the last of the three ends; each wait knows whose end it took.
    expect(timeline.events.find((e) => e.type === 'wait')).toMatchObject({ from: at(t), until: at(1800) });
    const ends = timeline.events.find((e) => e.type === 'event')!;
    expect(ends.type === 'event' && ends.waits.map((w) => w.child)).toEqual(['w/0', 'w/1', 'w/2']);
    // Children started apart (another statement) are rows of their own.
    const apart = buildTimeline(row({}), { steps: [entry(0, 'report', 1, 100, 'child', { id: 'w/0' }), entry(1, 'report', 1, 150, 'child', { id: 'w/1' })], failures: [] }, times(160), null, {});
    expect(shape(apart.events)).toEqual(['claim 1 first', 'child w/0@1', 'child w/1@1', 'now completed']);
  });

  it('waits filled by their sends (the entry is the send’s: its time, the park’s token): one park, ended by the last send; the ends one row; the next run resumed', () => {
    const log: Log = {
      steps: [
        entry(0, 'report', 1, 200, 'child', { id: 'w/0' }),
        entry(1, 'report', 1, 200, 'child', { id: 'w/1' }),
        entry(2, 'durable:child:w/0', 2, 700, 'event', { key: 'end', payload: { status: 'completed', output: 'a' } }),
        entry(3, 'durable:child:w/1', 2, 1800, 'event', { key: 'end', payload: { status: 'completed', output: 'b' } }),
        step(4, 'summarize', 3, 1810),
      ],
      failures: [],
    };
    const events = [
      { name: 'durable:child:w/0', key: 'end', sentAt: sentAt(700), takenAtSeq: 2 },
      { name: 'durable:child:w/1', key: 'end', sentAt: sentAt(1800), takenAtSeq: 3 },
    ];
    const timeline = buildTimeline(row({ fencingToken: 3 }), log, times(1820), null, { events });
    expect(shape(timeline.events)).toEqual([
      'claim 1 first',
      'child w/0,w/1@1',
      'wait event by event',
      'event durable:child:w/0:event,durable:child:w/1:event@2',
      'claim 3 resumed',
      'step summarize@3',
      'now completed',
    ]);
    expect(timeline.events.find((e) => e.type === 'wait')).toMatchObject({ from: at(200), until: at(1800) });
    expect(timeline.events.find((e) => e.type === 'event')).toMatchObject({ at: at(1800), bySend: true });
    expect(timeline.takeovers).toBe(0);

    // Parked still, one of its two waits filled by its send: the park (current) first, then that end; the wait left is its row.
    const parked = row({ status: 'running', fencingToken: 2, leaseOwner: null, leaseMsLeft: 9e12, waitEvents: ['durable:child:w/1'] });
    const now = buildTimeline(parked, { steps: log.steps.slice(0, 3), failures: [] }, { ...times(200, 5000), updatedAt: at(200) }, { reason: 'event', events: ['durable:child:w/1'], until: null }, {
      waits: [{ seq: 3, name: 'durable:child:w/1', until: null }],
      events: events.slice(0, 1),
    });
    expect(shape(now.events)).toEqual(['claim 1 first', 'child w/0,w/1@1', 'wait event current', 'event durable:child:w/0:event@2', 'now waiting']);
  });

  it('parked now: the waits rows are its current wait, from the park (its updated_at); events already sent do not wake it until all have come', () => {
    const log: Log = { steps: [entry(0, 'report', 1, 100, 'child', { id: 'w/0' }), entry(1, 'report', 1, 100, 'child', { id: 'w/1' })], failures: [] };
    const waits = [
      { seq: 2, name: 'durable:child:w/0', until: null },
      { seq: 3, name: 'durable:child:w/1', until: null },
    ];
    const parked = row({ status: 'running', fencingToken: 2, leaseOwner: null, leaseMsLeft: 9e12, waitEvents: waits.map((w) => w.name) });
    const timeline = buildTimeline(parked, log, { ...times(120, 5000), updatedAt: at(120) }, { reason: 'event', events: waits.map((w) => w.name), until: null }, {
      waits,
      events: [{ name: 'durable:child:w/0', key: 'end', sentAt: sentAt(900), takenAtSeq: null }],
    });
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'child w/0,w/1@1', 'wait event current', 'now waiting']);
    expect(timeline.events.find((e) => e.type === 'wait')).toMatchObject({ from: at(120), until: null, ms: null, approxFrom: false, endedBy: null });
    expect(timeline.to).toEqual(at(5000));

    // The last end arrives: runnable (the token is still the park's release), the wait over, not a takeover.
    const woken = buildTimeline({ ...parked, leaseMsLeft: 0 }, log, { ...times(120, 6000), updatedAt: at(120) }, null, {
      waits,
      events: [
        { name: 'durable:child:w/0', key: 'end', sentAt: sentAt(900), takenAtSeq: null },
        { name: 'durable:child:w/1', key: 'end', sentAt: sentAt(5500), takenAtSeq: null },
      ],
    });
    expect(shape(woken.events)).toEqual(['claim 1 first', 'child w/0,w/1@1', 'wait event by event', 'now runnable']);
    expect(woken.events.find((e) => e.type === 'wait')).toMatchObject({ until: at(5500) });
    expect(woken.takeovers).toBe(0);
  });

  it('cancelled during a sleep: the sleep is cut short, the request is a row, the compensation runs in the next claim', () => {
    // order-2 of the demo.
    const log: Log = {
      steps: [step(0, 'reserve', 1, 150), entry(1, 'sleep', 1, 190, 'sleep', { until: at(600_190).toISOString() }), step(2, 'release', 3, 2250)],
      failures: [],
    };
    const timeline = buildTimeline(row({ status: 'cancelled', fencingToken: 3, error: 'changed their mind' }), log, times(2260), null, { cancelRequestedAt: at(2180), cancelReason: 'changed their mind' });
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'step reserve@1', 'sleep sleep@1', 'wait sleep by cancel', 'cancel changed their mind', 'claim 3 resumed', 'step release@3', 'now cancelled']);
    expect(timeline.events.find((e) => e.type === 'wait')).toMatchObject({ from: at(190), until: at(2180), ms: 1990 });
    expect(timeline.to).toEqual(at(2260)); // not the sleep's end, ten minutes on
    expect(timeline.events.at(-1)).toMatchObject({ state: 'cancelled', error: 'changed their mind', cancelRequested: false });
  });

  it('cancelled while parked: the waits rows stay, the park ends at the request; running with a request, the page says so', () => {
    const log: Log = { steps: [step(0, 'prepare', 1, 100), step(2, 'undo', 3, 2100)], failures: [] };
    const timeline = buildTimeline(row({ status: 'cancelled', fencingToken: 3, waitEvents: ['approved'] }), log, times(2110), null, {
      waits: [{ seq: 1, name: 'approved', until: at(60_000) }],
      cancelRequestedAt: at(2000),
      cancelReason: 'no longer needed',
    });
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'step prepare@1', 'wait event by cancel', 'cancel no longer needed', 'claim 3 resumed', 'step undo@3', 'now cancelled']);
    expect(timeline.takeovers).toBe(0);

    const asked = buildTimeline(row({ status: 'running', fencingToken: 1, leaseOwner: 'A', leaseMsLeft: 900 }), { steps: [step(0, 'prepare', 1, 100)], failures: [] }, times(100, 300), null, { cancelRequestedAt: at(250), cancelReason: 'stop' });
    expect(shape(asked.events)).toEqual(['claim 1 first', 'step prepare@1', 'cancel stop', 'now running']);
    expect(asked.events.at(-1)).toMatchObject({ cancelRequested: true });
  });

  it('a sleep, then a park: the claim after the sleep recorded nothing before it parked, and is shown', () => {
    const log: Log = {
      steps: [entry(0, 'sleep', 1, 50, 'sleep', { until: at(500).toISOString() }), entry(1, 'approved', 5, 3000, 'event', { key: 'k', payload: true })],
      failures: [],
    };
    const timeline = buildTimeline(row({ fencingToken: 5 }), log, times(3010), null, { events: [{ name: 'approved', key: 'k', sentAt: sentAt(2500), takenAtSeq: 1 }] });
    // 1 slept (release 2), 3 claimed after the sleep and parked (release 4), 5 took the event.
    expect(shape(timeline.events)).toEqual(['claim 1 first', 'sleep sleep@1', 'wait sleep', 'claim 3 resumed', 'wait event by event', 'claim 5 resumed', 'event approved:event@5', 'now completed']);
    expect(timeline.events.filter((e) => e.type === 'wait').map((e) => e.type === 'wait' && [e.from, e.until])).toEqual([
      [at(50), at(500)],
      [at(500), at(2500)], // the claim after the sleep: its start is the sleep's end (≈), its park is not recorded
    ]);
    expect(timeline.takeovers).toBe(0);
  });
});
