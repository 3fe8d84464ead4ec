/** Quiet test output: an engine run in the test's own process prints its trace lines to console.log. */
import { afterEach, beforeEach, vi } from 'vitest';

/**
 * Call at the top of a test file: every test in it runs with console.log
 * silenced (and spied on: `vi.mocked(console.log).mock.calls` is what was said),
 * every mock restored after it.
 */
export function silenceConsoleLog(): void {
  beforeEach(() => {
    vi.spyOn(console, 'log').mockImplementation(() => {});
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
}
