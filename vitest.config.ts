import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // One PostgreSQL server for the whole run; each test file makes its own database.
    globalSetup: ['shared/testing/global-setup.ts'],
    include: ['chapters/**/*.test.ts', 'shared/**/*.test.ts', 'tools/**/*.test.ts'],
    // Crash tests start real processes (about 0.4 s each) and restart them.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make the crash tests fight for CPU.
    maxWorkers: 2,
  },
});
