/**
 * Schedules: a workflow started at every tick of a cron expression — once per
 * tick, however many workers run the scheduler, on the database clock.
 *
 *   createEngine({ db, workflows, schedules: { nightly: { workflow: 'report', cron: '0 3 * * *' } } })
 *
 * Exactly once per tick, with no lock and no leader: the tick's time is the
 * workflow's id (`nightly@2026-12-03T03:00:00.000Z`), and start() inserts an
 * id once (INSERT … ON CONFLICT DO NOTHING). Every worker's scheduler may try
 * to start the same tick; one inserts it, the others find it there. What a
 * lock or an elected leader would add is a second thing that can fail.
 *
 * Which ticks are due is judged on the database's clock (`SELECT now()` each
 * pass), never the worker's. The last tick started is kept per schedule
 * (table `schedules`), so ticks missed while no scheduler ran — everything
 * down for an hour — are handled by a stated policy, not by accident:
 *   missed: 'skip'      (default) a tick is started only if a scheduler sees it
 *                       within `graceMs` of its time; older ones are skipped,
 *                       and the skip is logged
 *   missed: 'catch-up'  every tick since the last one started is started, oldest
 *                       first, at most 100 a pass
 * A schedule seen for the first time starts from now: no back-fill.
 *
 * Cron, in UTC: five fields (minute hour day-of-month month day-of-week) or
 * six with seconds first; `*`, numbers, ranges `a-b`, lists `a,b`, steps
 * `*\/n` and `a-b/n`; day-of-week 0–7 (0 and 7 are Sunday). When both day
 * fields are restricted, a day matching either is a tick (as in Vixie cron).
 */
import { EngineError } from './errors.ts';

/** A cron expression that does not parse, or a schedule that cannot work (its workflow is not registered). Nothing was started. */
export class ScheduleError extends EngineError {}

/** One schedule, as given to createEngine's `schedules`. */
export interface ScheduleOptions {
  /** The registered workflow it starts. */
  workflow: string;
  /** When: a cron expression in UTC (see schedules.ts). */
  cron: string;
  /** Ticks missed while no scheduler ran: skipped (default), or started late, each once. */
  missed?: 'skip' | 'catch-up';
  /** With `missed: 'skip'`: how late a tick may still be started (default 60 000 ms). */
  graceMs?: number;
  /** The workflow's input for a tick (default `{ scheduledAt }`, the tick's time as an ISO string). The same tick must give the same input. */
  input?: (tick: { scheduledAt: string }) => unknown;
}

/** What a field may hold, and its name for messages. */
const FIELDS = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

/** A parsed cron expression: the allowed values of each field, and whether the day fields were restricted. */
export interface Cron {
  expression: string;
  seconds: Set<number>;
  minutes: Set<number>;
  hours: Set<number>;
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
  daysRestricted: boolean;
  weekdaysRestricted: boolean;
}

/** Parse `expression`, or a ScheduleError saying which field is wrong and why. */
export function parseCron(expression: string): Cron {
  if (typeof expression !== 'string') throw new ScheduleError(`a cron expression must be a string, got ${typeof expression}`);
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) {
    throw new ScheduleError(
      `cron expression "${expression}" has ${parts.length} field(s); it needs 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)`,
      'For example "0 3 * * *" (03:00 UTC every day) or "*/10 * * * * *" (every 10 seconds).',
    );
  }
  const fields = parts.length === 6 ? parts : ['0', ...parts];
  const sets = fields.map((text, i) => parseField(expression, text, FIELDS[i]!));
  const weekdays = new Set([...sets[5]!].map((d) => d % 7)); // 7 is Sunday too
  return {
    expression,
    seconds: sets[0]!,
    minutes: sets[1]!,
    hours: sets[2]!,
    days: sets[3]!,
    months: sets[4]!,
    weekdays,
    daysRestricted: fields[3] !== '*',
    weekdaysRestricted: fields[5] !== '*',
  };
}

function parseField(expression: string, text: string, field: (typeof FIELDS)[number]): Set<number> {
  const wrong = (why: string) => new ScheduleError(`cron expression "${expression}": ${field.name} "${text}" ${why}`, `${field.name} takes ${field.min}–${field.max}, *, a-b, a,b or */n.`);
  const values = new Set<number>();
  for (const item of text.split(',')) {
    const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item);
    if (!match) throw wrong('does not parse');
    const [, range, first, last, step] = match;
    const from = range === '*' ? field.min : Number(first);
    const to = range === '*' ? field.max : last !== undefined ? Number(last) : step !== undefined ? field.max : from;
    const by = step === undefined ? 1 : Number(step);
    if (from < field.min || to > field.max) throw wrong(`is out of range`);
    if (from > to) throw wrong('is a range that ends before it starts');
    if (by < 1) throw wrong('has a step of 0');
    for (let value = from; value <= to; value += by) values.add(value);
  }
  return values;
}

/** Does `date` (UTC, to the second) fall on a tick of `cron`? */
function matches(cron: Cron, date: Date): boolean {
  return cron.seconds.has(date.getUTCSeconds()) && cron.minutes.has(date.getUTCMinutes()) && cron.hours.has(date.getUTCHours()) && cron.months.has(date.getUTCMonth() + 1) && dayMatches(cron, date);
}

function dayMatches(cron: Cron, date: Date): boolean {
  const day = cron.days.has(date.getUTCDate());
  const weekday = cron.weekdays.has(date.getUTCDay());
  // Vixie cron: both restricted — either will do; one restricted — that one.
  if (cron.daysRestricted && cron.weekdaysRestricted) return day || weekday;
  return day && weekday;
}

/**
 * The first tick of `cron` strictly after `after`, or null if there is none
 * within five years (an expression such as "0 0 31 2 *" never fires). Jumps a
 * month, a day, an hour or a minute at a time when that field cannot match,
 * so a pass costs a few hundred steps at most.
 */
export function nextTick(cron: Cron, after: Date): Date | null {
  const t = new Date(Math.floor(after.getTime() / 1000) * 1000 + 1000);
  const limit = after.getTime() + 5 * 366 * 24 * 3600 * 1000;
  while (t.getTime() <= limit) {
    if (!cron.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
    } else if (!dayMatches(cron, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
    } else if (!cron.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
    } else if (!cron.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
    } else if (!cron.seconds.has(t.getUTCSeconds())) {
      t.setUTCSeconds(t.getUTCSeconds() + 1, 0);
    } else if (matches(cron, t)) {
      return t;
    }
  }
  return null;
}

/** The ticks of `cron` in (after, until], oldest first, at most `limit`. */
export function ticksBetween(cron: Cron, after: Date, until: Date, limit: number): Date[] {
  const ticks: Date[] = [];
  for (let t = nextTick(cron, after); t && t <= until && ticks.length < limit; t = nextTick(cron, t)) ticks.push(t);
  return ticks;
}

/** A schedule checked and parsed, with its defaults filled in. */
export interface Schedule {
  name: string;
  workflow: string;
  cron: Cron;
  missed: 'skip' | 'catch-up';
  graceMs: number;
  input: (tick: { scheduledAt: string }) => unknown;
}

/** Check every schedule when the engine is made: a bad one fails createEngine, not a worker at 3 a.m. */
export function checkSchedules(schedules: Record<string, ScheduleOptions>, workflowNames: string[]): Schedule[] {
  return Object.entries(schedules).map(([name, options]) => {
    if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(name)) throw new ScheduleError(`schedule name "${name}" must be 1–200 letters, digits, _ . : or -`, 'It is part of every workflow id the schedule starts.');
    if (!workflowNames.includes(options.workflow)) {
      throw new ScheduleError(`schedule ${name} starts workflow "${options.workflow}", which is not registered`, `Registered: ${workflowNames.join(', ') || '(none)'}.`);
    }
    const cron = parseCron(options.cron);
    if (!nextTick(cron, new Date())) throw new ScheduleError(`cron expression "${options.cron}" of schedule ${name} never fires`, 'Check the day of month against the month (there is no 31 February).');
    const missed = options.missed ?? 'skip';
    if (missed !== 'skip' && missed !== 'catch-up') throw new ScheduleError(`schedule ${name}: missed must be 'skip' or 'catch-up', got ${String(missed)}`);
    const graceMs = options.graceMs ?? 60_000;
    if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw new ScheduleError(`schedule ${name}: graceMs must be a finite number ≥ 0, got ${graceMs}`);
    return { name, workflow: options.workflow, cron, missed, graceMs, input: options.input ?? ((tick) => tick) };
  });
}

/** The workflow id of a schedule's tick: the tick is the idempotency key. */
export function tickId(schedule: string, tick: Date): string {
  return `${schedule}@${tick.toISOString()}`;
}
