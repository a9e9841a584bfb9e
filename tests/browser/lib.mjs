// lib.mjs - browser-test support: start the real earshotd on a free
// loopback port, launch Debian's Chromium through playwright-core with a
// fresh profile, save screenshots as test artifacts (not in git).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const root = new URL('../../', import.meta.url).pathname;
export const shotsDir = process.env.SCREENSHOTS || join(root, 'build', 'screenshots');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function healthy(port) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    return r.status === 200;
  } catch {
    return false;
  }
}

// Start earshotd (dev mode) with extra `args`; returns { port, base, stop }.
// `port` reuses a known port, e.g. to restart a server under open pages.
export async function startServer(args = [], { port: fixedPort } = {}) {
  const bin = process.env.EARSHOTD || join(root, 'build', 'earshotd');
  const port = fixedPort || await freePort();
  const child = spawn(bin, ['--web-root', join(root, 'client-demo', 'web'), ...args,
                            '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 300; i++) {
    if (await healthy(port)) break;
    if (child.exitCode !== null) throw new Error(`earshotd exited: ${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    log: () => log,
    // Stop by pid, and report how it ended: 0 is a clean shutdown.
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      child.once('exit', (code) => { clearTimeout(timer); resolve(code); });
      child.kill('SIGTERM');
    }),
  };
}

const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required'];

// A browser with its own fresh profile; close() removes the profile.
// `denyMicrophone`: the person says no when asked for the microphone.
export async function launch({ denyMicrophone = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'earshot-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: denyMicrophone
      ? [...flags.filter((f) => f !== '--use-fake-ui-for-media-stream'), '--deny-permission-prompts']
      : flags,
    viewport: { width: 390, height: 800 },
  });
  return {
    context,
    close: async () => { await context.close(); rmSync(dir, { recursive: true, force: true }); },
  };
}

// The browser's page at `url`, failing no test by itself: page errors and
// console errors are collected in `problems` for the test to assert on.
export async function openPage(browser, url, problems, timeout = 20000) {
  const page = browser.context.pages()[0] || await browser.context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (e) => problems.push(`${url}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${url}: ${m.text()}`); });
  await page.goto(url);
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(shotsDir, { recursive: true });
  await page.screenshot({ path: join(shotsDir, `${name}.png`), fullPage: true });
}

// Wait until `locator`'s text matches `re`; fail with the text last seen.
export async function waitText(locator, re, timeout = 20000) {
  const until = Date.now() + timeout;
  let last = '(nothing: not on the page)';
  for (;;) {
    const text = await locator.textContent({ timeout: 500 }).catch(() => null);
    if (text !== null) {
      last = text;
      if (re.test(text) && await locator.isVisible()) return text;
    }
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`expected ${re} in ${locator}, last saw ${JSON.stringify(last)}`);
}
