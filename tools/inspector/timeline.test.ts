/**
 * The timeline read from a log: which claim ran what, where a run went to
 * wait, where one took over — from tokens alone, as chapter 8 writes them.
 */
import { describe, expect, it } from 'vitest';
import type { Log, WorkflowRow } from '../../chapters/08-failures-and-time/queries.ts';
import { buildTimeline, type TimelineEvent } from './timeline.ts';

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms);

function row(fields: Partial<WorkflowRow>): WorkflowRow {
  return { id: 'w', name: 'report', input: {}, status: 'completed', output: null, error: null, fencingToken: 1, leaseOwner: 'B', leaseMsLeft: 0, attempts: 1, maxAttempts: 5, deadlineInMs: null, ...fields };
}

function step(seq: number, name: string, token: number, ms: number, extra: Partial<Log['steps'][number]> = {}): Log['steps'][number] {
  return { workflowId: 'w', seq, name, kind: 'step', output: { ok: seq }, error: null, fencingToken: token, recordedAt: at(ms), ...extra };
}

const times = (updatedMs: number, nowMs = updatedMs) => ({ createdAt: at(0), updatedAt: at(updatedMs), deadlineAt: null, leaseExpiresAt: at(updatedMs), dbNow: at(nowMs) });
const shape = (events: TimelineEvent[]) =>
  events.map((e) => (e.type === 'claim' ? `claim ${e.token} ${e.kind}${e.stopped ? ` stopped ${e.stopped.from}-${e.stopped.to}` : ''}` : e.type === 'now' ? `now ${e.state}` : e.type === 'wait' ? `wait ${e.reason}${e.current ? ' current' : ''}` : `${e.type} ${'name' in e ? e.name : ''}@${'token' in e ? e.token : ''}`));

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
