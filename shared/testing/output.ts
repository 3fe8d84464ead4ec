/**
 * Reading what a child process printed: without colours, counted by pattern.
 *
 *   startChild({ script, env: { ...world.env, ...noColourEnv } });
 *   expect(printed(attempt)).toContain('claimed order-1');
 *   expect(stepsRan(attempt)).toBe(3);
 */
import type { Attempt } from '../crash/runner.ts';

/** The environment that makes a child print plain text, whatever the terminal running the tests prefers. */
export const noColourEnv: Record<string, string> = { FORCE_COLOR: '0' };

/** `text` without its ANSI colour codes. */
export function stripColour(text: string): string {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

/** What a process printed, stdout then stderr, without colours (a scenario's children inherit the terminal's FORCE_COLOR). */
export function printed(attempt: Attempt | undefined): string {
  return stripColour(`${attempt?.stdout ?? ''}${attempt?.stderr ?? ''}`);
}

/** How many times `pattern` matches in `text`. */
export function countMatches(text: string, pattern: RegExp): number {
  return (text.match(new RegExp(pattern, 'g')) ?? []).length;
}

/** How many steps a process ran (its engine's `▶ ran` lines). */
export function stepsRan(attempt: Attempt | undefined): number {
  return countMatches(printed(attempt), /▶ ran/);
}

/** How many steps a process replayed from the log (its engine's `↺ replayed` lines). */
export function stepsReplayed(attempt: Attempt | undefined): number {
  return countMatches(printed(attempt), /↺ replayed/);
}
