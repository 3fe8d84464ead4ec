/**
 * A durable execution engine on PostgreSQL: workflows whose steps survive
 * crashes, run by leasing workers, exactly one live run per workflow.
 *
 * ```ts
 * import pg from 'pg';
 * import { createEngine, migrate } from '@durable-course/engine';
 *
 * const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * await migrate(db);
 * const engine = createEngine({ db, workflows: { order: orderWorkflow } });
 * const worker = engine.createWorker({ concurrency: 8, leaseMs: 30_000 });
 * await worker.start();
 *
 * const run = await engine.start('order', order, { id: `order-${order.id}` });
 * const receipt = await run.result();
 *
 * process.once('SIGTERM', () => void worker.stop().then(() => db.end()));
 * ```
 *
 * The engine logs nothing unless given `log` (see {@link LogEntry}); its
 * crash points are inert unless a test passes `crashPoint`.
 *
 * How it works: the chapters' READMEs — chapters/07-fast-path (the fast
 * path), chapters/08-failures-and-time (failures and time) and
 * chapters/09-waiting-for-the-world (events, cancellation, child
 * workflows). The package is built from the last chapter's folder,
 * chapters/09-waiting-for-the-world.
 *
 * @module
 */
export { createEngine } from './engine.ts';
export { stepKey } from './run.ts';
export {
  AttemptsExhaustedError,
  DatabaseUnavailableError,
  DEFAULT_MAX_RECORD_BYTES,
  EngineError,
  InvalidWorkflowIdError,
  MAX_WORKFLOW_ID_BYTES,
  NonDeterminismError,
  RecordTooLargeError,
  StepAlreadyRecordedError,
  StepFailedError,
  StepTimeoutError,
  UnknownWorkflowError,
  UnserializableResultError,
  WorkflowFailedError,
  WorkflowIdConflictError,
  WorkflowTimeoutError,
  NoSuchWorkflowError,
  WorkflowNotRunningError,
  WorkflowCancelledError,
  ChildWorkflowError,
  ChildIdTakenError,
} from './errors.ts';
export type {
  ChildHandle,
  ChildOptions,
  Context,
  Engine,
  EngineOptions,
  InputOf,
  OutputOf,
  ResultOptions,
  RetryPolicy,
  RunHandle,
  StartOptions,
  StepInfo,
  StepOptions,
  StepRecord,
  Workflow,
  WorkflowInfo,
  Workflows,
} from './types.ts';
export { LeaseLostError } from './lease.ts';
export {
  checkConnectionString,
  InvalidConnectionStringError,
  listMigrations,
  migrate,
  SchemaMissingError,
  SchemaTooNewError,
} from './migrate.ts';
export { isConnectionFailure, type WorkflowStatus } from './queries.ts';
export type { LogEntry, LogEvent, Logger, LogLevel } from './log.ts';
export type { RunEndEvent, Worker, WorkerOptions } from './worker.ts';
export { ScheduleError, type ScheduleOptions } from './schedules.ts';
export { UNDEFINED_IN_LOG } from './json.ts';
