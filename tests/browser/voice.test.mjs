// voice.test.mjs - voice sessions in the browser on the real server: a
// person's page and a counselor's console hear each other (the fake
// microphone's beeps, decoded and non-silent on both sides), mute, a
// microphone that stops and the "can't hear you" warning it brings, link
// quality; then a page and the C voice client, both ways and with both
// SRTP profiles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, openPage, screenshot, startServer, waitText } from './lib.mjs';

const WAIT = 20000;
const root = new URL('../../', import.meta.url).pathname;
const earshot = process.env.EARSHOT || join(root, 'build', 'earshot');
// Quick silence and link reports, so the warnings come within the test.
const VOICE_ARGS = ['--silence-timeout', '1', '--link-report', '1'];

// The page's call counters (voice.js keeps the last call's).
const voiceStats = (page) => page.evaluate(async () =>
  (await import('/static/voice.js')).VoiceCall.current?.stats);

// Wait until the page has decoded `frames` more frames than `since`, of
// which `loud` more carry sound; returns the stats.
async function hears(page, { frames = 50, loud = 10, since = { decoded: 0, loud: 0 } } = {}) {
  let s;
  for (let i = 0; i < 300; i++) {
    s = await voiceStats(page);
    if (s && s.decoded - since.decoded >= frames && s.loud - since.loud >= loud) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`the page did not hear enough: ${JSON.stringify(s)}`);
}

async function clientTalkNow(page, server) {
  await page.goto(`${server.base}/`);
  await page.waitForFunction(() => !document.getElementById('talk').disabled);
  await page.getByLabel('What would you like to talk about?').selectOption('anxiety');
  await page.getByLabel(/By voice/).check();
  await page.getByRole('button', { name: 'Talk now' }).click();
  await waitText(page.locator('#position'), /in line/);
}

async function counselorAvailable(page, server, name) {
  await page.goto(`${server.base}/counselor`);
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Set available' }).click();
  await waitText(page.locator('#state-h'), /You're available|Incoming offer/);
}

test('two pages hear each other; mute, a lost microphone and link quality', async (t) => {
  const server = await startServer(VOICE_ARGS);
  const browsers = [await launch(), await launch()];
  t.after(async () => {
    for (const b of browsers) await b.close();
    await server.stop();
  });
  const problems = [];
  const client = await openPage(browsers[0], `${server.base}/`, problems);
  const counselor = await openPage(browsers[1], `${server.base}/counselor`, problems);

  await clientTalkNow(client, server);
  await screenshot(client, 'voice-client-waiting');
  await counselorAvailable(counselor, server, 'Robin');
  await waitText(counselor.locator('#offer-mode'), /^voice$/);
  await counselor.getByRole('button', { name: 'Accept' }).click();

  await waitText(client.locator('#session-h'), /You're talking with Robin/);
  await waitText(counselor.locator('#session-topic'), /by voice/);
  const cCall = client.getByRole('region', { name: 'Voice' });
  const kCall = counselor.getByRole('region', { name: 'Voice' });
  await waitText(cCall.getByRole('status').first(), /Your microphone is on\./);
  await waitText(kCall.getByRole('status').first(), /Your microphone is on\./);

  // Each side decodes the other's beeps: frames with sound, not silence.
  const cHeard = await hears(client);
  const kHeard = await hears(counselor);
  assert.equal(cHeard.bad + kHeard.bad, 0, 'every packet authenticated and parsed');
  assert.ok(cHeard.peak > 0.05 && kHeard.peak > 0.05, 'a beep is well above silence');
  await waitText(cCall.locator('.call-link'), /Your connection: (good|fair)\. Robin's: (good|fair)\./);
  await waitText(kCall.locator('.call-link'), /Your connection: (good|fair)\. The person's: (good|fair)\./);
  const level = await client.locator('#mic-level').evaluate((m) => m.value);
  assert.ok(level >= 0, 'the microphone meter shows a level');
  await screenshot(client, 'voice-client-session');
  await screenshot(counselor, 'voice-counselor-session');

  // The person mutes: the counselor is told, and no "can't hear you" comes.
  await cCall.getByRole('button', { name: 'Mute microphone' }).click();
  await waitText(cCall.getByRole('status').first(), /You're muted: Robin can't hear you/);
  await waitText(kCall.locator('.call-status').last(), /The person has muted their microphone\./);
  const mutedAt = await voiceStats(client);
  await new Promise((r) => setTimeout(r, 1800));     // longer than the silence timeout
  assert.ok((await voiceStats(client)).sent - mutedAt.sent <= 3, 'a muted page sends nothing');
  assert.equal(await cCall.getByRole('alert').filter({ hasText: "can't hear you" }).count(), 0);
  await screenshot(client, 'voice-client-muted');
  await cCall.getByRole('button', { name: 'Unmute microphone' }).click();
  await counselor.locator('.call-status', { hasText: 'muted their microphone' })
    .waitFor({ state: 'hidden' });
  await hears(counselor, { since: await voiceStats(counselor) });

  // The counselor's microphone stops (unplugged): the console says so and
  // offers to try again; the server's silence notice reaches both sides.
  await counselor.evaluate(async () => {
    const call = (await import('/static/voice.js')).VoiceCall.current;
    call.stream.getAudioTracks()[0].dispatchEvent(new Event('ended'));
  });
  await waitText(kCall.getByRole('status').first(), /Your microphone stopped working/);
  await waitText(client.locator('#call .notice').last(), /Robin's voice has stopped reaching you/);
  await waitText(kCall.locator('.notice').first(), /The person can't hear you right now/);
  await screenshot(counselor, 'voice-counselor-mic-lost');
  await screenshot(client, 'voice-client-peer-stopped');
  await kCall.getByRole('button', { name: 'Try the microphone again' }).click();
  await waitText(kCall.getByRole('status').first(), /Your microphone is on\./);
  await kCall.locator('.notice').first().waitFor({ state: 'hidden' });
  await client.locator('#call .notice').last().waitFor({ state: 'hidden' });
  await hears(client, { since: await voiceStats(client) });

  // End: the call stops on both sides.
  await client.getByRole('button', { name: 'End conversation' }).click();
  await client.getByRole('button', { name: 'Yes, end it' }).click();
  await waitText(client.locator('#end-reason'), /You ended the conversation\./);
  await waitText(counselor.locator('#desk-note'), /the person ended it/);
  const after = await voiceStats(client);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await voiceStats(client)).sent, after.sent, 'nothing is sent after the end');
  const media = (await (await fetch(`${server.base}/stats`)).json()).media;
  assert.equal(media.dropped_auth + media.dropped_replay + media.dropped_bad_rtp
    + media.dropped_not_opus, 0, `the server dropped nothing it should not: ${JSON.stringify(media)}`);
  assert.ok(media.relayed >= 200, `relayed ${media.relayed}`);
  assert.deepEqual(problems, []);
});

test('a blocked microphone is met before joining the line', async (t) => {
  const server = await startServer();
  const browser = await launch({ denyMicrophone: true });
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  const problems = [];
  const page = await openPage(browser, `${server.base}/`, problems);
  await page.waitForFunction(() => !document.getElementById('talk').disabled);
  await page.getByLabel(/By voice/).check();
  await page.getByRole('button', { name: 'Talk now' }).click();
  await waitText(page.locator('#start-note'), /Your microphone is blocked for this page\..*talk by text/);
  assert.ok(await page.locator('#v-start').isVisible(), 'still on the start page');
  const stats = await (await fetch(`${server.base}/stats`)).json();
  assert.equal(stats.queue, 0, 'nobody joined the line without a microphone');
  await screenshot(page, 'voice-client-mic-blocked');
  // Text still works from here.
  await page.getByLabel('By text').check();
  await page.getByRole('button', { name: 'Talk now' }).click();
  await waitText(page.locator('#position'), /You're next in line\./);
  assert.deepEqual(problems, []);
});

// The C voice client as `role`, printing one line per event.
function cli(args) {
  const child = spawn(earshot, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  return {
    say: (line) => child.stdin.write(`${line}\n`),
    until: async (re, timeout = WAIT) => {
      const end = Date.now() + timeout;
      while (Date.now() < end) {
        const m = out.match(re);
        if (m) return m;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.fail(`earshot ${args[0]}: no ${re} in:\n${out}`);
    },
    done: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', (code) => { clearTimeout(timer); resolve(code); });
      child.stdin.end();
    }),
  };
}

// RMS of a 16-bit PCM WAV's samples after its 44-byte header.
function wavRms(path) {
  const b = readFileSync(path);
  let sum = 0;
  const n = (b.length - 44) >> 1;
  for (let i = 0; i < n; i++) sum += b.readInt16LE(44 + 2 * i) ** 2;
  return n ? Math.sqrt(sum / n) / 32768 : 0;
}

const voiceLine = /voice: sent (\d+) frames, received (\d+) frames, out of order (\d+), lost (\d+), bad (\d+)/;

for (const profile of ['aead_aes_128_gcm', 'aes_cm_128_hmac_sha1_80']) {
  test(`a page and the C voice client, both ways (${profile})`, async (t) => {
    const server = await startServer([...VOICE_ARGS, '--srtp-profile', profile]);
    const browser = await launch();
    const dir = mkdtempSync(join(tmpdir(), 'earshot-voice-'));
    t.after(async () => {
      await browser.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const problems = [];
    const url = `ws://127.0.0.1:${server.port}/ws`;

    // A page asks to talk; the C counselor takes it, sending a 660 Hz tone.
    const page = await openPage(browser, `${server.base}/`, problems);
    const token = await (await fetch(`${server.base}/dev/token?role=counselor&sub=c-vee&name=Vee`)).text();
    const kwav = join(dir, 'counselor.wav');
    const k = cli(['counselor', '--url', url, '--token', token.trim(), '--available', '--voice',
      '--tone', '660', '--record', kwav]);
    await k.until(/you are available/);
    await clientTalkNow(page, server);
    await k.until(/incoming:/);
    k.say('/accept');
    await waitText(page.locator('#session-h'), /You're talking with Vee/);
    const heard = await hears(page, { frames: 100, loud: 80 });
    assert.equal(heard.bad, 0);
    k.say('/end');
    const [, sent, received, , , bad] = (await k.until(voiceLine)).map(Number);
    assert.ok(sent >= 100, `the C counselor sent ${sent}`);
    assert.ok(received >= 50, `the C counselor received ${received} frames from the page`);
    assert.equal(bad, 0);
    assert.ok(wavRms(kwav) > 0.01, 'the C counselor recorded the page\'s beeps, not silence');
    k.say('/quit');
    assert.equal(await k.done(), 0);

    // The C client asks to talk; the page's counselor takes it.
    await counselorAvailable(page, server, 'Page');
    const cwav = join(dir, 'client.wav');
    const c = cli(['client', '--url', url, '--topic', 'grief', '--voice', '--tone', '440',
      '--record', cwav]);
    await page.getByRole('button', { name: 'Accept' }).click();
    await c.until(/connected with Page/);
    const kHeard = await hears(page, { frames: 100, loud: 80 });
    assert.equal(kHeard.bad, 0);
    await screenshot(page, `voice-counselor-with-c-client-${profile}`);
    c.say('/end');
    const [, csent, creceived, , , cbad] = (await c.until(voiceLine)).map(Number);
    assert.ok(csent >= 100 && creceived >= 50 && cbad === 0, `C client: ${csent} ${creceived} ${cbad}`);
    assert.ok(wavRms(cwav) > 0.01, 'the C client recorded the page\'s beeps, not silence');
    c.say('/quit');
    assert.equal(await c.done(), 0);
    assert.deepEqual(problems, []);
  });
}
