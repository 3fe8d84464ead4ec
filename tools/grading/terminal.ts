/**
 * What the grader shows while it works and when it is done: a progress bar
 * (one redrawn line on a terminal; a line per finished submission otherwise,
 * so a CI log stays readable) and the summary table.
 */
import { paint } from '../../shared/narrate.ts';
import type { Exercise } from './exercises.ts';
import type { ExerciseGrade, SubmissionGrade } from './grade.ts';

export class ProgressBar {
  private done = 0;
  private readonly running = new Set<string>();
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly started = Date.now();
  /** Redraws once a second, so the clock moves while a long submission runs. */
  private readonly ticker: NodeJS.Timeout | undefined;

  constructor(private readonly total: number) {
    if (this.tty) {
      this.ticker = setInterval(() => this.draw(), 1000);
      this.ticker.unref();
    }
  }

  start(student: string): void {
    this.running.add(student);
    this.draw();
  }

  finish(grade: SubmissionGrade): void {
    this.running.delete(grade.student);
    this.done++;
    if (this.tty) this.draw();
    else process.stderr.write(`[${this.done}/${this.total}] ${grade.student}: ${grade.score}/${grade.maxScore} ${grade.status} (${(grade.durationMs / 1000).toFixed(1)} s)\n`);
  }

  end(): void {
    clearInterval(this.ticker);
    if (this.tty) process.stderr.write('\r\x1b[2K');
  }

  private draw(): void {
    if (!this.tty) return;
    const width = 24;
    const filled = Math.round((this.done / Math.max(1, this.total)) * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const elapsed = Math.round((Date.now() - this.started) / 1000);
    const now = [...this.running].join(', ');
    const line = `${bar} ${this.done}/${this.total} graded · ${elapsed} s${now ? ` · grading ${now}` : ''}`;
    process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns ?? 100) - 1)}`);
  }
}

/** student | one column per exercise (points/max) | total | status */
export function summaryTable(grades: SubmissionGrade[], exercises: Exercise[]): string {
  const header = ['student', ...exercises.map((e) => `${String(e.number).padStart(2, '0')} ${e.slug.slice(3)}`), 'total', 'status'];
  const rows = grades.map((grade) => [
    grade.student,
    ...exercises.map((e) => cell(grade.exercises.find((x) => x.slug === e.slug))),
    `${grade.score}/${grade.maxScore}`,
    grade.status,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const colour = (text: string, status: string) => (status === 'pass' ? paint.green(text) : status === 'error' ? paint.red(text) : paint.yellow(text));
  return [
    paint.bold(line(header)),
    ...rows.map((row, r) => {
      const padded = line(row);
      return colour(padded, grades[r]!.status);
    }),
  ].join('\n');
}

function cell(grade: ExerciseGrade | undefined): string {
  if (!grade) return '–';
  if (grade.status === 'missing') return '— missing';
  if (grade.status === 'error') return `${grade.points}/${grade.maxPoints} error`;
  return `${grade.points}/${grade.maxPoints}`;
}

/** The few lines under the table: why the errors are errors. */
export function problemsList(grades: SubmissionGrade[]): string {
  const lines: string[] = [];
  for (const grade of grades) {
    for (const exercise of grade.exercises) {
      if (exercise.status === 'error' || (exercise.message && exercise.status !== 'missing')) {
        const first = (exercise.message ?? '').split('\n').slice(0, 3).join(' ⏎ ');
        lines.push(`  ${grade.student} ${exercise.slug}: ${first.length > 160 ? `${first.slice(0, 159)}…` : first}`);
      }
    }
  }
  return lines.join('\n');
}
