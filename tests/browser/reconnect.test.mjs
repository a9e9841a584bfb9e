// reconnect.test.mjs - the pages on a flaky network: the server goes away
// under a person waiting in line and a counselor being offered them; both
// pages say they are reconnecting and come back by themselves when a server
// answers on the same port again. The person is told plainly that the place
// in line was lost and offered Talk now; the counselor is available again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, screenshot, startServer, waitText } from './lib.mjs';

const WAIT = 20000;


test('both pages reconnect by themselves and say what was lost', async (t) => {
  let server = await startServer();
  const browsers = [await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await server.stop();
  });
  const [page, desk] = await Promise.all(browsers.map(async (b) => {
    const p = b.context.pages()[0] || await b.context.newPage();
    p.setDefaultTimeout(WAIT);
    return p;
  }));

  // A counselor who is available, and a person waiting in line while the
  // counselor is away for a moment (so nobody is offered yet).
  await desk.goto(`${server.base}/counselor`);
  await desk.getByLabel('Your name').fill('Robin');
  await desk.getByRole('button', { name: 'Sign in' }).click();
  await desk.getByRole('button', { name: 'Set available' }).click();
  await waitText(desk.locator('#state-h'), /You're available/);

  await page.goto(`${server.base}/`);
  const banner = page.locator('#banner');
  const talk = page.getByRole('button', { name: 'Talk now' });
  await page.waitForFunction(() => !document.getElementById('talk').disabled);
  assert.equal(await banner.isVisible(), false);
  await desk.getByRole('button', { name: 'Set away' }).click();
  await waitText(desk.locator('#state-h'), /You're away/);
  await page.getByLabel('What would you like to talk about?').selectOption('study');
  await talk.click();
  await waitText(page.locator('#position'), /You're next in line\./);
  await desk.getByRole('button', { name: 'Set available' }).click();
  await desk.getByRole('region', { name: 'Someone is waiting to talk' }).waitFor();

  // The server goes away: both pages say so and keep trying.
  assert.equal(await server.stop(), 0, 'the server stops cleanly');
  await waitText(banner, /^Connection lost — reconnecting (in \d+\ss|now)…$/);
  await waitText(desk.locator('#banner'), /^Connection lost — reconnecting (in \d+\ss|now)…$/);
  assert.equal(await desk.getByRole('region', { name: 'Someone is waiting to talk' }).isVisible(), false,
    'no offer stays on screen once the connection is gone');
  await screenshot(page, 'client-reconnecting');
  await screenshot(desk, 'counselor-reconnecting');

  // A server answers on the same port again: both come back by themselves.
  server = await startServer([], { port: server.port });
  await banner.waitFor({ state: 'hidden', timeout: WAIT });
  await waitText(page.locator('#start-note'), /The connection dropped, and with it your place in line\./);
  await page.waitForFunction(() => !document.getElementById('talk').disabled);
  await desk.locator('#banner').waitFor({ state: 'hidden', timeout: WAIT });
  await waitText(desk.locator('#desk-note'), /The connection dropped for a moment; you're available again\./);
  await waitText(desk.locator('#state-h'), /You're available/);
  await screenshot(page, 'client-reconnected');
  await screenshot(desk, 'counselor-reconnected');

  // And they find each other again on the new server.
  await talk.click();
  await waitText(page.locator('#position'), /You're next in line\./);
  await waitText(desk.locator('#offer-topic'), /^Study pressure$/);
});
