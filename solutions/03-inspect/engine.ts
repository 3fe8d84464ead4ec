/**
 * Exercise 3 (reference answer) — look into the log: `inspect(id)` and `listRuns()`.
 *
 * Chapter 3's engine, plus two read-only questions at the end of
 * `createEngine`: what does the log know about this workflow, and which
 * workflows are there? Both are answered from the tables alone — so a new
 * process can answer them about a workflow another process was running when
 * it was killed. (The SQL is at the end of queries.ts.)
 *
 * Chapter 3's own story, unchanged:
 *
 * Chapter 3 — the log moves into PostgreSQL.
 *
 * The failure it fixes: chapter 2's log was one JSON file. To record a step, a
 * process read the whole file, changed its copy and wrote the whole file back.
 * Two processes sharing that file each wrote back *their* copy, and the second
 * write erased the records of the first (a lost update): finished workflows
 * vanished from the log and ran again. And a file answers no questions —
 * "which workflows are unfinished?" meant reading and parsing all of it.
 *
 *   before:  log.json = { workflows: { id: { status, steps: { name: result } } } }
 *            record a step = rewrite the whole file (atomic rename)
 *   after:   two tables, `workflows` and `steps` (schema.sql)
 *            record a step = INSERT one row, COMMIT; nobody else's rows are touched
 *
 * Three smaller changes come with the tables:
 *   - a step is keyed by its *position* in the workflow (0, 1, 2, …), not its
 *     name, so a loop can call the same step many times;
 *   - on replay, the step the code calls at each position must be the one the
 *     log recorded there — if the code changed, we stop with a clear error
 *     instead of handing one step's result to another;
 *   - workflows are registered by name, so `recover()` can read every
 *     unfinished one back from the table and run it again.
 *
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
  inspectWorkflow,
  inTransaction,
  insertWorkflow,
  listUnfinishedWorkflows,
  listWorkflowSummaries,
  loadSteps,
  recordStep,
  workflowStatuses,
  type StepRow,
  type WorkflowDetails,
  type WorkflowRow,
  type WorkflowStatus,
  type WorkflowSummary,
} from './queries.ts';

/** What a workflow sees: the same `step` as in every chapter so far. */
export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
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
    const ctx: Context = {
      workflowId,
      async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
        // Each call takes the next position, synchronously, in the order the code makes the calls.
        const seq = nextSeq++;
        // 1. Recorded at this position? Then it must be the same step — and its result is in the log.
        const entry = log.get(seq);
        if (entry) {
          if (entry.name !== name) throw new NonDeterminismError(workflowId, seq, entry.name, name);
          trace.replayed(name, entry.output);
          return entry.output as T;
        }
        // 2. Not recorded: run it for real.
        crashPoint(`before-step:${name}`);
        const result = await fn();
        trace.ran(name, result);
        // The effect has happened; the log does not know yet.
        crashPoint(`after-effect:${name}`);
        assertJsonSafe(result, `workflow ${workflowId}, step #${seq} ${name}`);
        // 3. Record it: one row, one commit. Until COMMIT, the row is not in
        //    the log — a crash here is the same as a crash before the INSERT.
        await inTransaction(db, async (tx) => {
          await recordStep(tx, { workflowId, seq, name, output: result });
          crashPoint(`during-record:${name}`);
        });
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

  /** Everything the log knows about one workflow — its row and its recorded steps — or undefined. */
  async function inspect(workflowId: string): Promise<WorkflowDetails | undefined> {
    return inspectWorkflow(db, workflowId);
  }

  /** Every workflow in the log (or those with one status), oldest first, with how many steps each has recorded. */
  async function listRuns(filter: { status?: WorkflowStatus } = {}): Promise<WorkflowSummary[]> {
    return listWorkflowSummaries(db, filter.status);
  }

  return { create, start, resume, recover, status, inspect, listRuns };
}

export type Engine<W extends Workflows> = ReturnType<typeof createEngine<W>>;

// The whole path:
//   start → (insert the workflow row) → load its steps in one query → replay:
//     step at position n recorded?  same name → return the recorded result
//                                   other name → NonDeterminismError
//     not recorded?                 run it → BEGIN; INSERT step n; COMMIT
//   → complete: BEGIN; UPDATE status = 'completed'; COMMIT.
// Crash anywhere: the committed rows survive; recover() finds the workflow
// still 'running' and replays it. What is not covered: an effect that happened
// before its row committed (the stock update, the charge) happens again.
