/**
 * The engine's OpenTelemetry spans, seen through the SDK's in-memory exporter:
 * a span per attempt of a run, a child span per step that runs, a replayed
 * step as an event — and nothing at all before an application registers an SDK.
 */
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { createEngine, migrate } from './index.ts';

let database: TestPool;
let db: pg.Pool;
const exporter = new InMemorySpanExporter();

beforeAll(async () => {
  database = await freshPool('ch09_tracing');
  db = database.db;
  await migrate(db);
});

afterAll(async () => {
  trace.disable();
  context.disable();
  await database?.drop();
});

const attributes = (span: ReadableSpan) => span.attributes;
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('traces through OpenTelemetry', () => {
  it('are off until the application registers an SDK: the engine depends on the API alone, whose tracer records nothing', async () => {
    expect(trace.getTracer('@durable-course/engine').startSpan('probe').isRecording()).toBe(false);
    const engine = createEngine({ db, workflows: { quiet: async (ctx) => ctx.step('only', async () => 1) } });
    const run = await engine.start('quiet', null, { id: 'untraced-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await run.result()).toBe(1);
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it('a span per run and one per step attempt, its children; a failed attempt carries its error, a retry is a new run, a replayed step is an event', async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    await db.query('CREATE TABLE IF NOT EXISTS traced_effects (what text)');
    let calls = 0;
    const engine = createEngine({
      db,
      retry: { initialDelayMs: 50 },
      workflows: {
        traced: async (ctx) => {
          await ctx.step('charge', async () => 'charged');
          await ctx.transaction('reserve', async (tx) => (await tx.query(`INSERT INTO traced_effects VALUES ('reserved')`), 'reserved'));
          return ctx.step('email', async () => {
            if (calls++ === 0) throw new Error('mail server down');
            return 'sent';
          });
        },
      },
    });
    const run = await engine.start('traced', null, { id: 'traced-1' });
    await engine.createWorker({ leaseMs: 5000 }).drain();
    expect(await run.result()).toBe('sent');

    const spans = exporter.getFinishedSpans().filter((span) => attributes(span)['workflow.id'] === 'traced-1');
    const runs = spans.filter((span) => span.name === 'run traced').sort((a, b) => Number(attributes(a)['workflow.fencing_token']) - Number(attributes(b)['workflow.fencing_token']));
    // The first run's email failed: it put the workflow to wait out the back-off (a run that ends well), and the
    // next claim (token 3: the release took 2) ran the email's second attempt.
    expect(runs.map((span) => [attributes(span)['workflow.attempt'], attributes(span)['workflow.fencing_token'], attributes(span)['workflow.waiting'], span.status.code])).toEqual([
      [1, 1, 'retry', SpanStatusCode.UNSET],
      [1, 3, undefined, SpanStatusCode.UNSET],
    ]);
    // The second run replays the two recorded steps: events, not spans.
    expect(runs[1]!.events.map((e) => [e.name, e.attributes?.['step.name']])).toEqual([
      ['step replayed', 'charge'],
      ['step replayed', 'reserve'],
    ]);

    const steps = spans.filter((span) => span.name.startsWith('step '));
    expect(steps.map((span) => [span.name, attributes(span)['step.seq'], attributes(span)['step.kind'], attributes(span)['step.attempt'], span.status.code, parentOf(span) === runs[0]!.spanContext().spanId ? 1 : 2])).toEqual([
      ['step charge', 0, 'step', 1, SpanStatusCode.UNSET, 1],
      ['step reserve', 1, 'transaction', 1, SpanStatusCode.UNSET, 1],
      ['step email', 2, 'step', 1, SpanStatusCode.ERROR, 1],
      ['step email', 2, 'step', 2, SpanStatusCode.UNSET, 2],
    ]);
    // A failed attempt's span carries the step's own error.
    expect(steps[2]!.status.message).toBe('mail server down');
    expect(steps.every((span) => [runs[0]!.spanContext().spanId, runs[1]!.spanContext().spanId].includes(parentOf(span)!))).toBe(true);
    expect(new Set(spans.map((span) => span.spanContext().traceId)).size).toBe(2); // one trace per attempt: each run is a root
  });
});
