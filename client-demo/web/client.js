// client.js - the page for a person who needs to talk: choose a topic,
// "Talk now", wait in line (position, estimated wait), chat in a session
// with its slot timer and gentle warnings, then referral and a rating.
// By voice, the microphone is asked for before joining the line, and the
// session adds the call panel above the chat.
// A dropped connection is retried by the socket, which comes back with the
// resume token: the server keeps the place in line or the session for a
// grace (PROTOCOL.md "Resume after a dropped connection"). Meanwhile the
// page stays as it was (the wait, or the conversation, where the person can
// go on writing), and once `welcome` says `resumed` it carries on with a
// brief "Reconnected" note. A welcome without it means the grace ran out
// (or the server restarted): the page says plainly what was lost.
// When the counselor's connection drops, a gentle note in the conversation
// says so, until they are back.
import { EarshotSocket, tokenFor } from './socket.js';
import { Chat } from './chat.js';
import { CallPanel } from './callpanel.js';
import { checkMicrophone, unlockVoice, voiceUnsupported } from './voice.js';
import { SlotTimer, minutes } from './slot.js';
import { $, TOPICS, announce, clock, connectionBanner, duration, endButton, passingNote, setText,
  showView, topicLabel, setNote } from './ui.js';

const VIEWS = ['v-start', 'v-wait', 'v-session', 'v-ended'];
const STARS = ['Not helpful', 'A little helpful', 'Okay', 'Helpful', 'Very helpful'];
const COMMENT_MAX = 280;   // bytes of UTF-8, as the server counts
const END_REASONS = {
  slot_over: 'Our time together is up for now. We hope it helped a little.',
  ended_by_client: 'You ended the conversation.',
  ended_by_counselor: 'The counselor ended the conversation.',
  peer_left: "The counselor's connection dropped, so the conversation had to end. We're sorry.",
  shutdown: "earshot had to restart, so the conversation ended. We're sorry.",
};
const ERRORS = {
  server_busy: "We're very busy right now and couldn't add you to the line. Please try again in a few minutes.",
  shutting_down: 'earshot is restarting. Please try again in a moment.',
  rate_limited: "That was a lot at once; some of it wasn't sent. Please wait a moment.",
  too_large: 'That was too long to send in one piece.',
};
const MIC_PROBLEMS = {
  denied: "Your microphone is blocked for this page. Allow it in your browser's site settings and "
    + 'tap Talk now again, or choose to talk by text.',
  missing: 'No microphone was found. Connect one and tap Talk now again, or choose to talk by text.',
  busy: 'Another program is using your microphone. Close it and tap Talk now again, or choose to '
    + 'talk by text.',
  failed: "Your microphone couldn't be opened. You can try again, or choose to talk by text.",
};
const utf8 = new TextEncoder();
const BACK_NOTE_MS = 8000;     // how long "Reconnected — …" stays
const WAIT_SINCE_KEY = 'earshot.client.waitSince';

// What the server holds for us: idle, joining (talk_now sent), waiting,
// in_session, ended; `lost` is what a dropped connection may have taken
// with it, until the server says whether it kept it.
let phase = 'idle';
let lost = null;
let rated = false;
let waitSince = 0;
let waitTick = null;
let sessionId = null;          // the session on screen
let peerName = '';
let welcomed = false;          // a welcome came on this page already
let reloaded = false;          // this page took up a connection of an earlier one

const sock = new EarshotSocket({ role: 'client', token: await tokenFor('client') });
const chat = new Chat($('chat'), sock);
const call = new CallPanel($('call'));
const slot = new SlotTimer($('slot-timer'), $('slot-notice'), {
  warning: (s) => (s > 90
    ? `About ${minutes(s)} left. There's time to start bringing things together.`
    : 'About a minute left — a good moment to start saying goodbye.'),
  over: (g) => `Our time is up. You still have ${g} seconds to say goodbye.`,
});

function show(view, focus) {
  setNote('alert', '');
  showView(VIEWS, view, focus);
}

// ---- start ----

for (const [value, label] of TOPICS) $('topic').append(new Option(label, value));

const noVoice = voiceUnsupported();
if (noVoice) {
  const radio = document.querySelector('input[name=mode][value=voice]');
  radio.disabled = true;
  radio.closest('label').classList.add('disabled');
  setText('voice-why', `(${noVoice})`);
}

$('start-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const mode = document.querySelector('input[name=mode]:checked').value;
  if (mode === 'voice') {
    unlockVoice();   // this tap lets the counselor's voice play later
    $('talk').disabled = true;
    setNote('start-note', 'Checking your microphone…');
    const problem = await checkMicrophone();
    $('talk').disabled = sock.state !== 'open';
    setNote('start-note', MIC_PROBLEMS[problem] || '');
    if (problem) return;
  }
  const msg = { type: 'talk_now', topic: $('topic').value, mode };
  if (inCrisis()) msg.crisis = true;
  if ($('previous').checked && !$('previous-field').hidden) msg.previous = true;
  if (!sock.send(msg)) return;
  phase = 'joining';
  lost = null;
  $('talk').disabled = true;
  setText('position', 'Finding your place in line…');
  setText('estimate', '');
  $('nobody').hidden = true;
  startWaitClock(Date.now());
  show('v-wait');
});

function startWaitClock(since) {
  waitSince = since;
  sessionStorage.setItem(WAIT_SINCE_KEY, String(since));   // a reload goes on counting
  clearInterval(waitTick);
  const tick = () => setText('waited', `You've been waiting ${clock((Date.now() - waitSince) / 1000)}.`);
  tick();
  waitTick = setInterval(tick, 1000);
}

// The box, or a "yes" to the service's pre-chat question, says the person
// may not be safe.
function inCrisis() {
  const answer = document.querySelector('input[name=question]:checked');
  return $('crisis').checked || (!$('question').hidden && answer?.value === 'yes');
}

// Someone who has talked with a counselor here before may ask for them.
const TALKED_KEY = 'earshot.client.talked';
$('previous-field').hidden = !localStorage.getItem(TALKED_KEY);

const HOLDING = {
  previous: 'We\'re giving the counselor you talked with last time a little longer to be free. '
    + "If they aren't soon, whoever is free first will be with you.",
  topic: 'We\'re giving a counselor who knows your topic well a little longer to be free. '
    + "If they aren't soon, whoever is free first will be with you.",
};

// ---- waiting ----

function onQueue(m) {
  phase = 'waiting';
  setText('position', m.position === 1 ? "You're next in line." : `You're number ${m.position} in line.`);
  $('urgent').hidden = !inCrisis();
  $('holding').hidden = !HOLDING[m.waiting_for];
  setText('holding', HOLDING[m.waiting_for] || '');
  $('nobody').hidden = m.counselors !== 0;
  setText('estimate', m.counselors === 0 ? ''
    : m.wait_s === 0 ? 'A counselor should be with you in a moment.'
      : `Estimated wait: ${duration(m.wait_s)}.`);
}

$('cancel').addEventListener('click', () => {
  if (!sock.send({ type: 'cancel' })) backToStart('');
});

function backToStart(note) {
  phase = 'idle';
  sessionId = null;
  clearInterval(waitTick);
  waitTick = null;
  $('talk').disabled = sock.state !== 'open';
  setNote('start-note', note);
  show('v-start');
}

// ---- session ----

// A session begins; or, `resumed`, the session as the server has it after a
// dropped connection: the same one goes on as it was (chat, timer, with
// fresh voice keys), while a page that was reloaded, or was still waiting
// when a counselor accepted, starts it on screen.
function onSessionStart(m) {
  const same = m.resumed && m.session_id === sessionId;
  sessionId = m.session_id;
  phase = 'in_session';
  clearInterval(waitTick);
  waitTick = null;
  localStorage.setItem(TALKED_KEY, '1');
  $('previous-field').hidden = false;
  peerName = m.peer || '';
  const who = m.peer || 'a counselor';
  const peer = m.peer || 'The counselor';
  if (same) {
    slot.resume(m.remaining_s);
  } else {
    $('unsafe').hidden = false;
    $('crisis-panel').hidden = true;
    passingNote('peer-note', '');
    setText('session-h', `You're talking with ${who}`);
    setText('session-topic', `Topic: ${topicLabel(m.topic)}`);
    chat.start(peer);
    slot.start(m.remaining_s);
    resetEnd();
  }
  if (m.resumed) chat.resume(m);
  if (m.mode === 'voice') call.start(m, sock, peer);
  else call.hide();
  if (same || (m.resumed && reloaded)) {
    if ($('v-session').hidden) show('v-session', m.mode === 'voice' ? 'session-h' : 'chat-text');
    if (!same) chat.note('The page was reloaded, so earlier messages may not be shown here.');
    passingNote('back-note', `Reconnected — you're still talking with ${who}.`, BACK_NOTE_MS);
  } else if (m.mode === 'voice') {
    show('v-session', 'session-h');
    announce(`${who} has joined. Speak whenever you're ready; you can also write.`);
  } else {
    show('v-session', 'chat-text');
    announce(`${who} has joined. Type whenever you're ready.`);
  }
}

// The counselor's connection dropped; the session goes on meanwhile, and
// what the person writes reaches them when they are back.
function onPeerLost() {
  const whose = peerName ? `${peerName}'s` : "The counselor's";
  passingNote('peer-note', `${whose} connection dropped; they may be back in a moment. `
    + "Anything you write will reach them when they're back.");
}

function onPeerBack() {
  passingNote('peer-note', "They're back.", BACK_NOTE_MS);
}

const resetEnd = endButton(() => sock.send({ type: 'end' }));

// ---- a crisis ----

$('unsafe').addEventListener('click', () => sock.send({ type: 'crisis' }));

function onCrisis(m) {
  slot.hold("This conversation won't be cut off by the timer. Stay as long as you need.");
  setText('crisis-why', m.by === 'you'
    ? "Thank you for telling us. Your counselor is with you, and a supervisor knows. If you're in danger right now, please reach out now:"
    : "Your counselor is concerned for your safety. They're staying with you. If you're in danger right now, please reach out now:");
  $('crisis-referral').replaceChildren(...(m.referral || '').split('\n').filter(Boolean)
    .map((line) => Object.assign(document.createElement('li'), { textContent: line })));
  $('crisis-panel').hidden = false;
  $('unsafe').hidden = true;
}

function onSessionEnd(m) {
  $('crisis-panel').hidden = true;
  passingNote('peer-note', '');
  passingNote('back-note', '');
  sessionId = null;
  phase = 'ended';
  rated = false;
  chat.stop();
  slot.stop();
  call.hide();
  setText('end-reason', END_REASONS[m.reason] || 'The conversation has ended.');
  $('referral').replaceChildren(...(m.referral || '').split('\n').filter(Boolean)
    .map((line) => Object.assign(document.createElement('li'), { textContent: line })));
  $('referral').closest('section').hidden = !$('referral').children.length;
  $('rate-form').reset();
  $('rate-form').hidden = false;
  $('rated').hidden = true;
  $('again').className = 'secondary big';   // rating first; talking again is there too
  updateStars();
  updateComment();
  show('v-ended');
}

// ---- rating ----

STARS.forEach((words, i) => {
  const input = Object.assign(document.createElement('input'),
    { type: 'radio', name: 'score', value: String(i + 1), id: `score-${i + 1}`, className: 'sr-only' });
  const label = Object.assign(document.createElement('label'), { htmlFor: input.id, className: 'star' });
  const glyph = Object.assign(document.createElement('span'), { textContent: '★' });
  glyph.setAttribute('aria-hidden', 'true');
  const text = Object.assign(document.createElement('span'),
    { className: 'sr-only', textContent: `${i + 1} star${i ? 's' : ''}, ${words.toLowerCase()}` });
  label.append(glyph, text);
  $('stars').append(input, label);
});
$('stars').addEventListener('change', updateStars);

function score() {
  const c = document.querySelector('input[name=score]:checked');
  return c ? Number(c.value) : 0;
}

function updateStars() {
  const s = score();
  setText('score-words', s ? `${s} of 5 — ${STARS[s - 1]}` : 'Choose from 1 to 5 stars.');
}

$('comment').addEventListener('input', updateComment);
function updateComment() {
  const left = COMMENT_MAX - utf8.encode($('comment').value).length;
  setText('comment-left', left >= 0 ? `${left} characters left` : `${-left} characters too many`);
}

$('rate-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const s = score();
  if (!s) {
    setText('score-words', 'Please choose from 1 to 5 stars first — or simply skip it.');
    $('score-1').focus();
    return;
  }
  const comment = $('comment').value.trim();
  if (utf8.encode(comment).length > COMMENT_MAX) {
    $('comment').focus();   // the counter under it says how much is over
    return;
  }
  const msg = { type: 'rate', score: s };
  if (comment) msg.comment = comment;
  sock.send(msg);
});

function onRated() {
  rated = true;
  phase = 'idle';
  $('rate-form').hidden = true;
  $('rated').textContent = 'Thank you — your rating helps us listen better.';
  $('rated').hidden = false;
  $('again').className = 'primary big';
  $('again').focus();
}

$('again').addEventListener('click', () => backToStart(''));

// ---- connection ----

connectionBanner(sock, $('banner'));

// Fires again for every attempt that fails, so it only ever says the same.
sock.addEventListener('state', ({ detail }) => {
  $('talk').disabled = detail.state !== 'open' || phase === 'joining';
  setText('conn-status', detail.state === 'open' ? '' : 'Connecting…');
  if (detail.state !== 'down') return;
  passingNote('back-note', '');
  // The server keeps a place in line or a session for a while: the page
  // stays as it is until the welcome says whether it was kept.
  const kept = sock.resumable;
  if (phase === 'joining' || phase === 'waiting') {
    lost = 'waiting';
    if (!kept || phase === 'joining') setText('position', 'Reconnecting…');
    setText('estimate', kept && phase === 'waiting'
      ? 'The connection dropped. Reconnecting — you keep your place in line meanwhile.' : '');
    $('nobody').hidden = true;
    $('holding').hidden = true;
  } else if (phase === 'in_session') {
    lost = 'in_session';
  }
  if (!kept) {
    clearInterval(waitTick);
    waitTick = null;
    chat.stop();
    slot.stop();
  } else if (phase === 'in_session') {
    chat.suspend();   // the slot runs on at the server, and so does the timer here
  }
  call.stop();   // voice comes back with fresh keys, or not at all
});

function onWelcome(m) {
  setText('slot-len', minutes(m.slot_s));
  $('question').hidden = !m.crisis_question;
  setText('question-text', m.crisis_question || '');
  const was = phase;
  phase = m.state;
  if (!welcomed && m.resumed) reloaded = true;
  welcomed = true;
  const back = m.resumed && ['waiting', 'in_session', 'ended'].includes(m.state);
  if (back) {
    // Kept for us: `queue` or `session_start` (or `session_end`, if it
    // ended meanwhile) follows and puts the page right.
    if (m.state === 'waiting') onBackInLine(was);
  } else if (lost === 'waiting') {
    backToStart("The connection dropped, and with it your place in line. We're sorry. "
      + 'Tap Talk now to join again — you\'ll be connected as soon as someone is free.');
  } else if (lost === 'in_session') {
    chat.stop();
    slot.stop();
    passingNote('peer-note', '');
    backToStart('The connection dropped and your conversation had to end. We\'re sorry — '
      + "that isn't how it should end. If you'd like to keep talking, tap Talk now.");
  } else if (was === 'ended' && !rated) {
    $('rate-form').hidden = true;
    $('rated').textContent = 'The connection dropped, so this conversation can no longer be rated.';
    $('rated').hidden = false;
    $('again').className = 'primary big';
  }
  lost = null;
}

// Still in line after a dropped connection (or a reload): the wait goes on,
// and the `queue` that follows says where.
function onBackInLine(was) {
  if (was !== 'waiting' && was !== 'joining') {   // a reloaded page starts from the start view
    setText('position', 'Finding your place in line…');
    $('urgent').hidden = true;
    show('v-wait');
  }
  setText('estimate', '');
  if (!waitTick) startWaitClock(Number(sessionStorage.getItem(WAIT_SINCE_KEY)) || Date.now());
  passingNote('back-note', "Reconnected — you're still in line.", BACK_NOTE_MS);
}

function onError(m) {
  const text = ERRORS[m.code];
  if (m.ref === 'talk_now') {
    backToStart(text || `We couldn't add you to the line (${m.reason}). Please try again.`);
    return;
  }
  if (m.ref === 'rate') {
    $('rate-form').hidden = true;
    $('rated').textContent = "Your rating couldn't be sent, but thank you for wanting to share it.";
    $('rated').hidden = false;
    return;
  }
  if (text) setNote('alert', text);
  else console.warn('earshot error', m);
}

sock.addEventListener('refused', ({ detail }) => {
  backToStart(`This page couldn't connect (${detail.reason}). Please open it again from your earshot app.`);
  setText('conn-status', 'Not connected.');
});

sock.addEventListener('message', ({ detail: m }) => {
  if (chat.handle(m) || call.handle(m)) return;
  switch (m.type) {
  case 'welcome': onWelcome(m); break;
  case 'queue': onQueue(m); break;
  case 'cancelled': backToStart("You left the line. Whenever you're ready, we're here."); break;
  case 'session_start': onSessionStart(m); break;
  case 'peer_lost': onPeerLost(); break;
  case 'peer_back': onPeerBack(); break;
  case 'slot_warning': slot.warning(m.remaining_s); break;
  case 'slot_over': slot.over(m.grace_s); break;
  case 'session_end': onSessionEnd(m); break;
  case 'crisis': onCrisis(m); break;
  case 'rated': onRated(); break;
  case 'error': onError(m); break;
  case 'going_away': announce('earshot is restarting; this page will reconnect by itself.'); break;
  default: break;
  }
});

sock.connect();
