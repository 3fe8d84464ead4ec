/**
 * A vitest reporter that writes each event as one JSON line to the file
 * GRADE_RESULTS_FILE as it arrives — not a report at the end — so the runner
 * (run-specs.ts) can read results while the tests run. It runs in vitest's
 * main process and hears from the test process in batches; the test process
 * writes its own start and end lines to another file, unbatched (setup.ts).
 * Only this file scores a test: the code under test runs in the test process,
 * never here, and (graded as root) as a user who cannot open this file.
 *
 *   {"event":"result","name":"describe > it","state":"passed"|"failed"|"skipped","errors":[…],"durationMs":…,"output":"…","line":…}
 *   {"event":"module-error","file":"…","errors":[…]}      the spec could not even load (e.g. the code under test throws on import)
 *   {"event":"end","reason":"passed"|"failed"|"interrupted","errors":[…]}
 */
import fs from 'node:fs';
import type { Reporter, TestCase, TestModule } from 'vitest/node';

/** Per test, the first few KB of what it printed: a test that prints megabytes must not fill our memory. */
const OUTPUT_LIMIT = 4096;

interface ErrorLike {
  message?: string;
  name?: string;
  stack?: string;
  diff?: string;
}

export interface ReportedError {
  message: string;
  stack?: string;
  diff?: string;
}

export type ReporterEvent =
  | { event: 'result'; name: string; file: string; state: 'passed' | 'failed' | 'skipped' | 'pending'; errors: ReportedError[]; durationMs?: number; output: string; line?: number }
  | { event: 'module-error'; file: string; errors: ReportedError[] }
  | { event: 'end'; reason: string; errors: ReportedError[] }
  // Written by setup.ts from inside the test process, synchronously (see there why):
  | { event: 'worker-start'; name: string; at: number; timeoutMs?: number }
  | { event: 'worker-result'; name: string; state: 'passed' | 'failed' | 'pending'; errors: ReportedError[] };

/** Colour codes belong on a terminal, not in a report. */
// eslint-disable-next-line no-control-regex
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, '');

function serialize(errors: ReadonlyArray<ErrorLike> | undefined): ReportedError[] {
  return (errors ?? []).map((e) => ({
    message: plain(`${e.name && e.name !== 'Error' && !String(e.message).startsWith(e.name) ? `${e.name}: ` : ''}${e.message ?? String(e)}`).slice(0, 4000),
    stack: e.stack ? plain(e.stack).slice(0, 4000) : undefined,
    diff: e.diff ? plain(e.diff).slice(0, 4000) : undefined,
  }));
}

/** The results file's path, taken out of the environment before vitest starts a test process: it inherits none. */
function takeResultsFile(): string | undefined {
  const file = process.env.GRADE_RESULTS_FILE;
  delete process.env.GRADE_RESULTS_FILE;
  return file;
}

export default class JsonLinesReporter implements Reporter {
  private readonly file = takeResultsFile();
  private readonly output = new Map<string, { text: string; dropped: number }>();

  private write(event: ReporterEvent): void {
    if (this.file) fs.appendFileSync(this.file, `${JSON.stringify(event)}\n`);
  }

  onUserConsoleLog(log: { content: string; taskId?: string }): void {
    if (!log.taskId) return;
    const kept = this.output.get(log.taskId) ?? { text: '', dropped: 0 };
    const room = OUTPUT_LIMIT - kept.text.length;
    kept.text += plain(log.content.slice(0, Math.max(0, room)));
    kept.dropped += Math.max(0, log.content.length - Math.max(0, room));
    this.output.set(log.taskId, kept);
  }

  onTestCaseResult(test: TestCase): void {
    const result = test.result();
    const printed = this.output.get(test.id);
    this.write({
      event: 'result',
      name: test.fullName,
      file: test.module.relativeModuleId,
      state: result.state,
      errors: serialize(result.errors as ReadonlyArray<ErrorLike> | undefined),
      durationMs: test.diagnostic()?.duration,
      output: printed ? `${printed.text}${printed.dropped ? `\n… (${printed.dropped} more characters)` : ''}` : '',
      line: test.location?.line,
    });
  }

  onTestModuleEnd(module: TestModule): void {
    const errors = module.errors();
    if (errors.length > 0) this.write({ event: 'module-error', file: module.relativeModuleId, errors: serialize(errors as ReadonlyArray<ErrorLike>) });
  }

  onTestRunEnd(_modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>, reason: string): void {
    this.write({ event: 'end', reason, errors: serialize(unhandledErrors as ReadonlyArray<ErrorLike>) });
  }
}
