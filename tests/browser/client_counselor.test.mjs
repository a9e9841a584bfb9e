// client_counselor.test.mjs - a person and a counselor, each in their own
// browser, go through a whole text session on the real server: Talk now,
// the queue, the offer, chat with delivery states and typing, the slot
// timer and its warning, the end, referral and rating, the counselor's
// wrap-up; then a second session ended early with End, after which the
// counselor sees the first one's rating as their feedback, and an
// operator sees it by topic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, screenshot, startServer, waitText } from './lib.mjs';

const WAIT = 20000;

test('a text session from Talk now to the rating, and one ended early', async (t) => {
  // 15-minute slot at 60x: 15 s; warnings 10 s and 14 s in; goodbye 0.5 s;
  // wrap-up 3 s. Enough to chat first and still see the warnings come.
  const server = await startServer(['--slot-length', '15m', '--warn-at', '5m,1m',
    '--time-scale', '60', '--wrapup', '3m']);
  const browsers = [];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await server.stop();
  });
  browsers.push(await launch(), await launch());
  const problems = [];

  // ---- the person: Talk now, and nobody is online yet ----
  const client = await openPage(browsers[0], `${server.base}/`, problems);
  const talk = client.getByRole('button', { name: 'Talk now' });
  await client.waitForFunction(() => !document.getElementById('talk').disabled);
  await waitText(client.getByRole('heading', { level: 1 }), /Someone is here to listen/);
  await screenshot(client, 'client-idle');
  await client.getByLabel('What would you like to talk about?').selectOption('grief');
  await talk.click();
  await waitText(client.locator('#position'), /You're next in line\./);
  await waitText(client.locator('#nobody'), /No counselors are online right now; you keep your place\./);
  await waitText(client.locator('#waited'), /You've been waiting \d+:\d\d/);
  assert.ok(await client.getByRole('button', { name: 'Leave the line' }).isVisible());
  await screenshot(client, 'client-waiting');

  // ---- the counselor signs in and goes available: the offer rings ----
  const counselor = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await counselor.getByLabel('Your name').fill('Alice');
  await counselor.getByLabel('Grief and loss').check();
  await counselor.getByLabel('Anxiety and worry').check();
  await screenshot(counselor, 'counselor-signin');
  await counselor.getByRole('button', { name: 'Sign in' }).click();
  await waitText(counselor.locator('#state-h'), /You're away/);
  await waitText(counselor.locator('#who'), /Signed in as Alice/);
  await counselor.getByRole('button', { name: 'Set available' }).click();

  const offer = counselor.getByRole('region', { name: 'Someone is waiting to talk' });
  await offer.waitFor({ timeout: WAIT });
  await waitText(counselor.locator('#offer-topic'), /^Grief and loss$/);
  await waitText(counselor.locator('#offer-mode'), /^text$/);
  await waitText(counselor.locator('#ring-n'), /^(1\d|20|[1-9])$/);
  await waitText(counselor.locator('#state-h'), /Incoming offer/);
  await counselor.waitForFunction(() => document.title.includes('Someone is waiting'));
  await screenshot(counselor, 'counselor-offer');
  await offer.getByRole('button', { name: 'Accept' }).click();

  // ---- the session ----
  await waitText(client.locator('#session-h'), /You're talking with Alice/);
  await waitText(counselor.locator('#session-h'), /In a conversation/);
  await waitText(counselor.locator('#session-topic'), /Grief and loss/);
  assert.equal(await offer.isVisible(), false);
  const clientTimer = client.getByRole('timer');
  const first = await waitText(clientTimer, /^1[45]:\d\d$/);
  await waitText(clientTimer, new RegExp(`^(?!${first}$)\\d+:\\d\\d$`));   // it counts down

  const cBox = counselor.getByLabel('Your message');
  await cBox.pressSequentially('Hello, I am here with you.', { delay: 15 });
  await waitText(client.locator('.typing'), /Alice is typing…/);
  await cBox.press('Enter');
  const cLog = counselor.getByRole('log', { name: 'Conversation' });
  const pLog = client.getByRole('log', { name: 'Conversation' });
  await waitText(pLog.locator('.msg.theirs').last(), /Hello, I am here with you\./);
  await waitText(cLog.locator('.msg.mine .msg-state').last(), /^Delivered$/);
  await waitText(client.locator('.typing'), /^$/);

  const pBox = client.getByLabel('Your message');
  await pBox.pressSequentially('Thank you. It has been a hard week.', { delay: 10 });
  await waitText(counselor.locator('.typing'), /The person is typing…/);
  await client.getByRole('button', { name: 'Send' }).click();
  await waitText(cLog.locator('.msg.theirs').last(), /It has been a hard week\./);
  await waitText(pLog.locator('.msg.mine .msg-state').last(), /^Delivered$/);
  assert.equal(await pBox.inputValue(), '');

  // The gentle warning, on both sides.
  await waitText(client.locator('#slot-notice'), /minute.* left/);
  await waitText(counselor.locator('#slot-notice'), /minute.* left/);
  await screenshot(client, 'client-session');
  await screenshot(counselor, 'counselor-session');

  // ---- the end: referral and rating; the counselor's wrap-up ----
  await waitText(client.locator('#ended-h'), /Thank you for talking with us/);
  await waitText(client.locator('#end-reason'), /Our time together is up/);
  await waitText(client.locator('#referral'), /emergency number/);
  await waitText(counselor.locator('#state-h'), /Wrap-up/);
  await waitText(counselor.locator('#wrapup-left'), /New conversations in \d+:\d\d/);
  await waitText(counselor.locator('#desk-note'), /The conversation has ended: the time was up\./);
  await screenshot(counselor, 'counselor-wrapup');

  await client.locator('label[for="score-5"]').click();   // the fifth star, as a finger would
  assert.ok(await client.getByLabel('5 stars, very helpful').isChecked());
  await waitText(client.locator('#score-words'), /5 of 5 — Very helpful/);
  await client.getByLabel("Anything you'd like to tell us? (optional)").fill('Thank you, Alice.');
  await waitText(client.locator('#comment-left'), /263 characters left/);
  await screenshot(client, 'client-ended');
  await client.getByRole('button', { name: 'Send rating' }).click();
  await waitText(client.locator('#rated'), /Thank you — your rating helps us listen better\./);
  assert.ok(await client.getByRole('button', { name: 'Talk again' }).isVisible());
  await screenshot(client, 'client-rated');
  const stats = await (await fetch(`${server.base}/stats`)).json();
  assert.deepEqual(stats.ratings, { count: 1, mean: 5 });

  await waitText(counselor.locator('#state-h'), /You're available/);
  await waitText(counselor.locator('#state-detail'), /Wrap-up finished — you're available again\./);
  await screenshot(counselor, 'counselor-available');

  // ---- a second session, ended early by the person ----
  await client.getByRole('button', { name: 'Talk again' }).click();
  await talk.click();
  await offer.getByRole('button', { name: 'Accept' }).click({ timeout: WAIT });
  await waitText(client.locator('#session-h'), /You're talking with Alice/);
  assert.equal(await pLog.locator('.msg').count(), 0, 'a new session starts empty');
  await client.getByRole('button', { name: 'End conversation' }).click();
  await waitText(client.locator('#end-confirm'), /End the conversation now\?/);
  await client.getByRole('button', { name: 'Yes, end it' }).click();
  await waitText(client.locator('#end-reason'), /You ended the conversation\./);
  await waitText(counselor.locator('#desk-note'), /The conversation has ended: the person ended it\./);

  // ---- the counselor's feedback: asked for again as that session ended ----
  const feedback = counselor.getByRole('region', { name: 'Your feedback' });
  await waitText(feedback.locator('#feedback-summary'), /^1 rating, 5\.0 stars on average\.$/);
  await waitText(feedback.locator('#feedback-comments li'), /^Thank you, Alice\.$/);
  assert.deepEqual(await feedback.locator('#feedback-hist dd:not(.bar)').allTextContents(),
    ['1', '0', '0', '0', '0'], 'five stars once, from 5 down to 1');
  await screenshot(counselor, 'counselor-feedback');

  // ---- an operator: the rating by topic, with no comment ----
  const op = await browsers[1].context.newPage();
  op.on('pageerror', (e) => problems.push(`operator: ${e.message}`));
  await op.goto(`${server.base}/operator`);
  const grief = op.locator('#fb-topics tr:has(th:text-is("grief")) td');
  await waitText(grief.first(), /^1$/);
  assert.deepEqual(await grief.allTextContents(), ['1', '5.0', '0', '0', '0', '0', '1']);
  assert.equal(await op.getByText('Thank you, Alice.').count(), 0, 'comments are the counselor\'s');
  await screenshot(op, 'operator-feedback');

  assert.deepEqual(problems, []);
});
