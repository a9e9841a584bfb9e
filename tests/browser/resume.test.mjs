// resume.test.mjs - a dropped connection resumed (PROTOCOL.md "Resume after
// a dropped connection"). The person's page is loaded through a small TCP
// proxy, whose sockets the test destroys to drop the connection the way a
// phone in a tunnel does: no close frame, and for a while no way back. The
// page reconnects by itself through the proxy and takes up what the server
// kept: the place in line (also across a reload), or the session with its
// chat, its timer and, by voice, its audio both ways; back after the grace,
// it says plainly what was lost. Also chat.js's own bookkeeping for a
// resume, driven directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { launch, openPage, screenshot, startServer, waitText } from './lib.mjs';

const WAIT = 20000;

// A TCP proxy on 127.0.0.1 (so pages keep their secure context) to the
// server at `port`. drop() cuts every open connection (a reset to the
// browser, an end without a close frame to the server); with `stayDown`,
// new connections are cut at once until up().
async function dropProxy(port) {
  const pairs = new Set();
  let down = false;
  const server = createServer((from) => {
    from.on('error', () => {});
    if (down) {
      from.resetAndDestroy();
      return;
    }
    const to = connect(port, '127.0.0.1');
    const pair = { from, to };
    pairs.add(pair);
    to.on('error', () => {});
    const end = () => {
      pairs.delete(pair);
      from.destroy();
      to.destroy();
    };
    from.on('close', end);
    to.on('close', end);
    from.pipe(to);
    to.pipe(from);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    drop({ stayDown = false } = {}) {
      down = stayDown;
      for (const { from, to } of pairs) {
        from.resetAndDestroy();
        to.destroy();
      }
      pairs.clear();
    },
    up() {
      down = false;
    },
    close: () => new Promise((resolve) => {
      down = true;
      for (const { from, to } of pairs) {
        from.destroy();
        to.destroy();
      }
      server.close(() => resolve());
    }),
  };
}

// Seconds on a m:ss timer.
const seconds = (text) => {
  const [m, s] = text.split(':').map(Number);
  return m * 60 + s;
};

// The page's lines in the conversation log with exactly `text`.
const lines = (page, who, text) => page.getByRole('log', { name: 'Conversation' })
  .locator(`.msg.${who} .msg-text`, { hasText: new RegExp(`^${text}$`) });

async function counselorAvailable(page, name) {
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Set available' }).click();
  await waitText(page.locator('#state-h'), /You're available|Incoming offer/);
}

async function talkNow(page, { topic = 'general', voice = false } = {}) {
  await page.waitForFunction(() => !document.getElementById('talk').disabled);
  await page.getByLabel('What would you like to talk about?').selectOption(topic);
  if (voice) await page.getByLabel(/By voice/).check();
  await page.getByRole('button', { name: 'Talk now' }).click();
  await waitText(page.locator('#position'), /in line/);
}

// Problems on the pages, less the browser's own reports of the connections
// the test cut.
const real = (problems) => problems.filter((p) =>
  !/WebSocket connection to .* failed|net::ERR_CONNECTION_(RESET|REFUSED|CLOSED)/.test(p));

// How long the wait view says the person has waited, in seconds.
const waited = async (page) => seconds((await page.locator('#waited').textContent())
  .match(/(\d+:\d\d)/)[1]);

// The person is back on their page as it was: not thrown back to the start.
async function notStartedOver(page) {
  assert.equal(await page.locator('#v-start').isVisible(), false, 'not back at the start view');
  assert.equal(await page.locator('#start-note').isVisible(), false, 'no "what was lost" note');
}

test('a person waiting in line drops, and a reload, and keeps their place', async (t) => {
  const server = await startServer();
  const proxy = await dropProxy(server.port);
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await proxy.close();
    await server.stop();
  });
  const problems = [];

  // Three people in line, nobody online: someone first, the person (through
  // the proxy) second, someone else behind them.
  const first = await openPage(browser, `${server.base}/`, problems);
  await talkNow(first);
  const page = await browser.context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => problems.push(`person: ${e.message}`));
  await page.goto(`${proxy.base}/`);
  await talkNow(page, { topic: 'study' });
  await waitText(page.locator('#position'), /You're number 2 in line\./);
  const behind = await browser.context.newPage();
  behind.setDefaultTimeout(WAIT);
  await behind.goto(`${server.base}/`);
  await talkNow(behind);
  await waitText(behind.locator('#position'), /You're number 3 in line\./);
  const waitedBefore = await waited(page);

  // The network goes, and stays gone for a moment.
  proxy.drop({ stayDown: true });
  await waitText(page.locator('#banner'), /^Connection lost — reconnecting/);
  await waitText(page.locator('#estimate'), /Reconnecting — you keep your place in line meanwhile\./);
  assert.ok(await page.locator('#v-wait').isVisible(), 'the wait stays on screen meanwhile');
  await waitText(behind.locator('#position'), /You're number 3 in line\./, 2000);
  await new Promise((r) => setTimeout(r, 1500));
  proxy.up();

  await page.locator('#banner').waitFor({ state: 'hidden', timeout: WAIT });
  await waitText(page.locator('#back-note'), /^Reconnected — you're still in line\.$/);
  await waitText(page.locator('#position'), /^You're number 2 in line\.$/);
  await notStartedOver(page);
  assert.ok(await page.locator('#v-wait').isVisible());
  await waitText(behind.locator('#position'), /You're number 3 in line\./, 2000);
  // The wait clock went on counting from the first tap.
  assert.ok(await waited(page) >= waitedBefore + 1, 'the wait clock goes on');
  await screenshot(page, 'resume-client-waiting');
  // The back note goes by itself.
  await page.locator('#back-note').waitFor({ state: 'hidden', timeout: WAIT });

  // A reload in the same tab (the browser closes with 1001: kept).
  await page.reload();
  await waitText(page.locator('#back-note'), /^Reconnected — you're still in line\.$/);
  await waitText(page.locator('#position'), /^You're number 2 in line\.$/);
  await notStartedOver(page);
  await waitText(behind.locator('#position'), /You're number 3 in line\./, 2000);
  assert.ok(await waited(page) >= waitedBefore + 1, 'the wait clock goes on after a reload');

  // And the place still works: they leave the line, and the one behind moves up.
  await page.getByRole('button', { name: 'Leave the line' }).click();
  await waitText(page.locator('#start-note'), /You left the line\./);
  await waitText(behind.locator('#position'), /You're number 2 in line\./);
  const stats = await (await fetch(`${server.base}/stats`)).json();
  assert.equal(stats.queue, 2);
  assert.deepEqual(real(problems), []);
});

test('a text session survives the person dropping, and the counselor reloading', async (t) => {
  const server = await startServer();
  const proxy = await dropProxy(server.port);
  const browsers = [await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await proxy.close();
    await server.stop();
  });
  const problems = [];
  const person = await openPage(browsers[0], `${proxy.base}/`, problems);
  const desk = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await counselorAvailable(desk, 'Alice');
  await talkNow(person, { topic: 'grief' });
  await desk.getByRole('button', { name: 'Accept' }).click();
  await waitText(person.locator('#session-h'), /You're talking with Alice/);
  await waitText(desk.locator('#session-h'), /In a conversation/);

  // A few words each way before the drop.
  await person.getByLabel('Your message').fill('Before the drop');
  await person.getByLabel('Your message').press('Enter');
  await waitText(lines(desk, 'theirs', 'Before the drop'), /./);
  await waitText(person.locator('.msg.mine .msg-state').last(), /^Delivered$/);
  await desk.getByLabel('Your message').fill('Hello before');
  await desk.getByLabel('Your message').press('Enter');
  await waitText(lines(person, 'theirs', 'Hello before'), /./);
  await waitText(desk.locator('.msg.mine .msg-state').last(), /^Delivered$/);

  // The person's page stops acknowledging (as a page in the background
  // does): the next message is shown but not acknowledged, so the server
  // sends it again after the resume, and the page must show it once.
  await person.evaluate(() => Object.defineProperty(document, 'visibilityState',
    { configurable: true, get: () => 'hidden' }));
  await desk.getByLabel('Your message').fill('Shown, not acknowledged');
  await desk.getByLabel('Your message').press('Enter');
  await waitText(lines(person, 'theirs', 'Shown, not acknowledged'), /./);
  await waitText(desk.locator('.msg.mine .msg-state').last(), /^Sent$/);
  const timerBefore = seconds(await person.getByRole('timer').textContent());

  // The network goes. The counselor is told, writes meanwhile; the person
  // writes too, held back until the connection is back.
  proxy.drop({ stayDown: true });
  await waitText(person.locator('#banner'), /^Connection lost — reconnecting/);
  await waitText(desk.locator('#peer-note'), new RegExp('^The connection to the person dropped\\. '
    + 'They have up to 30 seconds to come back — the session is still open\\.$'));
  await desk.getByLabel('Your message').fill('While you were away');
  await desk.getByLabel('Your message').press('Enter');
  await waitText(desk.locator('.msg.mine .msg-state').last(), /^Sent$/);
  await person.getByLabel('Your message').fill('Written in the tunnel');
  await person.getByLabel('Your message').press('Enter');
  await waitText(person.locator('.msg.mine .msg-state').last(), /^Waiting for the connection…$/);
  assert.ok(await person.locator('#v-session').isVisible(), 'the conversation stays on screen');
  await screenshot(person, 'resume-client-dropped');
  await screenshot(desk, 'resume-counselor-peer-lost');
  await new Promise((r) => setTimeout(r, 1500));
  proxy.up();

  // Back: the same conversation, nothing twice, nothing lost.
  await person.locator('#banner').waitFor({ state: 'hidden', timeout: WAIT });
  await waitText(person.locator('#back-note'), /^Reconnected — you're still talking with Alice\.$/);
  await waitText(desk.locator('#peer-note'), /^They're back\.$/);
  await waitText(lines(person, 'theirs', 'While you were away'), /./);
  await notStartedOver(person);
  assert.ok(await person.locator('#v-session').isVisible());
  for (const [who, text] of [['mine', 'Before the drop'], ['theirs', 'Hello before'],
    ['theirs', 'Shown, not acknowledged'], ['theirs', 'While you were away']])
    assert.equal(await lines(person, who, text).count(), 1, `"${text}" shown once`);
  await waitText(lines(desk, 'theirs', 'Written in the tunnel'), /./);
  assert.equal(await lines(desk, 'theirs', 'Written in the tunnel').count(), 1);
  assert.equal(await lines(person, 'mine', 'Written in the tunnel').count(), 1);

  // Visible again: the acknowledgements go out, and both see "Delivered".
  await person.evaluate(() => {
    delete document.visibilityState;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await waitText(desk.locator('.msg.mine .msg-state').nth(1), /^Delivered$/);
  await waitText(desk.locator('.msg.mine .msg-state').last(), /^Delivered$/);
  await waitText(person.locator('.msg.mine .msg-state').last(), /^Delivered$/);

  // The slot timer went on, and keeps going.
  const timerAfter = seconds(await waitText(person.getByRole('timer'), /^\d+:\d\d$/));
  assert.ok(timerAfter < timerBefore && timerAfter > timerBefore - 30,
    `the timer went on: ${timerBefore} s, then ${timerAfter} s`);
  await waitText(person.getByRole('timer'), new RegExp(`^(?!${Math.floor(timerAfter / 60)}:${
    String(timerAfter % 60).padStart(2, '0')}$)\\d+:\\d\\d$`));

  // And a new message after the return reaches the counselor.
  await person.getByLabel('Your message').fill('After coming back');
  await person.getByLabel('Your message').press('Enter');
  await waitText(lines(desk, 'theirs', 'After coming back'), /./);
  await waitText(person.locator('.msg.mine .msg-state').last(), /^Delivered$/);
  await screenshot(person, 'resume-client-back');
  await screenshot(desk, 'resume-counselor-back');
  await desk.locator('#peer-note').waitFor({ state: 'hidden', timeout: WAIT });

  // The counselor reloads their console: it signs in by itself and takes
  // the session up again; the person is told meanwhile.
  await person.evaluate(() => {
    const note = document.getElementById('peer-note');
    window.peerNotes = [];
    new MutationObserver(() => window.peerNotes.push(note.textContent))
      .observe(note, { childList: true, characterData: true, subtree: true });
  });
  await desk.reload();
  await waitText(desk.locator('#back-note'), /^Reconnected — you're still in the conversation\.$/);
  await waitText(desk.locator('#chat .msg.system'), /The page was reloaded/);
  await waitText(person.locator('#peer-note'), /^They're back\.$/);
  assert.match((await person.evaluate(() => window.peerNotes)).join('\n'),
    new RegExp("^Alice's connection dropped; they may be back in a moment\\. "
      + "Anything you write will reach them when they're back\\.$", 'm'));
  await desk.getByLabel('Your message').fill('Still here');
  await desk.getByLabel('Your message').press('Enter');
  await waitText(lines(person, 'theirs', 'Still here'), /./);
  assert.equal(await lines(person, 'theirs', 'Still here').count(), 1);

  // The person ends it; both pages say so and the notes are gone.
  await person.getByRole('button', { name: 'End conversation' }).click();
  await person.getByRole('button', { name: 'Yes, end it' }).click();
  await waitText(person.locator('#end-reason'), /You ended the conversation\./);
  await waitText(desk.locator('#desk-note'), /the person ended it/);
  assert.equal(await person.locator('#peer-note').isVisible(), false);
  const stats = await (await fetch(`${server.base}/metrics`)).text();
  assert.match(stats, /^earshot_resumed_total 2$/m, 'the server resumed both');
  assert.deepEqual(real(problems), []);
});

test('back too late: the page says plainly what was lost', async (t) => {
  const server = await startServer(['--resume-grace', '1s']);
  const proxy = await dropProxy(server.port);
  const browsers = [await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await proxy.close();
    await server.stop();
  });
  const problems = [];
  const person = await openPage(browsers[0], `${proxy.base}/`, problems);
  const desk = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await counselorAvailable(desk, 'Alice');
  await talkNow(person);
  await desk.getByRole('button', { name: 'Accept' }).click();
  await waitText(person.locator('#session-h'), /You're talking with Alice/);

  proxy.drop({ stayDown: true });
  await waitText(desk.locator('#peer-note'), /They have up to 1 second to come back/);
  await waitText(desk.locator('#desk-note'), /The conversation has ended: the person's connection dropped\./);
  assert.equal(await desk.locator('#peer-note').isVisible(), false, 'no note left behind');
  proxy.up();
  await waitText(person.locator('#start-note'), /The connection dropped and your conversation had to end\./);
  assert.equal(await person.locator('#back-note').isVisible(), false, 'no "Reconnected" note');
  await person.waitForFunction(() => !document.getElementById('talk').disabled);
  assert.deepEqual(real(problems), []);
});

// The page's call counters (voice.js keeps the last call's).
const voiceStats = (page) => page.evaluate(async () =>
  (await import('/static/voice.js')).VoiceCall.current?.stats);

async function hears(page, since) {
  let s;
  for (let i = 0; i < 300; i++) {
    s = await voiceStats(page);
    if (s && s.decoded - (since?.decoded || 0) >= 50 && s.loud - (since?.loud || 0) >= 10) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`the page did not hear enough: ${JSON.stringify(s)}`);
}

test('a voice session comes back with fresh keys, heard both ways', async (t) => {
  const server = await startServer();
  const proxy = await dropProxy(server.port);
  const browsers = [await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await proxy.close();
    await server.stop();
  });
  const problems = [];
  const person = await openPage(browsers[0], `${proxy.base}/`, problems);
  const desk = await openPage(browsers[1], `${server.base}/counselor`, problems);
  await counselorAvailable(desk, 'Robin');
  await talkNow(person, { topic: 'anxiety', voice: true });
  await desk.getByRole('button', { name: 'Accept' }).click();
  await waitText(person.locator('#session-h'), /You're talking with Robin/);
  await hears(person);
  const kBefore = await hears(desk);

  proxy.drop({ stayDown: true });
  await waitText(desk.locator('#peer-note'), /The connection to the person dropped\./);
  await new Promise((r) => setTimeout(r, 1000));
  proxy.up();
  await waitText(person.locator('#back-note'), /^Reconnected — you're still talking with Robin\.$/);
  await waitText(desk.locator('#peer-note'), /^They're back\.$/);
  await waitText(person.locator('#call').getByRole('status').first(), /Your microphone is on\./);

  // The person hears the counselor under their new keys; the counselor,
  // whose keys stayed, hears the person's stream go on (same SSRC, next
  // sequence numbers), with nothing refused.
  const pAfter = await hears(person);
  const kAfter = await hears(desk, await voiceStats(desk));
  assert.equal(pAfter.bad, 0, 'the person authenticates everything under the new keys');
  assert.equal(kAfter.bad, kBefore.bad, 'the counselor refuses nothing after the resume');
  const media = (await (await fetch(`${server.base}/stats`)).json()).media;
  assert.equal(media.dropped_auth + media.dropped_replay + media.dropped_bad_rtp, 0,
    `the server dropped nothing it should not: ${JSON.stringify(media)}`);
  await screenshot(person, 'resume-client-voice');
  assert.deepEqual(real(problems), []);
});

test('chat.js settles what the server took across a resume', async (t) => {
  const server = await startServer();
  const browser = await launch();
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const problems = [];
  const page = await openPage(browser, `${server.base}/`, problems);
  const r = await page.evaluate(async () => {
    const { Chat } = await import('/static/chat.js');
    const sent = [];
    let open = true;
    const socket = { send: (m) => (open ? (sent.push(m), true) : false) };
    const box = document.createElement('div');
    document.body.append(box);
    const chat = new Chat(box, socket);
    chat.start('Sam');
    const say = (text) => { chat.input.value = text; chat.submit(); };
    const states = () => [...box.querySelectorAll('.msg.mine')].map((li) => li.dataset.state);
    say('one');                                      // id 1: sent as seq 1
    chat.handle({ type: 'sent', id: 1, seq: 1 });
    say('two');                                      // id 2: taken, its `sent` lost
    say('three');                                    // id 3: lost with the connection
    chat.handle({ type: 'msg', seq: 1, text: 'hi' });
    open = false;
    chat.suspend();
    const whileDown = states();
    say('four');                                     // id 4: held back
    open = true;
    sent.length = 0;
    chat.resume({ last_id: 2, acked: 1 });
    const resent = sent.filter((m) => m.type === 'msg').map((m) => m.id);
    const afterResume = states();
    chat.handle({ type: 'msg', seq: 1, text: 'hi' });  // sent again: shown once
    chat.handle({ type: 'msg', seq: 2, text: 'there' });
    const quiet = chat.handle({ type: 'error', code: 'duplicate', ref: 'msg' });  // id 3
    chat.handle({ type: 'sent', id: 4, seq: 3 });
    const afterAnswers = states();
    chat.handle({ type: 'delivered', seq: 3 });       // and so every earlier one
    say('five');
    return { whileDown, resent, afterResume, quiet, afterAnswers, delivered: states(),
      nextId: sent.at(-1).id, theirs: [...box.querySelectorAll('.msg.theirs')].map((li) => li.textContent),
      acks: sent.filter((m) => m.type === 'ack').map((m) => m.seq),
      error: box.querySelector('.chat-error').textContent };
  });
  assert.deepEqual(r.whileDown, ['sent', 'waiting', 'waiting']);
  assert.deepEqual(r.resent, [3, 4], 'what the server did not take goes again, in order');
  assert.deepEqual(r.afterResume, ['delivered', 'sent', 'sending', 'sending']);
  assert.equal(r.quiet, true, 'duplicate is taken by the chat');
  assert.deepEqual(r.afterAnswers, ['delivered', 'sent', 'sent', 'sent']);
  assert.deepEqual(r.delivered, ['delivered', 'delivered', 'delivered', 'delivered', 'sending']);
  assert.equal(r.nextId, 5, 'ids go on rising');
  assert.deepEqual(r.theirs, ['Sam: hi', 'Sam: there']);
  assert.deepEqual(r.acks, [1, 2], 'a message sent again is acknowledged again');
  assert.equal(r.error, '');
  assert.deepEqual(real(problems), []);
});
