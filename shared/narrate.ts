/**
 * Terminal narration for demos and for the engines' own "watch me work" lines.
 *
 * Colour only on a terminal (or with FORCE_COLOR=1); NO_COLOR turns it off.
 * Engines print through {@link trace} so a demo shows, step by step, what ran
 * for real and what was replayed from the log.
 */
import type { Ledger, OrderEffects } from './world/ledger.ts';

function colourOn(): boolean {
  const force = process.env.FORCE_COLOR;
  if (force !== undefined && force !== '') return force !== '0';
  return !process.env.NO_COLOR && Boolean(process.stdout.isTTY);
}

const code = (open: number, close: number) => (text: string) => (colourOn() ? `\x1b[${open}m${text}\x1b[${close}m` : text);

export const paint = {
  bold: code(1, 22),
  dim: code(2, 22),
  red: code(31, 39),
  green: code(32, 39),
  yellow: code(33, 39),
  blue: code(34, 39),
  magenta: code(35, 39),
  cyan: code(36, 39),
};

/** COURSE_TRACE=0 silences the engines' trace lines (the benchmarks measure the engine, not the terminal). */
const tracing = () => process.env.COURSE_TRACE !== '0';

/** Lines an engine prints while it works (the demo shows them live). */
export const trace = {
  /** The step's code ran: a real effect happened. */
  ran(step: string, result: unknown): void {
    if (!tracing()) return;
    console.log(`  ${paint.green('▶ ran     ')} ${paint.bold(step.padEnd(18))} → ${short(result)}`);
  },
  /** The step's result came from the log: nothing happened in the world. */
  replayed(step: string, result: unknown): void {
    if (!tracing()) return;
    console.log(`  ${paint.cyan('↺ replayed')} ${paint.bold(step.padEnd(18))} → ${short(result)} ${paint.dim('(from the log)')}`);
  },
  failed(step: string, error: Error): void {
    if (!tracing()) return;
    console.log(`  ${paint.red('✗ failed  ')} ${paint.bold(step.padEnd(18))} ${paint.dim(error.message)}`);
  },
  info(text: string): void {
    if (!tracing()) return;
    console.log(`  ${paint.dim(text)}`);
  },
};

/**
 * The engine of chapter 7 on prints nothing: it hands each event to the `log`
 * function it is given (a library's output is its application's choice). The
 * course gives it this one, which prints the same trace lines as the earlier
 * chapters' engines. Structural, so shared/ needs nothing from a chapter.
 */
export function narrateEngineLog(entry: {
  event: string;
  message: string;
  step?: { name: string };
  output?: unknown;
  workflowId?: string;
  error?: Error;
}): void {
  if (entry.event === 'step-ran' && entry.step) trace.ran(entry.step.name, entry.output);
  else if (entry.event === 'step-replayed' && entry.step) trace.replayed(entry.step.name, entry.output);
  else if (entry.event === 'workflow-failed' && entry.error) trace.failed(`workflow ${entry.workflowId ?? '?'}`, entry.error);
  else trace.info(entry.message);
}

/** Narration for the demo scripts (the parent process). */
export const say = {
  title(text: string): void {
    console.log(`\n${paint.bold(paint.magenta(`━━ ${text} `.padEnd(72, '━')))}`);
  },
  line(text = ''): void {
    console.log(text);
  },
  explain(text: string): void {
    console.log(paint.dim(text));
  },
  process(attempt: number, what: string): void {
    console.log(`\n${paint.blue(`┌ process #${attempt}`)} ${paint.dim(what)}`);
  },
  crash(where: string): void {
    console.log(`${paint.red(`└ 💥 killed with SIGKILL at crash point ${paint.bold(where)}`)} ${paint.dim('(no cleanup ran, nothing was flushed)')}`);
  },
  exited(code: number | null): void {
    console.log(code === 0 ? paint.green('└ ✓ exited normally') : paint.red(`└ exited with code ${code}`));
  },
  verdict(ok: boolean, text: string): void {
    console.log(`\n${ok ? paint.green(`✓ ${text}`) : paint.red(`✗ ${text}`)}`);
  },
};

/** The ledger as a small table: one row per order, red where an effect is not exactly once. */
export function ledgerTable(ledger: Ledger, orderIds: string[]): string {
  // Pad before colouring: escape codes would throw the columns off.
  const cell = (n: number, width: number) => {
    const text = String(n).padEnd(width);
    return n === 1 ? paint.green(text) : paint.red(text);
  };
  const rows = orderIds.map((id) => {
    const e: OrderEffects = ledger.byOrder(id);
    return `  ${id.padEnd(14)} ${cell(e.charges, 9)} ${cell(e.stockDecrements, 17)} ${cell(e.emails, 6)}`;
  });
  return [paint.dim(`  ${'order'.padEnd(14)} ${'charges'.padEnd(9)} ${'stock −'.padEnd(17)} emails`), ...rows].join('\n');
}

/**
 * A value as one short line of JSON, for a log line. Never throws: a log line
 * must not change what the engine does. What JSON cannot print (a BigInt, a
 * cycle, a function) is shown as `[unprintable: BigInt]` and so on.
 */
export function short(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) text = value === undefined ? 'undefined' : `[unprintable: ${kindOf(value)}]`;
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/** What a value is, in a word: `BigInt`, `function`, `Object`, `Map`, … (never throws). */
function kindOf(value: unknown): string {
  try {
    if (typeof value === 'bigint') return 'BigInt';
    if (typeof value === 'object' && value !== null) {
      const name: unknown = Object.getPrototypeOf(value)?.constructor?.name;
      return typeof name === 'string' && name !== '' ? name : 'object';
    }
    return typeof value;
  } catch {
    return 'value';
  }
}
