/**
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

/** What a workflow sees: `step` as before, and now `transaction`. */
export interface Context {
  workflowId: string;
  /** A step whose effect is outside the database (an HTTP call): run, then record. */
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** A step whose effect is SQL on `tx`: the writes and the record commit as one. */
  transaction<T>(name: string, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T>;
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
      try {
        // 1. Read what the log knows about this workflow: every recorded step, in one query.
        const recorded = await loadSteps(db, row.id);
        if (recorded.length > 0) trace.info(`workflow ${row.id}: ${recorded.length} step(s) in the log, replaying`);
        // 2. Run the code from the top. Recorded steps come back from the log;
        //    the rest run for real and are recorded (see `contextFor`). Note the
        //    input comes from the log, not from whoever asked us to start.
        const replay = contextFor(row.id, recorded);
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

    /** Recorded at this position? Then it must be the same step: return its entry. */
    function replay(seq: number, name: string): StepRow | undefined {
      const entry = log.get(seq);
      if (entry && entry.name !== name) throw new NonDeterminismError(workflowId, seq, entry.name, name);
      if (entry) trace.replayed(name, entry.output);
      return entry;
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
        const result = await fn();
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
        const result = await inTransaction(db, async (tx) => {
          const result = await fn(tx);
          trace.ran(name, result);
          // The stock is updated — but only inside this transaction. A crash
          // here rolls it back: nobody ever sees the decrement.
          crashPoint(`after-effect:${name}`);
          await record(tx, seq, name, result);
          return result;
        });
        // Committed: the writes and the record exist together, for good.
        crashPoint(`after-record:${name}`);
        return result;
      },
    };
    return {
      ctx,
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
