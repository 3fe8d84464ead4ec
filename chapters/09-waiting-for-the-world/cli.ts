#!/usr/bin/env node
/**
 * `durable` — the engine's command line, for whoever operates it: what is in
 * the log, why a workflow is stuck or failed, and the few things an operator
 * does about it. It ships with the package (`npx durable …` where it is
 * installed); the course runs it as `npm run durable -- …`.
 *
 *   durable list [--status S] [--name N] [--older-than AGE] [--newer-than AGE] [--limit N] [--json]
 *   durable show <id> [--json]                 its row, its lease, its recorded steps
 *   durable retry <id>                         a failed workflow runnable again, replayed from its log
 *   durable cancel <id> [--reason TEXT]        cancel a running workflow (its code decides what to undo)
 *   durable prune --older-than AGE [--status completed,failed,cancelled] [--batch N] [--dry-run] [--yes]
 *
 * The database is DATABASE_URL, or --database-url. AGE is a number and a
 * unit: 90s, 15m, 12h, 30d. Tables are for people; --json is for scripts.
 * Cancelling and resuming need an engine that has them (later chapters).
 */
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { EngineError, toError } from './errors.ts';
import { decodeFromLog } from './json.ts';
import { checkConnectionString, explainMissingSchema } from './migrate.ts';
import { countPrunable, getWorkflow, listWorkflows, loadLog, pruneFinished, requestCancel, retryWorkflow, waitingOf, type WorkflowStatus } from './queries.ts';

const USAGE = `usage:
  durable list [--status running|completed|failed|cancelled] [--name NAME] [--older-than AGE] [--newer-than AGE] [--limit N] [--json]
  durable show <id> [--json]
  durable retry <id>
  durable cancel <id> [--reason TEXT]
  durable prune --older-than AGE [--status completed,failed,cancelled] [--batch N] [--dry-run] [--yes]
options: --database-url URL (default: DATABASE_URL); AGE: 90s, 15m, 12h, 30d`;

const STATUSES: readonly WorkflowStatus[] = ['running', 'completed', 'failed', 'cancelled'];

/** A mistake on the command line: said with the usage, exit 2. */
class UsageError extends EngineError {}

/** Run the command line with `argv` (without node and the script); what it prints goes to `out`. Resolves to the exit code. */
export async function runCli(argv: string[], io: { out: (text: string) => void; err: (text: string) => void; env: NodeJS.ProcessEnv; interactive: boolean }): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        status: { type: 'string' },
        name: { type: 'string' },
        'older-than': { type: 'string' },
        'newer-than': { type: 'string' },
        limit: { type: 'string', default: '50' },
        batch: { type: 'string', default: '1000' },
        json: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        yes: { type: 'boolean', default: false },
        'database-url': { type: 'string' },
        reason: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    const [command, ...rest] = positionals;
    if (values.help || !command) {
      io.out(`${USAGE}\n`);
      return values.help ? 0 : 2;
    }
    if (command === 'resume') {
      throw new UsageError('resume: this engine has no pause and resume.', 'A workflow that waits resumes on its own: when its time comes, or its event is sent.');
    }
    if (!['list', 'show', 'retry', 'cancel', 'prune'].includes(command)) throw new UsageError(`unknown command "${command}"`, USAGE);
    const url = values['database-url'] ?? io.env.DATABASE_URL;
    if (!url) throw new UsageError('no database: set DATABASE_URL or pass --database-url.', USAGE);
    checkConnectionString(url, values['database-url'] ? '--database-url' : 'DATABASE_URL');
    const db = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 10_000 });
    db.on('error', () => {});
    try {
      if (command === 'list') return await list(db, values, io);
      const id = rest[0];
      if (command === 'prune') return await prune(db, values, io);
      if (!id) throw new UsageError(`${command}: which workflow? Give its id.`, USAGE);
      if (command === 'show') return await show(db, id, values.json, io);
      if (command === 'cancel') return await cancel(db, id, values.reason ?? 'cancelled by an operator (durable cancel)', io);
      return await retry(db, id, io);
    } catch (thrown) {
      throw explainMissingSchema(thrown);
    } finally {
      await db.end().catch(() => {});
    }
  } catch (thrown) {
    const error = toError(thrown);
    const hint = error instanceof EngineError && error.hint ? `\n  → ${error.hint}` : '';
    io.err(`durable: ${error.message}${hint}\n`);
    return error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
}

type Values = { status?: string; name?: string; 'older-than'?: string; 'newer-than'?: string; limit?: string; batch?: string; json?: boolean; 'dry-run'?: boolean; yes?: boolean };
type Io = Parameters<typeof runCli>[1];

async function list(db: pg.Pool, values: Values, io: Io): Promise<number> {
  const rows = await listWorkflows(db, {
    status: values.status === undefined ? undefined : status(values.status),
    name: values.name,
    olderThanMs: values['older-than'] === undefined ? undefined : age(values['older-than'], '--older-than'),
    newerThanMs: values['newer-than'] === undefined ? undefined : age(values['newer-than'], '--newer-than'),
    limit: whole(values.limit!, '--limit'),
  });
  if (values.json) {
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return 0;
  }
  if (rows.length === 0) {
    io.out('no workflows match\n');
    return 0;
  }
  io.out(
    table(
      ['id', 'name', 'status', 'steps', 'token', 'owner', 'lease left', 'last change', 'error'],
      rows.map((r) => [r.id, r.name, r.status, String(r.steps), String(r.fencingToken), r.leaseOwner ?? '—', r.status === 'running' ? `${(r.leaseMsLeft / 1000).toFixed(1)} s` : '—', r.updatedAt.toISOString(), r.error ?? '']),
    ),
  );
  return 0;
}

async function show(db: pg.Pool, id: string, json: boolean | undefined, io: Io): Promise<number> {
  const [row, log] = await Promise.all([getWorkflow(db, id), loadLog(db, id)]);
  if (!row) throw new EngineError(`no workflow ${shown(id)} in the log`, 'durable list shows the ids there are.');
  const steps = log.steps.map(({ workflowId: _id, ...step }) => ({ ...step, output: decodeFromLog(step.output) }));
  const waiting = waitingOf(row, log);
  const workflow = { ...row, input: decodeFromLog(row.input), output: decodeFromLog(row.output), waiting, steps, failures: log.failures };
  if (json) {
    io.out(`${JSON.stringify(workflow, null, 2)}\n`);
    return 0;
  }
  const lease =
    row.status !== 'running' ? '—'
    : waiting?.reason === 'event' ? `waiting for ${waiting.events.length === 1 ? 'event' : `${waiting.events.length} events:`} ${waiting.events.slice(0, 3).map((name) => shown(JSON.stringify(name))).join(', ')}${waiting.events.length > 3 ? ', …' : ''}${waiting.until ? ` until ${waiting.until.toISOString()}` : ', no timeout'}; held by nobody`
    : waiting ? `waiting (${waiting.reason}) until ${waiting.until.toISOString()}, ${(row.leaseMsLeft / 1000).toFixed(1)} s from now; held by nobody`
    : row.leaseMsLeft > 0 ? `held by ${shown(row.leaseOwner ?? '?')} (token ${row.fencingToken}), ${(row.leaseMsLeft / 1000).toFixed(1)} s left`
    : row.fencingToken === 0 ? 'never claimed: runnable'
    : `runnable (last held by ${shown(row.leaseOwner ?? '?')}, token ${row.fencingToken})`;
  io.out(
    [
      `workflow ${shown(row.id)}  (${shown(row.name)})`,
      `  status   ${row.status}${row.error ? `: ${shown(row.error)}` : ''}`,
      `  lease    ${lease}`,
      `  attempts ${row.attempts} claim(s) in a row with no word from their run (fails past ${row.maxAttempts})`,
      `  input    ${brief(workflow.input)}`,
      ...(row.status === 'completed' ? [`  output   ${brief(workflow.output)}`] : []),
      `  steps    ${steps.length} recorded${log.failures.length > 0 ? `, ${log.failures.length} failed attempt(s)` : ''}`,
      '',
    ].join('\n'),
  );
  if (steps.length > 0) {
    const outcome = (s: (typeof steps)[number]) => (s.error ? `✗ ${s.error.name}: ${s.error.message} (${s.error.attempts} attempts)` : s.kind === 'sleep' ? `sleep until ${(s.output as { until: string }).until}` : brief(s.output));
    io.out(table(['#', 'step', 'token', 'recorded at', 'result'], steps.map((s) => [String(s.seq), s.name, String(s.fencingToken), s.recordedAt.toISOString(), outcome(s)])));
  }
  if (log.failures.length > 0) {
    io.out('\nfailed attempts\n');
    io.out(
      table(
        ['#', 'step', 'attempt', 'token', 'failed at', 'error', 'next attempt'],
        log.failures.map((f) => [String(f.seq), f.name, String(f.attempt), String(f.fencingToken), f.failedAt.toISOString(), `${f.error.name}: ${f.error.message}`, f.retryAt?.toISOString() ?? '— (failed for good)']),
      ),
    );
  }
  return 0;
}

async function retry(db: pg.Pool, id: string, io: Io): Promise<number> {
  if (await retryWorkflow(db, id)) {
    const { steps } = await loadLog(db, id);
    io.out(`workflow ${shown(id)} is runnable again: the next claim replays its ${steps.length} recorded step(s) and runs the rest.\n`);
    return 0;
  }
  const row = await getWorkflow(db, id);
  throw new EngineError(row ? `workflow ${shown(id)} is ${row.status}, not failed: nothing to retry` : `no workflow ${shown(id)} in the log`, 'Only a failed workflow can be retried.');
}

async function cancel(db: pg.Pool, id: string, reason: string, io: Io): Promise<number> {
  const found = await requestCancel(db, id, reason);
  if (!found) throw new EngineError(`no workflow ${shown(id)} in the log`, 'durable list shows the ids there are.');
  const said = {
    requested: `workflow ${shown(id)}: cancellation requested; its run stops at its next step (its code may compensate first) and it ends cancelled.`,
    already: `workflow ${shown(id)}: cancellation was requested already; nothing changed.`,
    finished: `workflow ${shown(id)} is ${found.status}: nothing to cancel.`,
  };
  io.out(`${said[found.outcome]}\n`);
  return found.outcome === 'finished' ? 1 : 0;
}

async function prune(db: pg.Pool, values: Values, io: Io): Promise<number> {
  if (values['older-than'] === undefined) throw new UsageError('prune: how old? Give --older-than AGE (e.g. 30d).', USAGE);
  const olderThanMs = age(values['older-than'], '--older-than');
  const statuses = (values.status ?? 'completed,failed,cancelled').split(',').map((s) => status(s.trim()));
  if (statuses.includes('running')) throw new UsageError('prune: a running workflow is never pruned.', 'Use --status completed,failed,cancelled (the default), or some of them.');
  const batch = whole(values.batch!, '--batch');
  const { count, oldest } = await countPrunable(db, olderThanMs, statuses);
  const what = `${count} ${statuses.join(' or ')} workflow(s) last changed more than ${values['older-than']} ago, with their steps`;
  if (values['dry-run'] || count === 0) {
    io.out(`${values['dry-run'] ? 'would delete' : 'nothing to delete:'} ${what}${oldest.length ? ` (the oldest: ${oldest.map(shown).join(', ')})` : ''}\n`);
    return 0;
  }
  if (!values.yes) {
    if (!io.interactive) throw new UsageError(`prune would delete ${what}; not without --yes when nobody is there to confirm.`, 'Add --yes, or --dry-run to see what it would delete.');
    const prompt = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await prompt.question(`Delete ${what}? [y/N] `);
    prompt.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      io.out('nothing deleted\n');
      return 0;
    }
  }
  let deleted = 0;
  for (;;) {
    const ids = await pruneFinished(db, olderThanMs, statuses, batch);
    deleted += ids.length;
    if (ids.length < batch) break;
  }
  io.out(`deleted ${deleted} workflow(s) and their steps\n`);
  return 0;
}

// ── reading the arguments ────────────────────────────────────────────────────

function status(text: string): WorkflowStatus {
  if (!(STATUSES as readonly string[]).includes(text)) throw new UsageError(`--status ${shown(text)}: a status is one of ${STATUSES.join(', ')}.`, USAGE);
  return text as WorkflowStatus;
}

/** "90s", "15m", "12h", "30d" → milliseconds. */
export function age(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(text.trim());
  const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = match ? Number(match[1]) * units[match[2] as keyof typeof units] : NaN;
  if (!Number.isFinite(ms) || ms > 100 * 365 * 86_400_000) throw new UsageError(`${flag} ${shown(text)}: an age is a number and a unit, e.g. 90s, 15m, 12h or 30d.`, USAGE);
  return Math.round(ms);
}

function whole(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new UsageError(`${flag} ${shown(text)}: a whole number from 1 to 1000000.`, USAGE);
  return n;
}

// ── printing ─────────────────────────────────────────────────────────────────

/**
 * A string as a terminal may show it: one with control characters (a newline,
 * an escape sequence that would recolour or clear the screen) is shown as its
 * JSON string instead. Ids, names, inputs and errors are anybody's text.
 */
function shown(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(text) ? JSON.stringify(text) : text;
}

function brief(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'undefined';
  } catch {
    text = String(value);
  }
  return shown(text.length > 80 ? `${text.slice(0, 77)}…` : text);
}

function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.map((row) => row.map((cell) => shown(cell)))].map((row) => row.map((cell) => (cell.length > 60 ? `${cell.slice(0, 59)}…` : cell)));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return `${cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}

// As a program (`durable …`, or `node cli.js …`), not when imported.
const invoked = process.argv[1];
if (invoked && /(^|[\\/])(cli\.[jt]s|durable)$/.test(invoked)) {
  void runCli(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
    interactive: Boolean(process.stdin.isTTY),
  }).then((code) => (process.exitCode = code));
}
