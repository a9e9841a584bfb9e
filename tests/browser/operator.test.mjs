// operator.test.mjs - the operator dashboard in Chromium against the real
// earshotd: the queue is driven by `earshot` CLI peers (clients and a
// counselor in --json mode, one raw frame per stdin line) and the page
// must show each change; the chart must have drawn its lines; the banner
// must say when the connection is down and go when it is back.
// Screenshots at 390 and 1280 px (build/screenshots/operator-*.png).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { launch, screenshot, startServer } from './lib.mjs';

const root = new URL('../../', import.meta.url).pathname;
const EARSHOT = process.env.EARSHOT || join(root, 'build', 'earshot');
const NARROW = { width: 390, height: 800 };
const WIDE = { width: 1280, height: 900 };

let server;
let browser;
const peers = [];

// One `earshot` CLI peer; stdin stays open until end() (end of input makes
// it quit). Stopped by pid in after() if still running.
function peer(role, { token } = {}) {
  const args = [role, '--json', '--url', `ws://127.0.0.1:${server.port}/ws`];
  const env = { ...process.env };
  if (token) env.EARSHOT_TOKEN = token;   // kept out of `ps`
  const child = spawn(EARSHOT, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const p = {
    child,
    exited,
    send: (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`),
    end: () => child.stdin.end(),
    messages: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    log: () => `stdout: ${out}\nstderr: ${err}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  peers.push(p);
  return p;
}

function mint(role, sub) {
  return execFileSync(EARSHOT, ['token', '--role', role, '--sub', sub], { encoding: 'utf8' }).trim();
}

// Poll `fn` until it returns a truthy value; fail with `what` after `ms`.
async function until(fn, what, ms = 5000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// The value shown next to a visible label in the page's description lists.
function valueOf(page, label) {
  return page.locator(`div:has(> dt:text-is("${label}")) > dd`);
}

async function expectValue(page, label, want) {
  const dd = valueOf(page, label);
  await until(async () => (await dd.textContent()) === want, `"${label}" = "${want}"`);
  assert.ok(await dd.isVisible(), `"${label}" is visible`);
}

async function shots(page, name) {
  await screenshot(page, name);
  await page.setViewportSize(WIDE);
  await page.waitForTimeout(300);          // a resize redraws the chart
  await screenshot(page, `${name}-wide`);
  await page.setViewportSize(NARROW);
  await page.waitForTimeout(300);
}

before(async () => {
  server = await startServer(['--node-id', 'op-node']);
  browser = await launch();
});

after(async () => {
  for (const p of peers) await p.stop();
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('the operator dashboard follows the queue, the counselors and the connection', async () => {
  const page = await browser.context.newPage();
  await page.setViewportSize(NARROW);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });

  // Dev mode: the page fetches its own token from /dev/token (the second
  // test hands one over in the URL fragment, as a hosting app would).
  await page.goto(`${server.base}/operator`);
  await until(async () => (await page.locator('#conn').textContent()) === 'Live', 'connection Live');
  await expectValue(page, 'Waiting in the queue', '0');
  await expectValue(page, 'Oldest wait', '–');
  await expectValue(page, 'Sessions in progress', '0');
  await expectValue(page, 'Away', '0');
  await expectValue(page, 'Ratings', 'none yet');
  await expectValue(page, 'Packets relayed', '0');
  await expectValue(page, 'Packets dropped', '0');
  assert.equal(await page.locator('#m-reasons').isVisible(), false, 'no drop reasons while none dropped');
  assert.equal(await page.locator('#banner').isVisible(), false, 'no banner while connected');
  assert.match(await page.locator('#chart-summary').textContent(), /queue steady at 0 people/);
  assert.equal(await page.locator('h1').textContent(), 'earshot operator');
  // One node, named, with its own figures (the operator's connection is one).
  const nodeRow = page.locator('#nodes tr');
  await until(async () => (await nodeRow.count()) === 1, 'one node listed');
  assert.equal(await nodeRow.locator('th').textContent(), 'op-node');
  assert.equal(await nodeRow.locator('td').first().textContent(), '0');
  await shots(page, 'operator-empty');

  // Two people wait.
  const c1 = peer('client');
  const c2 = peer('client');
  c1.send({ type: 'talk_now', topic: 'grief', mode: 'text' });
  c2.send({ type: 'talk_now', topic: 'grief', mode: 'text' });
  await expectValue(page, 'Waiting in the queue', '2');
  assert.match(await valueOf(page, 'Oldest wait').textContent(), /^\d+:\d\d$/);
  await until(async () => (await page.title()) === '(2) earshot · operator', 'the title counts the queue');

  // One cancels, another joins and goes (end of input: the CLI quits).
  c1.send({ type: 'cancel' });
  await expectValue(page, 'Waiting in the queue', '1');
  const c3 = peer('client');
  c3.send({ type: 'talk_now', topic: 'anxiety', mode: 'text' });
  await expectValue(page, 'Waiting in the queue', '2');
  c3.end();
  await c3.exited;
  await expectValue(page, 'Waiting in the queue', '1');
  await expectValue(page, 'Abandoned', '2');
  await expectValue(page, 'Abandonment rate', '100%');

  // A counselor connects (away), goes available and is offered c2 at once.
  const k1 = peer('counselor', { token: mint('counselor', 'k1') });
  await expectValue(page, 'Away', '1');
  await expectValue(page, 'Ringing', '0');
  assert.match(await page.locator('#c-online').textContent(), /^0 online, 1 connected$/);
  k1.send({ type: 'set_state', state: 'available' });
  await expectValue(page, 'Ringing', '1');
  await expectValue(page, 'Away', '0');
  await expectValue(page, 'Available', '0');
  await expectValue(page, 'Waiting in the queue', '1');   // still waiting while it rings
  await until(() => k1.messages().some((m) => m.type === 'offer'), 'the counselor got an offer');
  assert.match(await page.locator('#c-online').textContent(), /^1 online, 1 connected$/);
  await expectValue(page, 'Connections open', '4');      // operator, c2, k1 (c1 still open)

  // The chart: a point a second (at least), and the queue line drawn in its colour.
  await until(async () => Number(await page.locator('#chart').getAttribute('data-points')) >= 5,
    'five chart points');
  const drawn = await page.evaluate(() => {
    const c = document.getElementById('chart');
    const probe = document.createElement('canvas').getContext('2d');
    probe.fillStyle = getComputedStyle(c).getPropertyValue('--chart-queue').trim();
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let line = 0;
    let ink = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] === 0) continue;
      ink++;
      if (Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 30 && px[i + 3] > 200) line++;
    }
    return { ink, line, width: c.width, cssWidth: c.clientWidth, dpr: devicePixelRatio };
  });
  assert.ok(drawn.ink > 1000, `the chart has axes and labels (${JSON.stringify(drawn)})`);
  assert.ok(drawn.line > 20, `the queue line is drawn (${JSON.stringify(drawn)})`);
  assert.equal(drawn.width, Math.round(drawn.cssWidth * drawn.dpr), 'the canvas is at device resolution');
  assert.deepEqual(problems, [], 'no page errors or CSP violations');
  await shots(page, 'operator-busy');

  // The server goes away: the banner says so and the page keeps trying.
  await server.stop();
  await until(() => page.locator('#banner').isVisible(), 'the connection banner');
  assert.match(await page.locator('#banner').textContent(),
    /^(Connection to the server lost|The server is restarting or shutting down)\. The numbers below are from \d\d:\d\d:\d\d\. Reconnecting/);
  assert.equal(await page.locator('#conn').textContent(), 'Disconnected');
  assert.match(await page.getByRole('alert').textContent(), /^(Connection to the server lost|The server is restarting)/,
    'the news is in an alert; the countdown beside it is not');
  await screenshot(page, 'operator-down');

  // It comes back on the same port: the page reconnects and subscribes again.
  server = await startServer([], { port: server.port });
  await until(async () => (await page.locator('#conn').textContent()) === 'Live', 'Live again', 10000);
  assert.equal(await page.locator('#banner').isVisible(), false, 'the banner is gone');
  await expectValue(page, 'Waiting in the queue', '0');   // a fresh server
  await expectValue(page, 'Connections open', '1');
  await page.close();
  await server.stop();
});

// Figures the CLI peers cannot easily produce (dropped voice packets,
// ratings, a day's uptime, a long queue) come from a stand-in for the
// server's WebSocket; the page itself is still served by earshotd. An
// hour of history is fed to the page's own chart module to see it drawn.
test('the dashboard shows only non-zero drop reasons, ratings and an hour of chart', async () => {
  server = await startServer();
  const page = await browser.context.newPage();
  await page.setViewportSize(NARROW);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.routeWebSocket(/\/ws$/, (ws) => {
    ws.onMessage((text) => {
      const msg = JSON.parse(text);
      if (msg.type === 'hello') {
        ws.send(JSON.stringify({ type: 'welcome', role: 'operator', sub: 'ops', name: '', state: 'watching',
          slot_s: 1200, ring_s: 20, version: 'test' }));
      } else if (msg.type === 'subscribe') {
        ws.send(JSON.stringify({ type: 'stats', queue: 37, oldest_wait_s: 845,
          counselors: { available: 0, ringing: 2, busy: 41, wrapup: 3, away: 12 },
          sessions: 41, served: 1234, abandoned: 56, connections: 137,
          ratings: { count: 812, mean: 4.4375 }, uptime_s: 93784,
          media: { relayed: 9021034, dropped_auth: 0, dropped_replay: 3, dropped_not_opus: 0,
            dropped_too_large: 0, dropped_rate: 0, dropped_bad_rtp: 0, dropped_no_session: 1,
            dropped_slow_reader: 1200 } }));
      }
    });
  });
  await page.goto(`${server.base}/operator#token=${mint('operator', 'ops-mock')}`);
  await expectValue(page, 'Waiting in the queue', '37');
  await expectValue(page, 'Oldest wait', '14:05');
  await expectValue(page, 'Busy', '41');
  await expectValue(page, 'Ratings', '812, mean 4.4');
  await expectValue(page, 'Served', '1,234');
  await expectValue(page, 'Abandonment rate', '4%');
  assert.match(await valueOf(page, 'Uptime').textContent(), /^1 d 2 h$/);
  await expectValue(page, 'Packets relayed', '9,021,034');
  await expectValue(page, 'Packets dropped', '1,204');
  await expectValue(page, 'Replayed', '3');
  await expectValue(page, 'Outside a voice session', '1');
  await expectValue(page, 'Slow receiver', '1,200');
  assert.deepEqual(await page.locator('#m-reasons dt').allTextContents(),
    ['Replayed', 'Outside a voice session', 'Slow receiver'], 'only the non-zero reasons');

  // An hour of history through chart.js itself, on a canvas of its own.
  const points = await page.evaluate(async () => {
    const { TimeChart } = await import('/static/chart.js');
    const real = document.getElementById('chart');
    const c = document.createElement('canvas');
    c.className = real.className;
    c.id = 'hour';
    real.after(c);
    const chart = new TimeChart(c, { series: [
      { key: 'queue', axis: 'left', kind: 'count', step: true, format: String },
      { key: 'wait', axis: 'right', kind: 'seconds', dash: [6, 4],
        format: (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}` },
    ] });
    const now = Date.now();
    for (let i = 5400; i >= 0; i--) {   // 90 minutes a second apart: the oldest go
      if (i === 1200) chart.gap(now - i * 1000);    // 3 minutes down, 20 minutes ago
      if (i <= 1200 && i > 1020) continue;
      const q = Math.max(0, Math.round(12 + 10 * Math.sin(i / 600) + 3 * Math.sin(i / 37)));
      chart.add(now - i * 1000, { queue: q, wait: q * 23 });
    }
    chart.draw(now);
    return chart.length;
  });
  assert.ok(points <= 3600 && points >= 3400, `at most an hour of points (${points})`);
  assert.deepEqual(problems, []);
  await shots(page, 'operator-mock');
  await page.close();
  await server.stop();
});
