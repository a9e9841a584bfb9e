// care.test.mjs - the service's pre-chat question, and continuity on the
// pages: the person's page asks the configured question (a "yes" puts them
// first, as someone who may not be safe); after a first conversation it
// offers "the same counselor as last time", and that counselor's offer
// says they talked before, while the person is told they wait a little
// for them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, screenshot, startServer, waitText } from './lib.mjs';

const QUESTION = 'Are you safe right now?';

async function signIn(page, name) {
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Set available' }).click();
}

test('the pre-chat question, and asking for the same counselor again', async (t) => {
  const server = await startServer(['--crisis-question', QUESTION, '--wrapup', '0',
    '--previous-wait', '30']);
  const browsers = [await launch(), await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await server.stop();
  });
  const problems = [];

  const client = await openPage(browsers[0], `${server.base}/`, problems);
  await client.waitForFunction(() => !document.getElementById('talk').disabled);
  await waitText(client.locator('#question-text'), new RegExp(QUESTION.replace('?', '\\?')));
  assert.equal(await client.locator('#previous-field').isVisible(), false,
    'nobody to ask for before a first conversation');

  // A "yes" to the question puts the person ahead of someone already waiting.
  const calm = await client.context().newPage();
  calm.on('pageerror', (e) => problems.push(e.message));
  await calm.goto(`${server.base}/`);
  await calm.waitForFunction(() => !document.getElementById('talk').disabled);
  await calm.getByRole('radio', { name: 'No' }).check();
  await calm.getByRole('button', { name: 'Talk now' }).click();
  await waitText(calm.locator('#position'), /You're next in line\./);
  await client.getByRole('radio', { name: 'Yes' }).check();
  await screenshot(client, 'client-question');
  await client.getByRole('button', { name: 'Talk now' }).click();
  await waitText(client.locator('#urgent'), /first in line/);
  await waitText(calm.locator('#position'), /You're number 2 in line\./);

  const ann = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await signIn(ann, 'Ann');
  await waitText(ann.locator('#offer-crisis'), /Urgent/);
  assert.equal(await ann.locator('#offer-before').isVisible(), false);
  await ann.getByRole('button', { name: 'Accept' }).click();
  await waitText(client.locator('#session-h'), /You're talking with Ann/);
  await client.getByRole('button', { name: 'End conversation' }).click();
  await client.getByRole('button', { name: 'Yes, end it' }).click();
  await waitText(client.locator('#end-reason'), /You ended the conversation\./);
  // Ann takes the calm person, so she is busy when the first one returns.
  await waitText(ann.locator('#offer-h'), /Someone is waiting/);
  await ann.getByRole('button', { name: 'Accept' }).click();
  await waitText(calm.locator('#session-h'), /You're talking with Ann/);

  const bob = await openPage(browsers[2], `${server.base}/counselor`, problems);
  await signIn(bob, 'Bob');
  await waitText(bob.locator('#state-h'), /You're available/);

  await client.getByRole('button', { name: 'Talk again' }).click();
  assert.ok(await client.locator('#previous-field').isVisible());
  await client.getByRole('radio', { name: 'No' }).check();
  await client.getByLabel("The same counselor as last time, if they're free").check();
  await client.getByRole('button', { name: 'Talk now' }).click();
  await waitText(client.locator('#holding'), /the counselor you talked with last time/);
  await screenshot(client, 'client-waiting-for-previous');
  assert.equal(await bob.locator('#offer').isVisible(), false, 'Bob is not offered the person');

  // Ann's conversation ends: she is offered the person, who talked with her before.
  await calm.getByRole('button', { name: 'End conversation' }).click();
  await calm.getByRole('button', { name: 'Yes, end it' }).click();
  await waitText(ann.locator('#offer-before'), /You talked with this person before\./);
  await screenshot(ann, 'counselor-offer-talked-before');
  await ann.getByRole('button', { name: 'Accept' }).click();
  await waitText(client.locator('#session-h'), /You're talking with Ann/);
  assert.equal(await bob.locator('#offer').isVisible(), false);
  assert.deepEqual(problems, []);
});
