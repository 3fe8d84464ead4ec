/**
 * Chapter 2 — a log in a JSON file.
 *
 * The failure it fixes: in chapter 1 the log lived in a Map, in this process's
 * memory. A crash took the Map with it, so even a crash *after* the charge was
 * recorded charged the card a second time on restart.
 *
 *   before:  log = new Map()             — dies with the process
 *   after:   log = workflow-log.json     — read once when we open it, and
 *            rewritten after every step with an atomic replace (write a temp
 *            file, fsync it, rename it over the log, fsync the directory), so a
 *            crash leaves either the old log or the new one, never half of one
 *
 * Steps are still keyed by name, as in chapter 1 (chapter 3 numbers them).
 *
 * What this chapter still gets wrong: the effect and its record are two
 * separate acts. A crash between them (the card is charged, the file not yet
 * rewritten) still charges twice. And the file belongs to whichever process
 * wrote it last: two processes on one file overwrite each other's records.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { CourseError, toError } from '../../shared/errors.ts';
import { assertJsonSafe, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';

export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

// ─── What the file holds ────────────────────────────────────────────────────

/**
 * The whole log, as it sits in `workflow-log.json`:
 *
 *   { "version": 1,
 *     "workflows": {
 *       "order-1": { "status": "completed",
 *                    "steps": { "charge_card": {…}, "reserve_inventory": {…}, "send_email": {…} },
 *                    "output": {…} },
 *       "order-2": { "status": "running", "steps": { "charge_card": {…} } } } }
 */
export interface LogFile {
  version: 1;
  workflows: Record<string, WorkflowEntry>;
}

export interface WorkflowEntry {
  status: 'running' | 'completed';
  /** Step name → the result it returned, recorded before the workflow moved on. */
  steps: Record<string, unknown>;
  /** The workflow's return value, once it has completed. */
  output?: unknown;
}

export type WorkflowStatus = WorkflowEntry['status'] | 'missing';

// ─── Reading the log: once, when we open it ─────────────────────────────────

/** The log file exists but is not a log we can read (torn, truncated, garbage). */
export class CorruptLogError extends CourseError {}

/**
 * Read the log. No file at all means no workflow has ever recorded a step:
 * that, and only that, is a fresh start. A file we cannot parse is an error —
 * starting fresh would forget every finished step and run them all again.
 */
export async function readLog(file: string): Promise<LogFile> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (thrown) {
    if ((thrown as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, workflows: {} };
    throw thrown;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (thrown) {
    throw corrupt(file, `it is not valid JSON (${toError(thrown).message}; the file has ${Buffer.byteLength(text)} bytes)`, thrown);
  }
  const problem = shapeProblem(parsed);
  if (problem) throw corrupt(file, problem);
  return parsed as LogFile;
}

function corrupt(file: string, why: string, cause?: unknown): CorruptLogError {
  return new CorruptLogError(
    `The workflow log ${file} is corrupt: ${why}. ` +
      'We refuse to start with an empty log instead, because that would run every finished step again (charge every card again).',
    `Look at the file: restore it from a copy, or repair it by hand. Delete it only if you are sure no workflow in it has done anything.`,
    { cause },
  );
}

/** Is this the shape `LogFile` promises? (A valid-JSON `[]` or `42` is as corrupt as a torn file.) */
function shapeProblem(parsed: unknown): string | undefined {
  if (!isPlainObject(parsed)) return 'it is valid JSON but not an object';
  if (parsed.version !== 1) return `its "version" is ${JSON.stringify(parsed.version)}, not 1`;
  if (!isPlainObject(parsed.workflows)) return 'it has no "workflows" object';
  for (const [id, entry] of Object.entries(parsed.workflows)) {
    if (!isPlainObject(entry) || !isPlainObject(entry.steps) || (entry.status !== 'running' && entry.status !== 'completed')) {
      return `its entry for workflow "${id}" is not { status, steps }`;
    }
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ─── Writing the log: an atomic replace ─────────────────────────────────────

/**
 * How the log gets onto disk. `what` is the step being recorded (or
 * `complete`), so a writer can name its `during-record:<what>` crash point.
 */
export type LogWriter = (file: string, text: string, what: string) => Promise<void>;

/**
 * Replace the log so that a crash at any instant leaves either the whole old
 * file or the whole new one:
 *
 *   1. write the new log to a temp file in the same directory — the real log
 *      is untouched while we write, so a crash here leaves it whole;
 *   2. fsync the temp file — its bytes are on disk, not just in the page cache
 *      (without this, a power cut after step 3 could leave an empty file
 *      under the log's name);
 *   3. rename it over the log — rename is atomic: readers see the old file or
 *      the new one, never a mix (same directory, so the same file system —
 *      rename across file systems is a copy, and not atomic);
 *   4. fsync the directory — the rename is a change to the directory, and it
 *      is only durable once the directory is on disk too.
 */
export async function writeLogAtomically(file: string, text: string, what: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await fs.open(temp, 'w');
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The new log is complete and on disk — but under another name. Crash here
  // and the old log is still the log.
  crashPoint(`during-record:${what}`);
  await fs.rename(temp, file);
  await fsyncDirectory(path.dirname(file));
}

async function fsyncDirectory(dir: string): Promise<void> {
  // Windows cannot open a directory to fsync it (and does not need to).
  if (process.platform === 'win32') return;
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The writer most programs start with, kept here to show why we don't use it:
 * `fs.writeFile` truncates the log and writes the new text in place. A crash
 * part-way leaves a file that is neither the old log nor the new one — a torn
 * log, which `readLog` refuses. (main.ts uses it only with LOG_WRITER=naive.)
 */
export async function writeLogNaively(file: string, text: string, what: string): Promise<void> {
  const bytes = Buffer.from(text, 'utf8');
  const half = Math.floor(bytes.length / 2);
  const handle = await fs.open(file, 'w'); // 'w' truncates: the old log is already gone
  try {
    await handle.write(bytes, 0, half);
    crashPoint(`during-record:${what}`); // half the new log on disk, none of the old
    await handle.write(bytes, half, bytes.length - half);
  } finally {
    await handle.close();
  }
}

// ─── The log: in memory, written through to the file ────────────────────────

export interface DurableLog {
  readonly file: string;
  statusOf(workflowId: string): WorkflowStatus;
  entryOf(workflowId: string): WorkflowEntry;
  /** Record a step's result, and return only once it is in the file. */
  recordStep(workflowId: string, name: string, result: unknown): Promise<void>;
  /** Record the workflow's output and mark it completed. */
  complete(workflowId: string, output: unknown): Promise<void>;
}

/**
 * Open the log: read the file once, and from then on keep it in memory and
 * rewrite the whole file after each record. (That is also this chapter's
 * second flaw: another process writing the same file never sees our records,
 * nor we theirs, and each rewrite drops whatever the other one wrote.)
 */
export async function openLog(file: string, { writer = writeLogAtomically }: { writer?: LogWriter } = {}): Promise<DurableLog> {
  const data = await readLog(file);
  const persist = (what: string) => writer(file, `${JSON.stringify(data, null, 2)}\n`, what);

  const entryOf = (workflowId: string): WorkflowEntry => {
    let entry = data.workflows[workflowId];
    if (!entry) {
      entry = { status: 'running', steps: {} };
      data.workflows[workflowId] = entry;
    }
    return entry;
  };

  return {
    file,
    statusOf: (workflowId) => data.workflows[workflowId]?.status ?? 'missing',
    entryOf,
    async recordStep(workflowId, name, result) {
      // A value JSON would change (a Date, undefined, a Map) would replay as
      // something else. Refuse it before anything is written.
      assertJsonSafe(result, `workflow ${workflowId}, step ${name}`);
      entryOf(workflowId).steps[name] = result;
      await persist(name);
    },
    async complete(workflowId, output) {
      assertJsonSafe(output, `workflow ${workflowId}, its output`);
      const entry = entryOf(workflowId);
      entry.status = 'completed';
      entry.output = output;
      await persist('complete');
    },
  };
}

// ─── Steps: replay from the log, or run and record ──────────────────────────

function contextFor(log: DurableLog, workflowId: string): Context {
  const steps = log.entryOf(workflowId).steps;
  return {
    workflowId,
    async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
      // 1. Already done? Then its result is in the log: return it, run nothing.
      //    After a restart, "the log" is what we read back from the file.
      if (Object.hasOwn(steps, name)) {
        const recorded = steps[name] as T;
        trace.replayed(name, recorded);
        return recorded;
      }
      // 2. Not done: run it for real.
      crashPoint(`before-step:${name}`);
      const result = await fn();
      trace.ran(name, result);
      // The card is charged; the file does not know yet. (Still a hole: see the end.)
      crashPoint(`after-effect:${name}`);
      // 3. Record the result — on disk, atomically — before moving on.
      await log.recordStep(workflowId, name, result);
      crashPoint(`after-record:${name}`);
      return result;
    },
  };
}

/**
 * Run a workflow, or resume it from the log; if it throws, replay it.
 * Finished steps come back from the log — this process's or, after a crash,
 * the last one's — so only the steps that never finished run again.
 */
export async function runWorkflow<Input, Output>(
  log: DurableLog,
  workflowId: string,
  workflow: Workflow<Input, Output>,
  input: Input,
  { attempts = 3 } = {},
): Promise<Output> {
  if (log.statusOf(workflowId) === 'completed') {
    trace.info(`${workflowId} already completed: replaying it from the log, nothing runs`);
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const output = await workflow(contextFor(log, workflowId), input);
      if (log.statusOf(workflowId) !== 'completed') {
        await log.complete(workflowId, output);
        crashPoint('after-record:complete');
      }
      return output;
    } catch (thrown) {
      const error = toError(thrown);
      // A result JSON cannot carry is a bug in the workflow, not bad luck:
      // a retry would run the step's effect again and fail the same way.
      if (error instanceof UnserializableResultError || attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
    }
  }
}

// The whole path:  open log (read the file once) → run(workflow) → step: in the log? replay
//   : run, write temp + fsync + rename + fsync dir → … → record "completed" the same way → done.
// Crash after a record: the restart reads the file and replays; the charge happens once.
// Crash between an effect and its record: the file never heard of it; the step runs again.
// Two processes on one file: each rewrites it from its own memory; the last writer wins.
