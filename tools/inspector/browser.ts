/**
 * Headless Chromium for the inspector's browser test and its screenshots:
 * Debian's chromium (`apt-get install -y chromium`: /usr/bin/chromium),
 * driven by playwright-core — never a browser Playwright downloads itself.
 * CHROMIUM_PATH names another binary.
 */
import fs from 'node:fs';
import os from 'node:os';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Why there is no browser to run, or undefined when there is one. */
export function chromiumMissing(): string | undefined {
  return fs.existsSync(CHROMIUM_PATH) ? undefined : `${CHROMIUM_PATH} is missing (apt-get install -y chromium, or set CHROMIUM_PATH)`;
}

export async function launchChromium(): Promise<Browser> {
  const missing = chromiumMissing();
  if (missing) throw new Error(`no browser: ${missing}`);
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      // As root, Chromium's sandbox cannot start (it needs an unprivileged user namespace it will not make as root).
      ...(os.userInfo().uid === 0 ? ['--no-sandbox'] : []),
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      // The machine has no network but localhost: without these, Chromium keeps trying Google's hosts.
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
