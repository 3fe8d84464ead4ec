/**
 * Errors the course's shared code raises, and the one place where an unknown
 * thrown value becomes an `Error`.
 *
 * Every error a learner may meet carries a `hint`: one sentence saying what to
 * do next. Command-line entry points print `message` and `hint` — never a stack
 * trace — through {@link explain}.
 */

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

/** An error with a one-sentence hint for the person at the keyboard. */
export class CourseError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The database could not be reached, started or used. */
export class DatabaseUnavailableError extends CourseError {}

/**
 * Message plus hint, the way a command-line tool should show an error. Any
 * error with a string `hint` has one: chapter 7's engine is a package that
 * imports nothing from the course, so its errors are not CourseErrors.
 */
export function explain(thrown: unknown): string {
  const error = toError(thrown);
  const given: unknown = (error as { hint?: unknown }).hint;
  const hint = typeof given === 'string' && given !== '' ? `\n  → ${given}` : '';
  return `${error.name === 'Error' ? 'error' : error.name}: ${error.message}${hint}`;
}

/**
 * Run a command-line entry point: on failure print one clear message (no
 * stack trace unless DEBUG is set) and exit 1.
 */
export function runMain(main: () => Promise<void>): void {
  main().catch((thrown: unknown) => {
    process.stderr.write(`\n${explain(thrown)}\n`);
    if (process.env.DEBUG) process.stderr.write(`${toError(thrown).stack}\n`);
    process.exit(1);
  });
}
