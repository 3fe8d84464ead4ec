/**
 * Exercise 3's tests: `inspect(id)` and `listRuns()` answer from the log's
 * tables — including, after a real crash, for a workflow a killed process
 * left half done.
 *
 * Each test gets a fresh schema of the run's database (its own `workflows`
 * and `steps`). The import names the exercise's starter for the type checker;
 * the grading config swaps it for the implementation under test. Points:
 * exercises/03-inspect/points.json.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startChild, type Attempt } from '../../../shared/crash/runner.ts';
import { createEngine, type Workflows } from '../../../exercises/03-inspect/engine.ts';
import { createSchema } from '../../../exercises/03-inspect/queries.ts';
import { childTimeoutMs, crashTest, scratchSchema, type ScratchSchema } from '../spec-kit.ts';

const driver = 'tools/grading/drivers/03-inspect.ts';

let schema: ScratchSchema;
let db: pg.Pool;

beforeEach(async () => {
  vi.spyOn(console, 'log').mockImplementation(() => {}); // the engine's trace lines
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A fresh schema with the log's tables, and an engine on it. */
async function engineWith<W extends Workflows>(workflows: W) {
  schema = await scratchSchema('ex03');
  db = new pg.Pool({ connectionString: schema.url });
  await createSchema(db);
  return createEngine({ db, workflows, attempts: 1 });
}

async function cleanUp(): Promise<void> {
  await db?.end();
  await schema?.drop();
}

const twoSteps = async (ctx: { step<T>(name: string, fn: () => Promise<T>): Promise<T> }, input: { n: number }) => {
  const a = await ctx.step('charge_card', async () => ({ id: `ch_${input.n}` }));
  const b = await ctx.step('send_email', async () => ({ id: `msg_${input.n}` }));
  return { charge: a.id, email: b.id };
};

describe('inspect and listRuns, in process', () => {
  afterEach(cleanUp);

  it("inspect(id) shows the workflow's name, status, input and output, and its steps in order", async () => {
    const engine = await engineWith({ order: twoSteps });
    await engine.start('order', 'order-1', { n: 1 });
    expect(await engine.inspect('order-1')).toEqual({
      id: 'order-1',
      name: 'order',
      status: 'completed',
      input: { n: 1 },
      output: { charge: 'ch_1', email: 'msg_1' },
      error: null,
      steps: [
        { seq: 0, name: 'charge_card', output: { id: 'ch_1' } },
        { seq: 1, name: 'send_email', output: { id: 'msg_1' } },
      ],
    });
  });

  it('inspect(id) of an id the log does not have is undefined', async () => {
    const engine = await engineWith({ order: twoSteps });
    expect(await engine.inspect('order-404')).toBeUndefined();
  });

  it('inspect(id) of a workflow that failed shows its error, and the steps it had recorded', async () => {
    const engine = await engineWith({
      fragile: async (ctx) => {
        await ctx.step('charge_card', async () => 'ch_1');
        return ctx.step('send_email', async (): Promise<string> => {
          throw new Error('mail service unavailable');
        });
      },
    });
    await expect(engine.start('fragile', 'order-2', null)).rejects.toThrow('mail service unavailable');
    const details = await engine.inspect('order-2');
    expect(details).toMatchObject({ status: 'failed', error: 'mail service unavailable', output: null });
    expect(details?.steps).toEqual([{ seq: 0, name: 'charge_card', output: 'ch_1' }]);
  });

  it('listRuns() lists every workflow, oldest first, with its status and how many steps it has recorded', async () => {
    const engine = await engineWith({ order: twoSteps });
    // Created in this order, which is not the order of their ids.
    await engine.start('order', 'order-c', { n: 3 });
    await engine.create('order', 'order-a', { n: 1 });
    await engine.start('order', 'order-b', { n: 2 });
    expect(await engine.listRuns()).toEqual([
      { id: 'order-c', name: 'order', status: 'completed', steps: 2 },
      { id: 'order-a', name: 'order', status: 'running', steps: 0 },
      { id: 'order-b', name: 'order', status: 'completed', steps: 2 },
    ]);
  });

  it("listRuns({ status }) lists only the workflows with that status", async () => {
    const engine = await engineWith({ order: twoSteps });
    await engine.start('order', 'order-1', { n: 1 });
    await engine.create('order', 'order-2', { n: 2 });
    expect(await engine.listRuns({ status: 'running' })).toEqual([{ id: 'order-2', name: 'order', status: 'running', steps: 0 }]);
    expect((await engine.listRuns({ status: 'completed' })).map((run) => run.id)).toEqual(['order-1']);
    expect(await engine.listRuns({ status: 'failed' })).toEqual([]);
  });
});

describe('inspect and listRuns, after a real crash', () => {
  const run = (url: string, args: string[], fault?: string): Promise<Attempt> =>
    startChild({ script: driver, args, fault, env: { DATABASE_URL: url, FORCE_COLOR: '0' }, timeoutMs: childTimeoutMs() }).done;
  const report = (a: Attempt) => `exit ${a.exitCode} signal ${a.signal}\n${a.stdout}${a.stderr}`;
  const printed = (a: Attempt, label: string): unknown => {
    const line = a.stdout.split('\n').find((l) => l.startsWith(`${label} `));
    if (!line) throw new Error(`the process printed no ${label} line:\n${report(a)}`);
    return JSON.parse(line.slice(label.length + 1));
  };

  crashTest('a new process inspects a workflow killed half-way: the steps that committed are there, the one that did not commit is not', async () => {
    const fresh = await scratchSchema('ex03_crash');
    try {
      // Killed while recording the third add_item: inserted, never committed.
      const crashed = await run(fresh.url, ['start', 'cart-1', '5'], 'during-record:add_item@3');
      expect(crashed.crashedAt, report(crashed)).toBe('during-record:add_item@3');

      const inspected = await run(fresh.url, ['inspect', 'cart-1', 'running']);
      expect(inspected.exitCode, report(inspected)).toBe(0);
      expect(printed(inspected, 'INSPECT')).toMatchObject({
        id: 'cart-1',
        status: 'running',
        input: { items: 5 },
        steps: [
          { seq: 0, name: 'add_item', output: 'item 0' },
          { seq: 1, name: 'add_item', output: 'item 1' },
        ],
      });
      expect(printed(inspected, 'RUNS')).toEqual([{ id: 'cart-1', name: 'loop', status: 'running', steps: 2 }]);
    } finally {
      await fresh.drop();
    }
  });
});
