/**
 * Exercise 2 — an append-only log, one checksummed record per line.
 *
 * Chapter 2 rewrote the whole log file after every step. This starter already
 * does what real logs do instead: each record is one JSON line *appended* to
 * the file and fsynced (read `appendLine`). It works — until a crash lands in
 * the middle of an append. Then the last line is torn, `JSON.parse` throws on
 * it, and the engine refuses to start: one unfinished record has locked us
 * out of every finished one.
 *
 * Your job (README.md says more; `npm run hint 2` helps):
 *   - TODO 1: give every line a checksum of its record (`checksumOf` is here);
 *   - TODO 2: read the log back so that a torn last line — cut off, or not
 *             matching its checksum — is dropped, while a bad line anywhere
 *             before the last is still a CorruptLogError;
 *   - TODO 3: cut the torn tail off the file before appending again.
 *
 * Check your work: `npm run exercise 2`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { crashPoint } from '../../shared/crash/failpoints.ts';
import { CourseError, toError } from '../../shared/errors.ts';
import { assertJsonSafe, UnserializableResultError } from '../../shared/json.ts';
import { trace } from '../../shared/narrate.ts';

export interface Context {
  workflowId: string;
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export type Workflow<Input, Output> = (ctx: Context, input: Input) => Promise<Output>;

// ─── What the file holds: one record per line ───────────────────────────────

export type LogRecord =
  | { type: 'step'; workflowId: string; name: string; result: unknown }
  | { type: 'complete'; workflowId: string; output: unknown };

export type WorkflowStatus = 'running' | 'completed' | 'missing';

/** The log file has a damaged record that is not the last one. */
export class CorruptLogError extends CourseError {}

/** The checksum of one record's JSON text: the first 8 hex digits of its SHA-256. */
export function checksumOf(json: string): string {
  return createHash('sha256').update(json, 'utf8').digest('hex').slice(0, 8);
}

/** One record as one line of the file, newline included. */
export function encodeRecord(record: LogRecord): string {
  // TODO 1: put a checksum of the JSON text on the line, so a reader can tell
  //         a whole record from a torn or damaged one.
  return `${JSON.stringify(record)}\n`;
}

export interface DecodedLog {
  records: LogRecord[];
  /** How many bytes of the file hold whole, valid records; anything after is a torn append. */
  validBytes: number;
}

/**
 * Read the file's text back into records.
 *
 * TODO 2: only the last line may be torn (cut off before its newline, or not
 *         matching its checksum): drop it, and say so through `validBytes`.
 *         A bad line before the last is damage: keep the CorruptLogError.
 */
export function decodeLog(text: string, file: string): DecodedLog {
  const records: LogRecord[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop(); // the newline after the last record
  lines.forEach((line, index) => {
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch (thrown) {
      throw new CorruptLogError(
        `The workflow log ${file} is corrupt: line ${index + 1} is not JSON (${toError(thrown).message}).`,
        'Look at the file: restore it from a copy, or repair that line by hand.',
        { cause: thrown },
      );
    }
  });
  return { records, validBytes: Buffer.byteLength(text, 'utf8') };
}

// ─── Writing: append one line, then fsync ───────────────────────────────────

/**
 * Append one line and fsync it. Written in two halves with the crash point
 * `during-record:<what>` between them: a kill there leaves exactly what a
 * power cut in the middle of a write leaves — the first half of a line.
 */
export function appendLine(fd: number, line: string, what: string): void {
  const bytes = Buffer.from(line, 'utf8');
  const half = Math.floor(bytes.length / 2);
  fs.writeSync(fd, bytes, 0, half);
  crashPoint(`during-record:${what}`);
  fs.writeSync(fd, bytes, half, bytes.length - half);
  fs.fsyncSync(fd);
}

// ─── The log: replayed from the file, then appended to ─────────────────────

export interface DurableLog {
  readonly file: string;
  statusOf(workflowId: string): WorkflowStatus;
  /** The recorded result of a step, if there is one. */
  stepOf(workflowId: string, name: string): { result: unknown } | undefined;
  /** Append a step's result, and return only once it is on disk. */
  recordStep(workflowId: string, name: string, result: unknown): void;
  /** Append the workflow's output: it is completed. */
  complete(workflowId: string, output: unknown): void;
  close(): void;
}

/**
 * Open the log: read every record back, then keep the file open for appending.
 */
export function openLog(file: string): DurableLog {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (thrown) {
    if ((thrown as NodeJS.ErrnoException).code !== 'ENOENT') throw thrown;
  }
  const { records } = decodeLog(text, file);
  // TODO 3: if the file holds more than the `validBytes` decodeLog reports,
  //         the rest is a torn append: cut it off (fs.truncateSync), or the
  //         next append would continue that line and glue the next record to garbage.

  const steps = new Map<string, Map<string, unknown>>();
  const completed = new Set<string>();
  const apply = (record: LogRecord) => {
    if (record.type === 'step') {
      if (!steps.has(record.workflowId)) steps.set(record.workflowId, new Map());
      steps.get(record.workflowId)!.set(record.name, record.result);
    } else {
      completed.add(record.workflowId);
    }
  };
  records.forEach(apply);

  const fd = fs.openSync(file, 'a');
  const append = (record: LogRecord, what: string) => {
    appendLine(fd, encodeRecord(record), what);
    apply(record);
  };

  return {
    file,
    statusOf: (id) => (completed.has(id) ? 'completed' : steps.has(id) ? 'running' : 'missing'),
    stepOf(id, name) {
      const recorded = steps.get(id);
      return recorded?.has(name) ? { result: recorded.get(name) } : undefined;
    },
    recordStep(workflowId, name, result) {
      assertJsonSafe(result, `workflow ${workflowId}, step ${name}`);
      append({ type: 'step', workflowId, name, result }, name);
    },
    complete(workflowId, output) {
      assertJsonSafe(output, `workflow ${workflowId}, its output`);
      append({ type: 'complete', workflowId, output }, 'complete');
    },
    close: () => fs.closeSync(fd),
  };
}

// ─── Steps and workflows: as in chapter 2 ───────────────────────────────────

function contextFor(log: DurableLog, workflowId: string): Context {
  return {
    workflowId,
    async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const recorded = log.stepOf(workflowId, name);
      if (recorded) {
        trace.replayed(name, recorded.result);
        return recorded.result as T;
      }
      crashPoint(`before-step:${name}`);
      const result = await fn();
      trace.ran(name, result);
      crashPoint(`after-effect:${name}`);
      log.recordStep(workflowId, name, result);
      crashPoint(`after-record:${name}`);
      return result;
    },
  };
}

/** Run a workflow, or resume it from the log; if it throws, replay it. */
export async function runWorkflow<Input, Output>(
  log: DurableLog,
  workflowId: string,
  workflow: Workflow<Input, Output>,
  input: Input,
  { attempts = 3 } = {},
): Promise<Output> {
  for (let attempt = 1; ; attempt++) {
    try {
      const output = await workflow(contextFor(log, workflowId), input);
      if (log.statusOf(workflowId) !== 'completed') {
        log.complete(workflowId, output);
        crashPoint('after-record:complete');
      }
      return output;
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof UnserializableResultError || attempt >= attempts) throw error;
      trace.info(`attempt ${attempt} failed (${error.message}); replaying — finished steps come from the log`);
    }
  }
}
