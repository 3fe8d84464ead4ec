/**
 * Run one exercise's tests against one implementation, in a vitest process
 * of its own — and come back with a result for every declared test, whatever
 * the code under test does: loops forever, calls process.exit, kills its
 * process, prints megabytes, or fails to load.
 *
 * How:
 *   - the process is the leader of a new process group, so killing the group
 *     kills everything it started (workers, crash-test children, servers);
 *   - two channels, read as the run goes: the reporter (reporter.ts), in
 *     vitest's main process, writes each test's verdict to the results file;
 *     the test process writes each test's start and end to the progress file
 *     (setup.ts), unbatched, so a watchdog knows which test is running. Only
 *     the results file scores a test. The progress file is written from the
 *     process the code under test runs in, so it is evidence of nothing but
 *     time: a "passed" there that the reporter never confirmed is run again
 *     in a new process, and a line that does not parse is that submission's
 *     problem, never the grader's crash;
 *   - graded as root, the test process drops to a user of its own before any
 *     code under test is imported (setup.ts, `uid`): the results file, the
 *     grader's processes and other submissions are out of its reach, and
 *     every process of that user is killed when the run ends, detached or not;
 *   - a test running longer than its limit means the test process is stuck
 *     where vitest's own timeout cannot reach it (a synchronous loop): the
 *     watchdog kills the group and scores that test as timed out; a test
 *     during which the process died (process.exit past vitest, a SIGKILL) is
 *     scored as such; either way a new process runs the tests after it;
 *   - at the deadline (the submission's time limit) everything is killed and
 *     the tests that never ran are scored as errors;
 *   - what the process prints is kept up to a cap, never in full.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testsOf, type Exercise } from './exercises.ts';
import { courseRoot } from './impl.ts';
import { inNamespaces, killTagged, killUser } from './isolation.ts';
import type { ReportedError, ReporterEvent } from './reporter.ts';

export type TestStatus = 'pass' | 'fail' | 'error';

export interface TestOutcome {
  /** The test's full name, `describe > it`, as in points.json. */
  name: string;
  hidden: boolean;
  status: TestStatus;
  message?: string;
  /** What the test printed (capped). */
  output?: string;
  durationMs?: number;
  /** Where the test is declared, for quoting its code. */
  file?: string;
  line?: number;
  /** The test ran, but is not declared in points.json (a spec changed without its points). */
  undeclared?: boolean;
}

export interface SpecRunOptions {
  exercise: Exercise;
  /** The folder holding the `NN-name/` folders to test. */
  implRoot: string;
  /** The folder the code under test runs in (a submission's workspace). */
  workdir?: string;
  /** A database of this run's own (exercises that need one make a schema per test in it). */
  databaseUrl?: string;
  /** Run the instructor-only specs too. */
  hidden: boolean;
  /** Each crash test must pass this many times in a row. */
  repeats: number;
  testTimeoutMs: number;
  /** The limit of one repetition of a crash test (default: 2 × testTimeoutMs). */
  crashTestTimeoutMs?: number;
  /** Date.now() after which everything is killed. */
  deadline: number;
  /** Stop at the first failing test (the CI check only needs one). */
  bail?: boolean;
  /** Show vitest's own report on this terminal (the learner's commands). */
  showOutput?: boolean;
  /**
   * Give the process only the variables it needs (grading): the admin
   * DATABASE_URL and anything else in the grader's environment stay out of
   * reach of the code under test.
   */
  isolate?: boolean;
  /**
   * Run the code under test as this user and group (grading as root; see
   * isolation.ts): the test process drops to them before importing it, and
   * every process of `uid` is killed when each run ends.
   */
  user?: { uid: number; gid: number };
  /**
   * Run the test process in namespaces of its own (isolation.ts,
   * inNamespaces): only its own processes, only what it runs on of the
   * checkout, and these folders (the submissions') empty.
   */
  sandbox?: { hide: string[] };
}

export interface SpecRun {
  tests: TestOutcome[];
  /** What went wrong with the run itself, not with a test (a kill, a spec that would not load). */
  problems: string[];
  durationMs: number;
}

const vitestBin = path.join(courseRoot, 'node_modules', 'vitest', 'vitest.mjs');
const configFile = path.join(courseRoot, 'tools', 'grading', 'vitest.config.ts');
const reporterFile = path.join(courseRoot, 'tools', 'grading', 'reporter.ts');
/** Processes for one exercise, at most: a first one, and a new one after each test that stopped its process. */
const maxRounds = (tests: number) => Math.min(tests + 1, 12);
const OUTPUT_HEAD = 8 * 1024;
const OUTPUT_TAIL = 8 * 1024;

/**
 * The process groups of the test runs going on now. They are detached (so one
 * kill takes a whole run), which also means Ctrl-C on the terminal does not
 * reach them: whoever stops early must stop them (`stopAllRuns`).
 */
const activeGroups = new Set<number>();
/** Set by stopAllRuns: no new test process is started after it. */
let stopped = false;

/** Kill every test run still going, and start no more (synchronous: fit for an 'exit' handler). */
export function stopAllRuns(): void {
  stopped = true;
  for (const pid of activeGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  activeGroups.clear();
}
process.once('exit', stopAllRuns);

export async function runSpecs(options: SpecRunOptions): Promise<SpecRun> {
  const started = Date.now();
  const declared = testsOf(options.exercise, { hidden: options.hidden });
  const results = new Map<string, TestOutcome>();
  const problems: string[] = [];
  let remaining = declared.map((t) => t.name);
  // Why a test has no result, if the loop below ends with some still unrun (set where it ends).
  let why = `Not run: ${maxRounds(declared.length)} test processes were started for this exercise, and each was stopped by a test.`;

  for (let round = 1; round <= maxRounds(declared.length) && remaining.length > 0; round++) {
    if (stopped) {
      why = 'Not run: the run was interrupted.';
      break;
    }
    const outcome = await runOnce(options, round === 1 ? undefined : remaining);
    for (const note of outcome.junk) if (!problems.includes(note)) problems.push(note);
    for (const test of outcome.results) results.set(test.name, test);
    const blamed = outcome.blamed;
    if (blamed && !results.has(blamed.test)) {
      results.set(blamed.test, { name: blamed.test, hidden: isHidden(options.exercise, blamed.test), status: 'error', message: blamed.message });
    }
    remaining = declared.map((t) => t.name).filter((name) => !results.has(name));
    if (remaining.length === 0) break;
    if (outcome.moduleErrors.length > 0) {
      why = `The tests could not be loaded:\n${outcome.moduleErrors.join('\n')}`;
      problems.push(why);
      break;
    }
    if (outcome.killed === 'deadline') {
      why = 'Not run: the submission used up its time limit before this test.';
      problems.push('the submission used up its time limit');
      break;
    }
    if (outcome.killed === 'startup') {
      why = `Not run: the tests did not start within ${seconds(startupLimit(options))} (does the code loop forever when it is imported?).`;
      problems.push(why);
      break;
    }
    // One test stopped the process (a loop, an exit, a kill): it is scored; the rest get a new process.
    if (blamed) {
      problems.push(`"${blamed.test}": ${blamed.reason}`);
      continue;
    }
    if (options.bail && outcome.anyFailed) {
      why = 'Not run: the run stopped at the first failure.';
      break;
    }
    // The process ended on its own between tests, and some never reported.
    why = `Not run: the test process ended before this test (${outcome.exit}).${outcome.errors.length ? `\n${outcome.errors.join('\n')}` : ''}\n${outcome.outputTail}`.trim();
    problems.push(`the test process ended early (${outcome.exit})`);
    break;
  }

  for (const name of remaining) {
    if (!results.has(name)) results.set(name, { name, hidden: isHidden(options.exercise, name), status: 'error', message: why });
  }
  // Declared tests in points order, then anything the specs ran that points.json does not know.
  const ordered = declared.map((t) => results.get(t.name)!);
  for (const [name, test] of results) if (!declared.some((t) => t.name === name)) ordered.push({ ...test, undeclared: true });
  return { tests: ordered, problems, durationMs: Date.now() - started };
}

function isHidden(exercise: Exercise, name: string): boolean {
  return exercise.hiddenPoints.has(name);
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/**
 * How long one test (one repetition of it) may hold its process: its own
 * vitest time limit, which the test process reports, and a little more. Past
 * vitest's limit, vitest itself would have failed it — unless it cannot,
 * because the code under test never yields.
 */
function perTestLimit(options: SpecRunOptions, reportedTimeoutMs: number | undefined): number {
  return (reportedTimeoutMs ?? Math.max(options.testTimeoutMs, options.crashTestTimeoutMs ?? 0)) + 2_000;
}

/** How long the tests may take to start: loading vitest, the spec and the code under test. */
function startupLimit(options: SpecRunOptions): number {
  return Math.max(15_000, options.testTimeoutMs);
}

interface RoundOutcome {
  results: TestOutcome[];
  moduleErrors: string[];
  /** Errors outside any test (unhandled rejections, a worker that died). */
  errors: string[];
  /** Lines in a channel that were not the grader's: what to say about them. */
  junk: string[];
  /** Why the runner stopped the process, if it did. */
  killed?: 'test-timeout' | 'deadline' | 'startup';
  /** The test that was running when the process was stopped or died: what to tell about it, in full and in a few words. */
  blamed?: { test: string; message: string; reason: string };
  anyFailed: boolean;
  exit: string;
  outputTail: string;
}

/** One vitest process: the whole spec, or only the tests named in `only`. */
async function runOnce(options: SpecRunOptions, only: string[] | undefined): Promise<RoundOutcome> {
  // Private to the grader (mkdtemp makes it 0700): a test process running as another user cannot reach either file.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'course-run-'));
  const resultsFile = path.join(scratch, 'results.jsonl');
  const progressFile = path.join(scratch, 'progress.jsonl');
  fs.writeFileSync(resultsFile, '', { mode: 0o600 });
  fs.writeFileSync(progressFile, '', { mode: 0o600 });
  const sandboxTag = randomUUID();
  const specs = [options.exercise.spec, ...(options.hidden ? options.exercise.hiddenSpecs : [])];
  const args = [vitestBin, 'run', '--config', configFile, '--reporter', reporterFile];
  if (options.showOutput) args.push('--reporter', 'default');
  if (options.bail) args.push('--bail', '1');
  if (only) args.push('--testNamePattern', namePattern(only));

  const env: Record<string, string> = {
    ...baseEnvironment(options.isolate ?? false),
    IMPL_ROOT: options.implRoot,
    GRADE_SPECS: specs.join(','),
    GRADE_EXERCISE: options.exercise.slug,
    GRADE_RESULTS_FILE: resultsFile,
    GRADE_PROGRESS_FILE: progressFile,
    // Inherited by everything the run starts: how its processes are found when it ends (killTagged).
    GRADE_SANDBOX: sandboxTag,
    GRADE_REPEATS: String(options.repeats),
    GRADE_TEST_TIMEOUT: String(options.testTimeoutMs),
    GRADE_CRASH_TEST_TIMEOUT: String(options.crashTestTimeoutMs ?? options.testTimeoutMs * 2),
  };
  // Colour only for a learner at a terminal. (NO_COLOR, not FORCE_COLOR=0: vitest's colours take any FORCE_COLOR as "on".)
  delete env.FORCE_COLOR;
  delete env.NO_COLOR;
  if (options.showOutput && process.stdout.isTTY) env.FORCE_COLOR = '1';
  else env.NO_COLOR = '1';
  if (options.databaseUrl) env.GRADE_DATABASE_URL = options.databaseUrl;
  if (options.workdir) env.GRADE_WORKDIR = options.workdir;
  if (options.user) {
    env.GRADE_UID = String(options.user.uid);
    env.GRADE_GID = String(options.user.gid);
    // Its own home and temp folder, inside its workspace: nothing of it lands where another submission looks.
    if (options.workdir) {
      env.HOME = options.workdir;
      env.TMPDIR = path.join(options.workdir, 'tmp');
    }
  }

  const specFiles = specs.map((spec) => path.resolve(courseRoot, spec));
  const command = options.sandbox ? inNamespaces([process.execPath, ...args], { hide: options.sandbox.hide, scratch, files: specFiles, workdir: options.workdir }) : [process.execPath, ...args];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: courseRoot,
    env,
    detached: true, // its own process group: one kill takes everything it started
    stdio: ['ignore', options.showOutput ? 'inherit' : 'pipe', options.showOutput ? 'inherit' : 'pipe'],
  });
  if (child.pid) activeGroups.add(child.pid);
  const output = new CappedOutput();
  child.stdout?.on('data', (chunk: Buffer) => output.add(chunk));
  child.stderr?.on('data', (chunk: Buffer) => output.add(chunk));

  const events: ReporterEvent[] = [];
  /** Tests running now: name → when the current repetition started, and its time limit. */
  const running = new Map<string, { at: number; timeoutMs?: number }>();
  let killed: RoundOutcome['killed'];
  const spawnedAt = Date.now();
  const verdicts = new LineReader(resultsFile, VERDICTS);
  const progress = new LineReader(progressFile, PROGRESS);

  const readEvents = () => {
    for (const event of [...verdicts.read(), ...progress.read()]) {
      events.push(event);
      // Only the test process's own lines tell when a test starts (vitest's reports come in batches, late).
      if (event.event === 'worker-start') running.set(event.name, { at: event.at, timeoutMs: event.timeoutMs });
      if (event.event === 'worker-result' || event.event === 'result') running.delete(event.name);
    }
  };

  const killGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };

  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not start: ${error.message}`));
    child.once('close', (code, signal) => resolve(signal ? `killed by ${signal}` : `exit code ${code}`));
  });
  let blamed: RoundOutcome['blamed'];
  const watchdog = setInterval(() => {
    readEvents();
    const now = Date.now();
    const oldest = [...running].sort((a, b) => a[1].at - b[1].at)[0];
    if (killed) return;
    if (now >= options.deadline) {
      killed = 'deadline';
      if (oldest) blamed = { test: oldest[0], message: 'Stopped: the submission used up its time limit while this test was running.', reason: 'the submission ran out of time' };
    } else if (oldest && now - oldest[1].at > perTestLimit(options, oldest[1].timeoutMs)) {
      killed = 'test-timeout';
      blamed = {
        test: oldest[0],
        message: `Stopped: this test held its process past its time limit (${seconds(oldest[1].timeoutMs ?? options.testTimeoutMs)}) and never gave it back — an endless loop? The tests after it ran in a new process.`,
        reason: `stopped at its time limit (${seconds(oldest[1].timeoutMs ?? options.testTimeoutMs)})`,
      };
    } else if (!events.some((e) => e.event === 'worker-start') && now - spawnedAt > startupLimit(options)) {
      killed = 'startup';
    }
    if (killed) killGroup();
  }, 100);

  const exit = await exited;
  clearInterval(watchdog);
  killGroup(); // whatever it started and left behind (a crash-test child, a server) goes with it
  // …and whatever left the group (setsid, a double fork): every process of the submission's user.
  if (options.user) killUser(options.user.uid);
  killTagged(sandboxTag);
  if (child.pid) activeGroups.delete(child.pid);
  readEvents();
  fs.rmSync(scratch, { recursive: true, force: true });

  // A test still running when the process ended on its own: it took the process down with it.
  const stillRunning = [...running].sort((a, b) => a[1].at - b[1].at)[0];
  if (!killed && stillRunning) {
    blamed = {
      test: stillRunning[0],
      message: `The test process died while running this test (${exit}): did the code under test exit or kill its process? The tests after it ran in a new process.`,
      reason: 'its process died',
    };
  }

  // vitest's own report of a test is the one to trust (it knows about repetitions and output);
  // the test process's lines stand in for the reports that never made it out.
  const reported = new Map<string, TestOutcome>();
  const fromWorker = new Map<string, TestOutcome>();
  const moduleErrors: string[] = [];
  const errors: string[] = [];
  for (const event of events) {
    if (event.event === 'result') reported.set(event.name, toOutcome(options.exercise, event));
    if (event.event === 'worker-start') fromWorker.delete(event.name);
    // A "passed" from the test process itself is not a verdict (code under test could have written it):
    // unconfirmed by the reporter, the test is run again. A failure it reports is believed: no one gains by forging one.
    if (event.event === 'worker-result' && event.state === 'failed') fromWorker.set(event.name, toOutcome(options.exercise, { ...event, event: 'result', file: '', output: '' }));
    if (event.event === 'module-error') moduleErrors.push(...event.errors.map(describeError));
    if (event.event === 'end') errors.push(...event.errors.map(describeError));
  }
  for (const [name, outcome] of fromWorker) if (!reported.has(name)) reported.set(name, outcome);
  if (blamed) reported.delete(blamed.test);
  // A round that runs only some tests reports the others as skipped: they were scored in an earlier round.
  if (only) for (const [name] of reported) if (!only.includes(name)) reported.delete(name);
  const results = [...reported.values()];
  const junk = [
    ...(verdicts.junk ? [`the results channel held ${verdicts.junk.count} line(s) that are not the reporter's (the first: ${JSON.stringify(verdicts.junk.first.slice(0, 120))}); they were ignored`] : []),
    ...(progress.junk ? [`the test process wrote ${progress.junk.count} line(s) to its progress channel that are not the grader's (the first: ${JSON.stringify(progress.junk.first.slice(0, 120))}); they were ignored`] : []),
  ];
  return {
    results,
    moduleErrors,
    errors,
    junk,
    killed,
    blamed,
    anyFailed: results.some((r) => r.status !== 'pass'),
    exit,
    outputTail: output.tail(1500),
  };
}

function toOutcome(exercise: Exercise, event: Extract<ReporterEvent, { event: 'result' }>): TestOutcome {
  const status: TestStatus = event.state === 'passed' ? 'pass' : event.state === 'failed' ? 'fail' : 'error';
  return {
    name: event.name,
    hidden: isHidden(exercise, event.name),
    status,
    message: status === 'pass' ? undefined : event.state === 'failed' ? event.errors.map(describeError).join('\n\n') : 'Not run: skipped.',
    output: event.output || undefined,
    durationMs: event.durationMs,
    file: event.file,
    line: event.line,
  };
}

function describeError(error: ReportedError): string {
  // From the progress channel too, which the code under test can write: take nothing for granted.
  if (typeof error !== 'object' || error === null) return String(error).slice(0, 3000);
  return [error.message, error.diff].filter((part) => typeof part === 'string' && part !== '').join('\n').slice(0, 3000);
}

/** A vitest name pattern matching exactly these tests (vitest joins suite and test names with a space). */
function namePattern(names: string[]): string {
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return `(?:${names.map((name) => `${escape(name.split(' > ').join(' '))}$`).join('|')})`;
}

/**
 * The environment of a test process. Isolated: only what node, tsx and the
 * course need — not the grader's DATABASE_URL (an admin connection), tokens
 * or anything else a student's code should not read.
 */
function baseEnvironment(isolate: boolean): Record<string, string> {
  const keep = isolate ? ['PATH', 'HOME', 'TMPDIR', 'TMP', 'TEMP', 'LANG', 'LC_ALL', 'TZ', 'SystemRoot', 'COURSE_DB'] : Object.keys(process.env);
  const env: Record<string, string> = {};
  for (const key of keep) {
    const value = process.env[key];
    // Never inherit a test run's own variables (we may be running inside vitest), nor an armed crash point.
    if (value === undefined || /^(VITEST|CRASH_|GRADE_|IMPL_ROOT$|TINYPOOL)/.test(key) || key === 'NODE_OPTIONS') continue;
    if (isolate && key === 'DATABASE_URL') continue;
    env[key] = value;
  }
  return env;
}

/** The first and the last few KB of a stream, and how much was dropped in between. */
class CappedOutput {
  private head = '';
  private tailText = '';
  private dropped = 0;

  add(chunk: Buffer): void {
    let text = chunk.toString('utf8');
    if (this.head.length < OUTPUT_HEAD) {
      const room = OUTPUT_HEAD - this.head.length;
      this.head += text.slice(0, room);
      text = text.slice(room);
    }
    this.tailText += text;
    if (this.tailText.length > OUTPUT_TAIL) {
      this.dropped += this.tailText.length - OUTPUT_TAIL;
      this.tailText = this.tailText.slice(-OUTPUT_TAIL);
    }
  }

  tail(n: number): string {
    const all = this.dropped > 0 ? `${this.head}\n… (${this.dropped} characters left out) …\n${this.tailText}` : this.head + this.tailText;
    return all.length > n ? `…${all.slice(-n)}` : all;
  }
}

/** Which events each channel may carry: the reporter's verdicts, and the test process's progress. */
const VERDICTS = new Set(['result', 'module-error', 'end']);
const PROGRESS = new Set(['worker-start', 'worker-result']);

interface Junk {
  count: number;
  first: string;
}

/**
 * Reads one channel's new lines as they arrive. A line that is not JSON, not
 * an object, or not an event this channel carries (a forged verdict in the
 * progress channel) is counted as junk and otherwise ignored: whatever a
 * submission writes, it cannot crash the grader or score a test.
 */
class LineReader {
  private offset = 0;
  private partial = '';
  junk: Junk | undefined;

  constructor(
    private readonly file: string,
    private readonly allowed: ReadonlySet<string>,
  ) {}

  read(): ReporterEvent[] {
    let text = '';
    try {
      const fd = fs.openSync(this.file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        if (size > this.offset) {
          // At most 4 MB at a time: a channel flooded with junk cannot fill the grader's memory.
          const buffer = Buffer.alloc(Math.min(size - this.offset, 4 * 1024 * 1024));
          fs.readSync(fd, buffer, 0, buffer.length, this.offset);
          this.offset += buffer.length;
          text = buffer.toString('utf8');
        }
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return [];
    }
    const lines = (this.partial + text).split('\n');
    this.partial = (lines.pop() ?? '').slice(-64 * 1024);
    const events: ReporterEvent[] = [];
    for (const line of lines) {
      if (!line) continue;
      const event = parseEvent(line, this.allowed);
      if (event) events.push(event);
      else this.junk = { count: (this.junk?.count ?? 0) + 1, first: this.junk?.first ?? line };
    }
    return events;
  }
}

function parseEvent(line: string, allowed: ReadonlySet<string>): ReporterEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const event = value as Record<string, unknown>;
  if (typeof event.event !== 'string' || !allowed.has(event.event)) return undefined;
  if ((event.event === 'result' || event.event.startsWith('worker-')) && typeof event.name !== 'string') return undefined;
  if ('errors' in event && !Array.isArray(event.errors)) return undefined;
  if (event.event === 'worker-start' && typeof event.at !== 'number') return undefined;
  return event as unknown as ReporterEvent;
}
