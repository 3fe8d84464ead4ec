/**
 * The errors a caller of the engine can meet, each with what happened and what
 * to do. (LeaseLostError, a run's loss of its lease, is in lease.ts: the worker
 * meets it, rarely the caller.)
 *
 * Chapters 1–6 raise the course's CourseError. This engine is a package of
 * its own (package.json beside it) and imports nothing from the course, so it
 * has its own base class of the same shape: a message, a one-sentence `hint`
 * for the person at the keyboard, and the `cause` kept.
 */

/** Every error the engine raises: what happened (`message`) and what to do next (`hint`). */
export class EngineError extends Error {
  constructor(
    message: string,
    /** One sentence: what to do next. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Turn whatever was thrown (a string, `undefined`, an object) into an `Error`. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(`non-Error thrown: ${JSON.stringify(thrown)}`);
  } catch {
    return new Error(`non-Error thrown: ${String(thrown)}`);
  }
}

/**
 * The database could not be reached or used: a restart, a failover, a dropped
 * connection (`isConnectionFailure(error)` tells these apart). Weather, not a bug: what was
 * committed stays, and a run it stopped is claimed again and replayed.
 */
export class DatabaseUnavailableError extends EngineError {}

/** A step returned something JSON cannot carry faithfully; nothing was recorded. See json.ts. */
export class UnserializableResultError extends EngineError {}

/** The log names a workflow this process has no code for. */
export class UnknownWorkflowError extends EngineError {}

/**
 * `start(name, input, { id })` with an id the log already holds, but under
 * another workflow name or with another input. The id names one run; this call
 * describes a different one. Nothing was written.
 */
export class WorkflowIdConflictError extends EngineError {
  constructor(
    /** The id both runs claim. */
    readonly workflowId: string,
    /** What differs: 'name', 'input', or both. */
    readonly differs: ReadonlyArray<'name' | 'input'>,
    /** The run the log has under this id: its workflow name and input. */
    readonly recorded: { name: string; input: unknown },
    /** What this call passed. */
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
export class NonDeterminismError extends EngineError {
  constructor(
    /** The workflow whose replay stopped. */
    readonly workflowId: string,
    /** The position where code and log disagree. */
    readonly seq: number,
    /** The step name the log has at that position. */
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
 * The log already has a record at this step's position, though this run holds
 * the lease and loaded the log after claiming. Under leases that means
 * something wrote to `steps` behind the engine's back. This run's writes were
 * rolled back.
 */
export class StepAlreadyRecordedError extends EngineError {
  constructor(workflowId: string, seq: number, name: string, options?: { cause?: unknown }) {
    super(
      `workflow ${workflowId} step #${seq} ${name} was recorded by another process first; this attempt's writes were rolled back`,
      'Only the engine may write to the steps table, and only under a lease: look for another program writing to it.',
      options,
    );
  }
}

/** The largest workflow id `start()` accepts, in bytes of UTF-8 (PostgreSQL's index refuses rows over about 2.7 kB). */
export const MAX_WORKFLOW_ID_BYTES = 1024;

/** `start()` was given an id that cannot name a run: empty, blank, too long, or with a NUL character. Nothing was written. */
export class InvalidWorkflowIdError extends EngineError {}

/** Throw {@link InvalidWorkflowIdError} unless `id` can be a workflow's id. */
export function checkWorkflowId(id: string): void {
  const shown = brief(id);
  const hint = 'Use an id that names the business operation, e.g. order-1: not blank, no NUL character, at most 1024 bytes.';
  if (typeof id !== 'string') throw new InvalidWorkflowIdError(`workflow id ${shown} is a ${typeof id}, not a string`, hint);
  if (id.trim() === '') throw new InvalidWorkflowIdError(`workflow id ${shown} is empty or only whitespace: it would name no run`, hint);
  if (id.includes('\u0000')) throw new InvalidWorkflowIdError(`workflow id ${shown} contains a NUL character (\\u0000), which PostgreSQL cannot store`, hint);
  const bytes = Buffer.byteLength(id);
  if (bytes > MAX_WORKFLOW_ID_BYTES) throw new InvalidWorkflowIdError(`workflow id ${shown} is ${bytes} bytes, over the ${MAX_WORKFLOW_ID_BYTES}-byte limit`, hint);
}

/** The workflow failed — its code threw, or its attempts ran out; its error is in the log. */
export class WorkflowFailedError extends EngineError {}

/** The largest step result, workflow input or output the engine records by default: 1 MiB of JSON. */
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;

/**
 * A step result, workflow output or workflow input is larger, as JSON, than
 * the engine's `maxRecordBytes`. Nothing was recorded. A kind of
 * {@link UnserializableResultError}: the engine treats it the same way (a
 * step result or output fails its workflow at once, an input is refused by `start()`).
 */
export class RecordTooLargeError extends UnserializableResultError {
  constructor(
    /** What was too large: `the result of workflow <id>, step #<seq> <name>`, `the input of workflow <id>`, … */
    readonly where: string,
    /** Its size as JSON, in bytes. */
    readonly bytes: number,
    /** The limit it exceeds. */
    readonly limitBytes: number,
  ) {
    super(
      `${where} is ${bytes} bytes of JSON, over the ${limitBytes}-byte limit of what the log records. Nothing was recorded.`,
      'Keep large data out of the log: store it elsewhere (a table, object storage) and return its key; or raise maxRecordBytes in createEngine.',
    );
  }
}

/**
 * A step ran longer than its `timeoutMs`. Its signal was aborted; whatever it
 * returns later is ignored. A failed attempt of the step, retried like any other.
 */
export class StepTimeoutError extends EngineError {
  constructor(
    /** The workflow whose step timed out. */
    readonly workflowId: string,
    /** The step's position. */
    readonly seq: number,
    /** The step's name. */
    readonly stepName: string,
    /** The timeout it overran. */
    readonly timeoutMs: number,
  ) {
    super(
      `workflow ${workflowId} step #${seq} ${stepName} did not return within ${timeoutMs} ms; its signal was aborted`,
      'Make the step pass its signal to what it waits on, and give it a timeout long enough for the slowest answer you accept.',
    );
  }
}

/**
 * A step failed for good: its retries ran out, or its error was one its
 * policy does not retry. Thrown to the workflow where it called the step —
 * the same error, with the same message, on every replay: what the log keeps
 * of the step's own error is its class name (`errorName`) and message. Catch
 * it to compensate; left uncaught, it fails the workflow.
 */
export class StepFailedError extends EngineError {
  constructor(
    /** The workflow whose step failed. */
    readonly workflowId: string,
    /** The step's position. */
    readonly seq: number,
    /** The step's name. */
    readonly stepName: string,
    /** How many attempts it made. */
    readonly attempts: number,
    /** The class name of the step's last error: `ServiceError`, `StepTimeoutError`, … */
    readonly errorName: string,
    /** The message of the step's last error. */
    readonly errorMessage: string,
    options?: { cause?: unknown },
  ) {
    super(
      `workflow ${workflowId} step #${seq} ${stepName} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${errorName}: ${errorMessage}`,
      'Each attempt and its error is in the log (engine.inspect, `durable show`). Catch StepFailedError in the workflow to compensate, or retry the workflow once the cause is fixed.',
      options,
    );
  }
}

/**
 * A workflow was claimed more than its `maxAttempts` times in a row, and no
 * run of it recorded anything or reported back: each worker that ran it died
 * or froze (a poison workflow — out of memory, a segfault, `process.exit` in a
 * library). It is failed instead of taking down one more worker.
 */
export class AttemptsExhaustedError extends EngineError {}

/**
 * A workflow ran past its deadline (start()'s `timeoutMs`): it is failed with
 * this error, its running step's signal aborted, no further step started.
 */
export class WorkflowTimeoutError extends EngineError {
  constructor(
    /** The workflow that timed out. */
    readonly workflowId: string,
  ) {
    super(
      `workflow ${workflowId} passed its deadline (start's timeoutMs): failed; its running step's signal was aborted, and no further step starts`,
      'Raise timeoutMs at start() if the work legitimately takes longer, or look at what it was waiting on (durable show).',
    );
  }
}

/** `send()` to a workflow id that is not in the log. Nothing was written. */
export class NoSuchWorkflowError extends EngineError {}

/** `send()` to a workflow that has finished: nothing will ever wait for the event. Nothing was written. */
export class WorkflowNotRunningError extends EngineError {}

/**
 * The workflow was cancelled (engine.cancel): thrown by a step, a sleep or a
 * wait that would start after the cancellation (and by the running step's
 * aborted signal), so the code stops — or compensates, in ctx.nonCancellable;
 * and by result() of a cancelled workflow.
 */
export class WorkflowCancelledError extends EngineError {
  constructor(
    readonly workflowId: string,
    readonly reason: string | null,
  ) {
    super(
      `workflow ${workflowId} was cancelled${reason ? `: ${reason}` : ''}`,
      'Steps that must run even so — a compensation, a release — go in ctx.nonCancellable(async () => …).',
    );
  }
}

/**
 * A child workflow ended failed or cancelled: what `await handle.result()`
 * throws in its parent — the same error on every replay, since the child's
 * end is recorded in the parent's log.
 */
export class ChildWorkflowError extends EngineError {
  constructor(
    readonly childId: string,
    readonly status: 'failed' | 'cancelled',
    /** The child's recorded error (for a cancelled child: the cancel's reason). */
    readonly childError: string | null,
  ) {
    super(
      `child workflow ${childId} ${status}${childError ? `: ${childError}` : ''}`,
      status === 'failed' ? `Look at the child (durable show ${childId}); catch this error in the parent to go on without it.` : 'Catch it in the parent to go on without the child.',
    );
  }
}

/** The id a child would get (`<parent>/<position>`) names a workflow that is not this parent's child: something else took it. Nothing was started. */
export class ChildIdTakenError extends EngineError {
  constructor(parentId: string, childIds: string[]) {
    super(
      `workflow ${parentId} cannot start child ${childIds.join(', ')}: that id is already a workflow started by something else`,
      `A child's id is its parent's id, a slash and its position; do not start() workflows with ids of that form (${parentId}/…).`,
    );
  }
}
