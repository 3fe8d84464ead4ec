/**
 * Exercise 2 (reference answer) — an append-only log, one checksummed record per line.
 *
 * Chapter 2 rewrote the whole log file after every step (temp file, fsync,
 * rename, fsync the directory). Here the log only ever grows: each record is
 * one line appended to the end, and fsynced. That is how most real logs work
 * (a database's write-ahead log, Kafka's segments) — and it brings a problem
 * the atomic rename never had: a crash half-way through an append leaves a
 * **torn last line**.
 *
 *   a line:   <checksum> <json>\n        checksum = first 8 hex digits of sha256(json)
 *
 * Reading the log back:
 *   - a last line that is cut off (no newline) or whose checksum does not
 *     match is a torn append: the record was never finished, so never
 *     acknowledged — drop it, and cut it off the file so the next append
 *     starts on a line of its own;
 *   - any *earlier* line that does not check out is corruption (a bad disk, a
 *     hand edit): that is an error, never a silent fresh start.
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
  const json = JSON.stringify(record);
  return `${checksumOf(json)} ${json}\n`;
}

/** One line (without its newline) back into a record, or undefined if it does not check out. */
function decodeLine(line: string): LogRecord | undefined {
  const match = /^([0-9a-f]{8}) (.*)$/.exec(line);
  if (!match || checksumOf(match[2]!) !== match[1]) return undefined;
  try {
    return JSON.parse(match[2]!) as LogRecord;
  } catch {
    return undefined; // the checksum matched text that is not JSON: we never write such a line
  }
}

export interface DecodedLog {
  records: LogRecord[];
  /** How many bytes of the file hold whole, valid records; anything after is a torn append. */
  validBytes: number;
}

/**
 * Read the file's text back into records. Only the last line may be torn;
 * a bad line before it is a CorruptLogError naming the file and the line.
 */
export function decodeLog(text: string, file: string): DecodedLog {
  const records: LogRecord[] = [];
  let offset = 0;
  let lineNumber = 0;
  while (offset < text.length) {
    lineNumber++;
    const end = text.indexOf('\n', offset);
    const isLast = end === -1 || end === text.length - 1;
    const line = text.slice(offset, end === -1 ? text.length : end);
    const record = end === -1 ? undefined : decodeLine(line);
    if (!record) {
      if (isLast) break; // a torn append: never finished, never acknowledged
      throw new CorruptLogError(
        `The workflow log ${file} is corrupt: line ${lineNumber} does not match its checksum, and it is not the last line. ` +
          'A crash can only tear the last line; this is damage, and starting without it would run finished steps again.',
        'Look at the file: restore it from a copy, or repair that line by hand.',
      );
    }
    records.push(record);
    offset = end + 1;
  }
  return { records, validBytes: Buffer.byteLength(text.slice(0, offset), 'utf8') };
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
 * Open the log: read every record back (dropping a torn last line, and cutting
 * it off the file), then keep the file open for appending.
 */
export function openLog(file: string): DurableLog {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (thrown) {
    if ((thrown as NodeJS.ErrnoException).code !== 'ENOENT') throw thrown;
  }
  const { records, validBytes } = decodeLog(text, file);
  // The torn tail must go: the next append would otherwise continue that
  // line, and the record after it would be glued to garbage.
  if (validBytes < Buffer.byteLength(text, 'utf8')) {
    trace.info(`the last line of ${file} was torn by a crash: dropped it`);
    fs.truncateSync(file, validBytes);
  }

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
