/**
 * What the engine says while it works, and to whom: nobody, unless the
 * application asks (`createEngine({ log })`). A library that prints is a
 * library whose output the application cannot route, filter or silence; so
 * the engine hands each event, as data, to the `log` function it was given,
 * and does nothing with them when it was given none.
 *
 * Every entry has a time, a level, a stable `event` name to filter on, a
 * sentence for people, and — for everything that happens to one workflow —
 * its `workflowId`. The course passes a function that prints the trace lines
 * its demos show; a service passes one that writes to its own logger:
 *
 *   createEngine({ db, workflows, log: (e) => logger[e.level]({ event: e.event, workflowId: e.workflowId, err: e.error }, e.message) })
 */

/** How much an entry matters: `debug` is every step, `info` a change of state, `warn` weather (an outage, a lost lease), `error` a bug to look at. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * What happened. For one workflow (`workflowId` set):
 * - `claimed` (debug): a worker claimed it, with `fencingToken`;
 * - `replaying` (info): a run found recorded steps in the log and replays them;
 * - `step-replayed` (debug): a step's result came from the log, nothing ran;
 * - `step-ran` (debug): a step's code returned, with `output`. **Not yet recorded**:
 *   a crash, or a lost lease, before its record means it runs again;
 * - `step-recorded` (debug): its record is durable — a replay returns it, the code never runs again.
 *   A zombie's step (its lease lost while it ran) has `step-ran`, then `lease-lost`, and no `step-recorded`;
 * - `retry-scheduled` (warn): a step's attempt failed (`error`); the workflow waits out its back-off (`dueInMs`) in the database;
 * - `step-failed` (warn): a step failed for good (`error`): its StepFailedError goes to the workflow's code;
 * - `sleeping` (info): the workflow sleeps in the database until `dueInMs` from now;
 * - `waiting-for-event` (info): it waits for events, until they are sent or a timeout (`dueInMs`);
 * - `children-started` (info): it started child workflows (`step`: the first one's position and name);
 * - `event-received` (debug): a wait ended: its event was taken, or it timed out;
 * - `workflow-cancelled` (info): recorded as cancelled (engine.cancel), with its reason;
 * - `workflow-failed` (warn): recorded as failed (`error`): the code's error, or its attempts ran out;
 * - `lease-lost` (warn): the run stopped: another run owns the workflow now;
 * - `run-stopped` (warn): the run stopped because the database failed; it is claimed again;
 * - `run-error` (error): the run stopped on an error that is neither (left running, retried after its lease);
 * - `unknown-workflow` (warn): this process has no code for its name; deferred for another worker.
 *
 * For a worker (`worker` set): `database-unavailable` (warn, once per outage),
 * `database-back` (info), `database-error` (error), `schema-missing` (error,
 * once: run migrate), `listen-lost` (warn), `stopping` (info), `leases-released`
 * (info), `release-failed` (warn), `pruned` (info: retention deleted finished workflows),
 * `on-run-end-threw` (error: the application's callback threw), `ticks-skipped` (warn: a
 * schedule's ticks missed while no scheduler ran, skipped by its policy).
 */
export type LogEvent =
  | 'claimed'
  | 'replaying'
  | 'step-replayed'
  | 'step-ran'
  | 'step-recorded'
  | 'retry-scheduled'
  | 'step-failed'
  | 'sleeping'
  | 'waiting-for-event'
  | 'children-started'
  | 'workflow-cancelled'
  | 'event-received'
  | 'workflow-failed'
  | 'lease-lost'
  | 'run-stopped'
  | 'run-error'
  | 'unknown-workflow'
  | 'database-unavailable'
  | 'database-back'
  | 'database-error'
  | 'schema-missing'
  | 'listen-lost'
  | 'stopping'
  | 'leases-released'
  | 'pruned'
  | 'release-failed'
  | 'ticks-skipped'
  | 'on-run-end-threw';

/** One thing the engine has to say. */
export interface LogEntry {
  /** When it happened (this process's clock). */
  time: Date;
  level: LogLevel;
  event: LogEvent;
  /** A sentence for people, naming the workflow or worker it is about. */
  message: string;
  /** The workflow it is about, if one. */
  workflowId?: string;
  /** The fencing token of the run it is about, if one. */
  fencingToken?: number;
  /** The step it is about (`step-ran`, `step-replayed`, `retry-scheduled`, …): its position and name, and which attempt when it ran. */
  step?: { seq: number; name: string; attempt?: number };
  /** How long until the workflow may run again, by the database clock (`retry-scheduled`, `sleeping`). */
  dueInMs?: number;
  /** A step's result (`step-ran`, `step-replayed`): the value the code sees. */
  output?: unknown;
  /** The worker it is about (its `lease_owner` name). */
  worker?: string;
  /** The error behind it, if any. */
  error?: Error;
}

/** Where the engine's log entries go. Called synchronously; what it throws is ignored. */
export type Logger = (entry: LogEntry) => void;

/** What the engine's parts call: `say(level, event, message, fields)`. A no-op without a logger. */
export type Say = (level: LogLevel, event: LogEvent, message: string, fields?: Omit<LogEntry, 'time' | 'level' | 'event' | 'message'>) => void;

/** The engine's `say`, writing to `logger` — or nothing, at no cost, when there is none. */
export function createSay(logger: Logger | undefined): Say {
  if (!logger) return () => {};
  return (level, event, message, fields) => {
    try {
      logger({ time: new Date(), level, event, message, ...fields });
    } catch {
      // A logger that throws must not change what the engine does: logging is never behaviour.
    }
  };
}
