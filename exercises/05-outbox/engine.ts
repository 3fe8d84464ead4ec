/**
 * Exercise 5: chapter 5's engine, unchanged. The exercise is in outbox.ts and
 * workflow.ts: the email goes through an outbox instead of a call.
 *
 * Chapter 5 — idempotency keys: the outside world recognises a repeat.
 *
 * The failure it fixes: chapter 4 made a step's *database* writes commit with
 * its record, but the charge and the email are HTTP calls to other systems,
 * and no transaction of ours can include them. A crash after the charge and
 * before its record, and the restart charged again; two processes running the
 * same workflow both sent the email.
 *
 *   before:  step(name, fn):  fn()                   → a new charge on every call
 *   after:   step(name, fn):  fn({ idempotencyKey }) → the same key on every replay of this step;
 *                                                      the provider does it once per key
 *
 * Every step gets a deterministic key, `<workflow id>:<position>` (`order-1:0`),
 * handed to its code in a small `StepInfo`. The code passes it on as the
 * `Idempotency-Key` header; a provider that honours the header (Stripe does;
 * so does the course's world, shared/world/server.ts) answers a repeated key
 * with the response it saved the first time, and does nothing new.
 *
 * The same idea one level up: `start(name, input, { id })`. The workflow id is
 * the workflow's idempotency key. Starting an id that is already in the log
 * gives back that run (its result, or the run itself, resumed); starting it
 * with another input or another workflow name is a `WorkflowIdConflictError`.
 *
 * Everything else is chapter 4's engine.
 * All the SQL is in queries.ts; this file is the story.
 */
import type pg from 'pg';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { CourseError, toError } from '../../shared/errors.ts';
import { assertJsonSafe, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';
import {
  admitWorkflow,
  completeWorkflow,
  failWorkflow,
  getWorkflow,
  inTransaction,
  listUnfinishedWorkflows,
  loadSteps,
  recordStep,
  workflowStatuses,
  type StepRow,
  type WorkflowRow,
  type WorkflowStatus,
} from './queries.ts';

/**
 * What the engine tells a step's code about the step it is running. The same
 * values on every replay of that step: in another attempt, another process,
 * after any number of crashes.
 */
export interface StepInfo {
  workflowId: string;
  /** The step's position in the workflow: 0, 1, 2, … */
  seq: number;
  name: string;
  /**
   * `<workflowId>:<seq>`, e.g. `order-1:0` — see {@link stepKey}. Send it as
   * the `Idempotency-Key` of the step's call to the outside world.
   */
  idempotencyKey: string;
}

/** What a workflow sees: `step` and `transaction`, whose code now gets the step's `StepInfo`. */
export interface Context {
  workflowId: string;
  /**
   * A step whose effect is outside the database (an HTTP call): run, then
   * record. A crash in between runs `fn` again, with the same `idempotencyKey`.
   */
  step<T>(name: string, fn: (info: StepInfo) => Promise<T>): Promise<T>;
  /** A step whose effect is SQL on `tx`: the writes and the record commit as one. */
  transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>): Promise<T>;
}

/**
 * The idempotency key of the step at position `seq` of workflow `workflowId`.
 *
 * - Unique across workflows: workflow ids are unique (the primary key of
 *   `workflows`), and within one workflow each position is one step. The
 *   position goes last and is digits only, so even ids with colons in them
 *   cannot collide: `a:1` + 0 → `a:1:0`, which `a` can never produce.
 * - Stable across replays: a step's position is what the log is keyed by,
 *   and replay checks that the same step sits at the same position.
 *
 * Not in it: the step name (the position already pins it down), the attempt
 * number (a retry must look like the same request), the time or a random id
 * (a restart must send the same key).
 */
export function stepKey(workflowId: string, seq: number): string {
  return `${workflowId}:${seq}`;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

/** Every workflow a process can run, by name (`any`: one registry holds workflows of many input and output types). */
export type Workflows = Record<string, Workflow<any, any>>;
type InputOf<W> = W extends Workflow<infer I, unknown> ? I : never;
type OutputOf<W> = W extends Workflow<never, infer O> ? O : never;

/** The log names a workflow this process has no code for. */
export class UnknownWorkflowError extends CourseError {}

/**
 * `start(name, input, { id })` with an id the log already holds, but under
 * another workflow name or with another input. The id names one run; this call
 * describes a different one. Nothing was run.
 */
export class WorkflowIdConflictError extends CourseError {
  constructor(
    readonly workflowId: string,
    /** What differs: 'name', 'input', or both. */
    readonly differs: ReadonlyArray<'name' | 'input'>,
    readonly recorded: { name: string; input: unknown },
    readonly passed: { name: string; input: unknown },
    /** For object inputs: the top-level fields whose values differ (computed in SQL). */
    readonly fields: readonly string[] | null,
  ) {
    const parts: string[] = [];
    if (differs.includes('name')) {
      parts.push(`its workflow name differs (the log has "${recorded.name}", this call passed "${passed.name}")`);
    }
    if (differs.includes('input')) {
      const field = (input: unknown, key: string) => {
        const value = input !== null && typeof input === 'object' ? (input as Record<string, unknown>)[key] : undefined;
        return value === undefined ? 'nothing' : brief(value);
      };
      parts.push(
        fields && fields.length > 0
          ? `its input differs in ${fields.map((key) => `${key} (the log has ${field(recorded.input, key)}, this call passed ${field(passed.input, key)})`).join(', ')}`
          : `its input differs (the log has ${brief(recorded.input)}, this call passed ${brief(passed.input)})`,
      );
    }
    super(
      `workflow id ${workflowId} is already in the log for another run: ${parts.join('; and ')}`,
      'A workflow id names one run: start it again with the same name and input to get that run and its result, or use a new id for a new run.',
    );
  }
}

/** A value as short JSON, for messages. */
function brief(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

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

export interface StartOptions {
  /**
   * The workflow's id, chosen by the caller — and its idempotency key: one id,
   * one run. Use an id that names the business operation (`order-1`), so a
   * retried request carries the same one.
   */
  id: string;
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
   * crash cannot lose it: `recover()` will find it.
   *
   * The id is the workflow's idempotency key. An id already in the log with
   * the same name and input is that run: nothing is written, and the answer
   * is false. With another name or input it is a `WorkflowIdConflictError`.
   * Returns true when this call put the workflow in the log.
   */
  async function create<N extends keyof W & string>(name: N, input: InputOf<W[N]>, { id }: StartOptions): Promise<boolean> {
    return (await admit(name, input, id)).created;
  }

  /**
   * Start a workflow — once per id. If the id is already in the log (same name,
   * same input), this is the same run: a completed run's output comes back
   * without running anything; an unfinished one is resumed from its log.
   */
  async function start<N extends keyof W & string>(name: N, input: InputOf<W[N]>, { id }: StartOptions): Promise<OutputOf<W[N]>> {
    const { row } = await admit(name, input, id);
    return (await run(row)) as OutputOf<W[N]>;
  }

  /**
   * Put the workflow in the log, or find it there — and if it is there, check
   * that it is the same run. The comparison is done by PostgreSQL
   * (`input = $3::jsonb`, see admitWorkflow in queries.ts): jsonb equality is
   * semantic, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same input.
   */
  async function admit(name: string, input: unknown, workflowId: string): Promise<{ created: boolean; row: WorkflowRow }> {
    lookUp(name, workflowId); // a typo in the name fails here, before it reaches the log
    assertJsonSafe(input, `the input of workflow ${workflowId}`);
    const { created, row, sameName, sameInput, differentFields } = await admitWorkflow(db, { id: workflowId, name, input });
    if (!sameName || !sameInput) {
      const differs = [...(sameName ? [] : ['name' as const]), ...(sameInput ? [] : ['input' as const])];
      throw new WorkflowIdConflictError(workflowId, differs, { name: row.name, input: row.input }, { name, input }, sameInput ? null : differentFields);
    }
    return { created, row };
  }

  /** Run the workflow with this id as far as its log allows: replay what is recorded, run the rest. */
  async function resume(workflowId: string): Promise<unknown> {
    return run(await load(workflowId));
  }

  async function load(workflowId: string): Promise<WorkflowRow> {
    const row = await getWorkflow(db, workflowId);
    if (!row) throw new CourseError(`workflow ${workflowId} is not in the log`, 'Start it first: start(name, input, { id }).');
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

    /** What the step at `seq` is told about itself: where it is, and its key. */
    function infoFor(seq: number, name: string): StepInfo {
      return { workflowId, seq, name, idempotencyKey: stepKey(workflowId, seq) };
    }

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
      async step<T>(name: string, fn: (info: StepInfo) => Promise<T>): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        crashPoint(`before-step:${name}`);
        // The same key on every run of this step: the one a crash below cuts
        // short, the retry after an error, another process's run of it.
        const result = await fn(infoFor(seq, name));
        trace.ran(name, result);
        // The effect happened outside the database: the log does not know yet.
        // A crash here runs fn again — with the same key, so the provider
        // answers with what it did the first time instead of doing it again.
        crashPoint(`after-effect:${name}`);
        await inTransaction(db, (tx) => record(tx, seq, name, result));
        crashPoint(`after-record:${name}`);
        return result;
      },

      async transaction<T>(name: string, fn: (tx: pg.PoolClient, info: StepInfo) => Promise<T>): Promise<T> {
        const seq = nextSeq++;
        const entry = replay(seq, name);
        if (entry) return entry.output as T;
        crashPoint(`before-step:${name}`);
        // One transaction for the step's writes AND its record. (It gets a key
        // too, for a step that also calls out — its SQL needs none.)
        const result = await inTransaction(db, async (tx) => {
          const result = await fn(tx, infoFor(seq, name));
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
//   start(name, input, { id }) → insert the workflow row, or find it (same name
//   and input? the same run; otherwise WorkflowIdConflictError)
//   → load its steps in one query → replay:
//     step at position n recorded?  same name → return the recorded result
//                                   other name → NonDeterminismError
//     not recorded, step:           run it with key <id>:n → BEGIN; INSERT step n; COMMIT
//     not recorded, transaction:    BEGIN; run it on tx; INSERT step n; COMMIT
//   → complete: BEGIN; UPDATE status = 'completed'; COMMIT.
// Crash anywhere: committed rows survive, uncommitted ones never existed; an
// HTTP effect made before its record committed is asked for again under the
// same key, and the provider answers with the first one.
// What is not covered: nothing stops two processes from running one workflow
// at once. Keys make their effects count once, but both do the work (and a
// call without a key, or to a provider that ignores keys, happens twice).
