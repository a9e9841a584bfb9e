// crisis.test.mjs - someone who may not be safe says so on the start page:
// they are told they are first in line, and the counselor's offer says
// it is urgent. In the session, "I don't feel safe" shows them where to get
// urgent help, tells the counselor, holds the timer open, and puts the
// session at the top of the operator's dashboard until it ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, screenshot, startServer, waitText } from './lib.mjs';

test('a person who may not be safe goes first, and the counselor sees it', async (t) => {
  const server = await startServer();
  const browsers = [await launch(), await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await server.stop();
  });
  const problems = [];

  // Someone already waits, calmly.
  const calm = await openPage(browsers[0], `${server.base}/`, problems);
  await calm.waitForFunction(() => !document.getElementById('talk').disabled);
  await calm.getByRole('button', { name: 'Talk now' }).click();
  await waitText(calm.locator('#position'), /You're next in line\./);

  const client = await calm.context().newPage();
  client.on('pageerror', (e) => problems.push(e.message));
  await client.goto(`${server.base}/`);
  await client.waitForFunction(() => !document.getElementById('talk').disabled);
  await client.getByLabel('I might not be safe right now').check();
  await screenshot(client, 'client-crisis-start');
  await client.getByRole('button', { name: 'Talk now' }).click();
  await waitText(client.locator('#position'), /You're next in line\./);
  await waitText(client.locator('#urgent'), /first in line/);
  await waitText(calm.locator('#position'), /You're number 2 in line\./);
  await screenshot(client, 'client-crisis-waiting');

  const counselor = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await counselor.getByLabel('Your name').fill('Sam');
  await counselor.getByRole('button', { name: 'Sign in' }).click();
  await counselor.getByRole('button', { name: 'Set available' }).click();
  await waitText(counselor.locator('#offer-crisis'), /Urgent: this person said they may not be/);
  await screenshot(counselor, 'counselor-crisis-offer');
  await counselor.getByRole('button', { name: 'Accept' }).click();
  await waitText(client.locator('#session-h'), /You're talking with Sam/);
  assert.equal(await calm.locator('#v-session').isVisible(), false, 'the calm person still waits');

  const operator = await openPage(browsers[2], `${server.base}/operator`, problems);
  await waitText(operator.locator('#queue'), /^1$/);
  assert.equal(await operator.locator('#crises').isVisible(), false);
  await client.getByRole('button', { name: "I don't feel safe" }).click();
  await waitText(client.locator('#crisis-why'), /Thank you for telling us/);
  await waitText(client.locator('#crisis-referral'), /emergency number/);
  await waitText(client.locator('#slot-notice'), /won't be cut off by the timer/);
  await waitText(counselor.locator('#crisis-banner'), /Crisis flagged by the person/);
  await waitText(operator.locator('#crisis-list'), /counselor .* flagged/);
  await screenshot(client, 'client-crisis-in-session');
  await screenshot(counselor, 'counselor-crisis-in-session');
  await screenshot(operator, 'operator-crisis');
  await counselor.getByRole('button', { name: 'End conversation' }).click();
  await counselor.getByRole('button', { name: 'Yes, end it' }).click();
  await operator.locator('#crises').waitFor({ state: 'hidden' });
  assert.deepEqual(problems, []);
});
