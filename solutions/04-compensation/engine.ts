/**
 * Exercise 4 — compensation: undo what a workflow did, once, when it fails for good.
 *
 * Chapter 4's engine, plus a saga. The order workflow charges the card, then
 * reserves the stock. When the shelf is empty (OutOfStockError: `retryable:
 * false`, trying again cannot help) the customer has paid for nothing. The
 * charge was an HTTP call; no transaction can roll it back. What undoes it is
 * another step — a refund — and that step needs everything a step has: run
 * once, recorded, replayed after a crash, never repeated.
 *
 *   const charge = await ctx.step('charge_card', () => chargeCard(order));
 *   ctx.compensate('refund_card', (tx) => refund(tx, charge));   // remembered, not run
 *   await ctx.transaction('reserve_inventory', (tx) => reserveInventory(tx, order));
 *       → OutOfStockError: the failure is recorded at its position; then
 *         refund_card runs as a transaction step at the next position;
 *         then the workflow is marked failed — at once, no retries.
 *
 * What makes it crash-safe is that a compensation is a step like any other:
 * a restart runs the workflow code again, which replays the charge, registers
 * the same compensation, replays the recorded failure, and finds refund_card
 * already in the log at its position — so it is replayed, not run again.
 * Recording the failure itself matters too: without it, a restart after new
 * stock arrived would reserve it and run on, past a refund already made.
 *
 * (The demo world's payment provider has no refund endpoint, so a refund here
 * is a business row the compensation writes on its `tx`.)
 *
 * Chapter 4's own story, unchanged:
 *
 * Chapter 4 — a step's business writes and its record commit together.
 *
 * The failure it fixes: in chapter 3, `reserve_inventory` updated the stock in
 * one commit and recorded the step in another. A crash between the two left
 * the stock decremented and the log silent, so the restart decremented it
 * again.
 *
 *   before:  step(name, fn):         fn() commits its UPDATE … ; then INSERT step ; COMMIT
 *   after:   transaction(name, fn):  BEGIN ; fn(tx) ; INSERT step ; COMMIT
 *            — one transaction: both happen, or neither does
 *
 * The business tables and the log are in the same PostgreSQL database, so the
 * engine can hand the step a transaction (`tx`) and write the step's record in
 * that very transaction. A crash before COMMIT leaves neither; after COMMIT,
 * the record says the step is done and it is never run again. And if two
 * processes race on the same step, the second INSERT of (workflow, position)
 * fails on the primary key and rolls back that process's business writes with
 * it: only one of them happened.
 *
 * Everything else is chapter 3's engine.
 * All the SQL is in queries.ts; this file is the story.
 */
import type pg from 'pg';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { CourseError, toError } from '../../shared/errors.ts';
import { assertJsonSafe, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';
import {
  completeWorkflow,
  failWorkflow,
  getWorkflow,
  inTransaction,
  insertWorkflow,
  listUnfinishedWorkflows,
  loadSteps,
  recordStep,
  workflowStatuses,
  type StepRow,
  type WorkflowRow,
  type WorkflowStatus,
} from './queries.ts';

/** What a workflow sees: `step`, `transaction`, and now `compensate`. */
export interface Context {
  workflowId: string;
  /** A step whose effect is outside the database (an HTTP call): run, then record. */
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** A step whose effect is SQL on `tx`: the writes and the record commit as one. */
  transaction<T>(name: string, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T>;
  /**
   * What undoes the work done so far, should the workflow fail for good later.
   * Nothing runs now. If the workflow then throws a permanent error
   * (`retryable: false`), the engine runs every registered compensation,
   * newest first, each as a `transaction` step named `name`; then it marks
   * the workflow failed.
   */
  compensate(name: string, fn: (tx: pg.PoolClient) => Promise<unknown>): void;
}

/** One registered compensation: a transaction step to run if the workflow fails for good. */
interface Compensation {
  name: string;
  fn: (tx: pg.PoolClient) => Promise<unknown>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** Every workflow a process can run, by name (`any`: one registry holds workflows of many input and output types). */
export type Workflows = Record<string, Workflow<any, any>>;
type InputOf<W> = W extends Workflow<infer I, unknown> ? I : never;
type OutputOf<W> = W extends Workflow<never, infer O> ? O : never;

/** The log names a workflow this process has no code for. */
export class UnknownWorkflowError extends CourseError {}

/**
 * On replay, the code called a different step at some position than the one
 * the log recorded there: the workflow's code changed while it was running.
 * Going on would hand one step's recorded result to another step.
 */
export class NonDeterminismError extends CourseError {
  constructor(
    readonly workflowId: string,
    readonly seq: number,
    readonly recorded: string,
    /** The step the code calls now; undefined when the code returned without calling one. */
    readonly called: string | undefined,
  ) {
    super(
      `workflow ${workflowId} step #${seq}: the log says ${recorded}, ` +
        (called === undefined ? 'the code now returns without calling it' : `the code now calls ${called}`),
      'The workflow code changed while this workflow was running. Finish running workflows with the code they started with ' +
        '(or give the new code a new workflow name) before you reorder, add or remove steps.',
    );
  }
}

/**
 * Another process recorded this step first (it is running the same workflow).
 * Our transaction rolled back, business writes included; a retry replays the
 * winner's result.
 */
export class StepAlreadyRecordedError extends CourseError {
  constructor(workflowId: string, seq: number, name: string, options?: { cause?: unknown }) {
    super(
      `workflow ${workflowId} step #${seq} ${name} was recorded by another process first; this attempt's writes were rolled back`,
      'Two processes ran the same workflow at once. Chapter 6 stops that with leases.',
      options,
    );
  }
}

/** The workflow failed on every attempt earlier; its error is in the log. */
export class WorkflowFailedError extends CourseError {}

/**
 * A step that failed for good, replayed from the log: the same message as the
 * error it recorded, and just as permanent.
 */
export class StepFailedError extends CourseError {
  readonly retryable = false;
  constructor(
    readonly workflowId: string,
    readonly seq: number,
    readonly stepName: string,
    message: string,
  ) {
    super(message);
  }
}

/** An error that says trying again cannot help: `retryable: false` (OutOfStockError, a 400 from a service, a replayed StepFailedError). */
export function isPermanent(error: unknown): boolean {
  return (error as { retryable?: unknown } | null)?.retryable === false;
}

export interface EngineOptions<W extends Workflows> {
  /** The database holding the `workflows` and `steps` tables (see createSchema in queries.ts). */
  db: pg.Pool;
  /** Every workflow this process can run, by the name the log stores. */
  workflows: W;
  /** In-process attempts before a workflow is marked failed (default 3, as in chapters 0–2). */
  attempts?: number;
}

export function createEngine<W extends Workflows>({ db, workflows, attempts = 3 }: EngineOptions<W>) {
  /** The code registered under `name`, or a clear error. */
  function lookUp(name: string, workflowId: string): Workflow<unknown, unknown> {
    // Object.hasOwn, not `workflows[name]`: a workflow named "toString" must not find Object.prototype.toString.
    const workflow = Object.hasOwn(workflows, name) ? workflows[name] : undefined;
    if (!workflow) {
      const known = Object.keys(workflows).join(', ') || '(none)';
      throw new UnknownWorkflowError(
        `workflow ${workflowId} is a "${name}" workflow, and this process has no workflow registered under that name.`,
        `Registered here: ${known}. Register it with createEngine({ workflows: { ${name}: … } }), or check the spelling.`,
      );
    }
    return workflow as Workflow<unknown, unknown>;
  }

  /**
   * Write a workflow into the log without running it. From this moment on a
   * crash cannot lose it: `recover()` will find it. An id that is already in
   * the log is left as it is.
   */
  async function create<N extends keyof W & string>(name: N, workflowId: string, input: InputOf<W[N]>): Promise<void> {
    lookUp(name, workflowId); // a typo in the name fails here, before it reaches the log
    assertJsonSafe(input, `the input of workflow ${workflowId}`);
    await insertWorkflow(db, { id: workflowId, name, input });
  }

  /** Start a workflow — or, if its id is already in the log, resume it from there. */
  async function start<N extends keyof W & string>(name: N, workflowId: string, input: InputOf<W[N]>): Promise<OutputOf<W[N]>> {
    await create(name, workflowId, input);
    const row = await load(workflowId);
    if (row.name !== name) {
      throw new CourseError(
        `workflow ${workflowId} is already in the log as a "${row.name}" workflow, not "${name}"`,
        'Workflow ids are unique across all workflow names: use another id.',
      );
    }
    return (await run(row)) as OutputOf<W[N]>;
  }

  /** Run the workflow with this id as far as its log allows: replay what is recorded, run the rest. */
  async function resume(workflowId: string): Promise<unknown> {
    return run(await load(workflowId));
  }

  async function load(workflowId: string): Promise<WorkflowRow> {
    const row = await getWorkflow(db, workflowId);
    if (!row) throw new CourseError(`workflow ${workflowId} is not in the log`, 'Start it first: start(name, id, input).');
    return row;
  }

  async function run(row: WorkflowRow): Promise<unknown> {
    if (row.status === 'completed') {
      trace.info(`workflow ${row.id} already completed: nothing to run`);
      return row.output;
    }
    if (row.status === 'failed') {
      throw new WorkflowFailedError(`workflow ${row.id} failed earlier: ${row.error}`, 'Its record stays in the log; start it under a new id to run it again.');
    }
    const workflow = lookUp(row.name, row.id);
    for (let attempt = 1; ; attempt++) {
      // Outside the try: the catch below needs this attempt's compensations.
      let replay: ReturnType<typeof contextFor> | undefined;
      try {
        // 1. Read what the log knows about this workflow: every recorded step, in one query.
        const recorded = await loadSteps(db, row.id);
        if (recorded.length > 0) trace.info(`workflow ${row.id}: ${recorded.length} step(s) in the log, replaying`);
        // 2. Run the code from the top. Recorded steps come back from the log;
        //    the rest run for real and are recorded (see `contextFor`). Note the
        //    input comes from the log, not from whoever asked us to start.
        replay = contextFor(row.id, recorded);
        const output = await workflow(replay.ctx, row.input);
        replay.checkAllRecordedStepsWereCalled();
        // 3. Record the end, the same way we record a step.
        assertJsonSafe(output, `workflow ${row.id}`);
        await inTransaction(db, async (tx) => {
          await completeWorkflow(tx, row.id, output);
          crashPoint('during-record:complete');
        });
        crashPoint('after-record:complete');
        return output;
      } catch (thrown) {
        const error = toError(thrown);
        // A bug in the code, not a hiccup in the world: another attempt would
        // meet it again (and, for a refused result, repeat the step's effect).
        // Leave the workflow `running`, so recover() resumes it once the code is fixed.
        if (error instanceof NonDeterminismError || error instanceof UnserializableResultError) throw error;
        // Failed for good: another attempt would fail the same way. Undo what
        // was done — durably, as steps — then mark the workflow failed, now.
        // (If a compensation throws, the workflow stays `running`: recover()
        // resumes it, replays the refunds already made, and runs the rest.)
        if (isPermanent(error)) {
          if (replay) await replay.runCompensations(error);
          await failWorkflow(db, row.id, error.message);
          throw error;
        }
        if (attempt >= attempts) {
          await failWorkflow(db, row.id, error.message);
          throw error;
        }
        trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
      }
    }
  }

  /** The `Context` for one run of one workflow, replaying `recorded`. */
  function contextFor(workflowId: string, recorded: StepRow[]) {
    // By position, not by array index: steps run in parallel may be recorded out of order.
    const log = new Map(recorded.map((step) => [step.seq, step]));
    let nextSeq = 0;
    /** Registered by the code as it runs — and registered again, identically, when it is replayed. */
    const compensations: Compensation[] = [];

    /** Recorded at this position? Then it must be the same step: return its entry. */
    function replay(seq: number, name: string): StepRow | undefined {
      const entry = log.get(seq);
      if (entry && entry.name !== name) throw new NonDeterminismError(workflowId, seq, entry.name, name);
      if (entry?.error != null) {
        // A failure recorded earlier: it happens again, without running the step.
        trace.info(`replayed ${name}: failed for good (${entry.error})`);
        throw new StepFailedError(workflowId, seq, name, entry.error);
      }
      if (entry) trace.replayed(name, entry.output);
      return entry;
    }

    /**
     * A step's code threw. A permanent error is a result too: record it at the
     * step's position, so a restart replays the failure (and the compensations
     * after it keep their positions) instead of running the step again.
     * A transient one is not recorded: the retry runs the step for real.
     */
    async function recordFailure(seq: number, name: string, thrown: unknown): Promise<void> {
      if (!isPermanent(thrown)) return;
      const message = toError(thrown).message;
      trace.failed(name, toError(thrown));
      try {
        await inTransaction(db, (tx) => recordStep(tx, { workflowId, seq, name, output: null, error: message }));
      } catch (recordError) {
        if ((recordError as { code?: string }).code === '23505') throw new StepAlreadyRecordedError(workflowId, seq, name, { cause: recordError });
        throw recordError;
      }
      crashPoint(`after-record:${name}`);
    }

    /**
     * Write the step's record inside `tx`, the transaction that (for
     * `transaction` steps) also holds the step's business writes. Until
     * COMMIT, neither exists for anyone else.
     */
    async function record(tx: pg.PoolClient, seq: number, name: string, result: unknown): Promise<void> {
      assertJsonSafe(result, `workflow ${workflowId}, step #${seq} ${name}`);
      try {
        await recordStep(tx, { workflowId, seq, name, output: result });
      } catch (thrown) {
        // 23505 unique_violation on (workflow_id, seq): someone else got here first.
        if ((thrown as { code?: string }).code === '23505') throw new StepAlreadyRecordedError(workflowId, seq, name, { cause: thrown });
        throw thrown;
      }
      crashPoint(`during-record:${name}`);
    }

    const ctx: Context = {
      workflowId,
      async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        crashPoint(`before-step:${name}`);
        let result: T;
        try {
          result = await fn();
        } catch (thrown) {
          await recordFailure(seq, name, thrown);
          throw thrown;
        }
        trace.ran(name, result);
        // The effect happened outside the database: the log does not know yet.
        crashPoint(`after-effect:${name}`);
        await inTransaction(db, (tx) => record(tx, seq, name, result));
        crashPoint(`after-record:${name}`);
        return result;
      },

      async transaction<T>(name: string, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        crashPoint(`before-step:${name}`);
        // One transaction for the step's writes AND its record.
        let failure: { thrown: unknown } | undefined; // set when fn itself threw (not the record)
        const result = await inTransaction(db, async (tx) => {
          const result = await fn(tx).catch((thrown: unknown) => {
            failure = { thrown };
            throw thrown;
          });
          trace.ran(name, result);
          // The stock is updated — but only inside this transaction. A crash
          // here rolls it back: nobody ever sees the decrement.
          crashPoint(`after-effect:${name}`);
          await record(tx, seq, name, result);
          return result;
        }).catch(async (thrown: unknown) => {
          // Rolled back: the step's writes never happened. If its code failed
          // for good, that failure is its result — recorded in a transaction of its own.
          if (failure?.thrown === thrown) await recordFailure(seq, name, thrown);
          throw thrown;
        });
        // Committed: the writes and the record exist together, for good.
        crashPoint(`after-record:${name}`);
        return result;
      },

      compensate(name: string, fn: (tx: pg.PoolClient) => Promise<unknown>): void {
        // Only remembered: it runs if, and when, the workflow fails for good.
        compensations.push({ name, fn });
      },
    };
    return {
      ctx,
      /**
       * The workflow failed for good: undo, newest first, each compensation a
       * `transaction` step at the next position. After a crash the code runs
       * again, registers the same compensations, fails at the same step (its
       * failure is in the log), and lands here with the same positions: the
       * compensations already recorded are replayed, only the rest run.
       */
      async runCompensations(error: Error): Promise<void> {
        if (compensations.length === 0) return;
        trace.info(`workflow ${workflowId} failed for good (${error.message}): ${compensations.length} compensation(s) to run, newest first`);
        for (const compensation of [...compensations].reverse()) {
          await ctx.transaction(compensation.name, compensation.fn);
        }
      },
      /** The code returned, but the log has steps at positions it never reached: it changed too. */
      checkAllRecordedStepsWereCalled() {
        const skipped = recorded.find((step) => step.seq >= nextSeq);
        if (skipped) throw new NonDeterminismError(workflowId, skipped.seq, skipped.name, undefined);
      },
    };
  }

  /**
   * Resume every workflow the log says is still running — call it when a
   * process starts, so the work of one that crashed is not left half done.
   * One workflow's error does not stop the others; they are all reported at the end.
   */
  async function recover(): Promise<string[]> {
    const unfinished = await listUnfinishedWorkflows(db);
    trace.info(`recover: ${unfinished.length} unfinished workflow(s) in the log`);
    const failures: string[] = [];
    for (const row of unfinished) {
      try {
        await run(row);
      } catch (thrown) {
        failures.push(`${row.id}: ${toError(thrown).message}`);
      }
    }
    if (failures.length > 0) {
      throw new CourseError(
        `recover: ${failures.length} of ${unfinished.length} workflow(s) did not finish:\n  ${failures.join('\n  ')}`,
        'The others were resumed. Fix the cause and run recover again.',
      );
    }
    return unfinished.map((row) => row.id);
  }

  /** What the log says about each id: its status, or 'missing' when it has no row. */
  async function status(ids: string[]): Promise<Record<string, WorkflowStatus | 'missing'>> {
    const known = await workflowStatuses(db, ids);
    return Object.fromEntries(ids.map((id) => [id, known.get(id) ?? 'missing']));
  }

  return { create, start, resume, recover, status };
}

export type Engine<W extends Workflows> = ReturnType<typeof createEngine<W>>;

// The whole path:
//   start → (insert the workflow row) → load its steps in one query → replay:
//     step at position n recorded?  same name → return the recorded result
//                                   other name → NonDeterminismError
//     not recorded, step:           run it → BEGIN; INSERT step n; COMMIT
//     not recorded, transaction:    BEGIN; run it on tx; INSERT step n; COMMIT
//   → complete: BEGIN; UPDATE status = 'completed'; COMMIT.
// Crash anywhere: committed rows survive, uncommitted ones never existed.
// What is not covered: an effect outside the database (the charge, an HTTP
// call) that happened before its record committed happens again.
