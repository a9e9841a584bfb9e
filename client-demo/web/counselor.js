// counselor.js - the console a counselor keeps open during a shift: sign
// in (name, strengths), available / away, offers that chime and ring down
// with Accept / Decline, the session (chat, timer, warnings, End), the
// wrap-up pause, their own feedback, and staying connected for hours
// through reconnects.
// A dropped connection in a session is kept by the server for a grace
// (PROTOCOL.md "Resume after a dropped connection"): the conversation stays
// on screen, and the socket's resume token takes it up again, with a brief
// "Reconnected" note; a reload in the same tab signs in by itself and does
// the same. When the person's connection drops, a gentle note says the
// session is still open and how long they have to come back.
import { EarshotSocket, resumeHeld, tokenFor } from './socket.js';
import { Chat } from './chat.js';
import { CallPanel } from './callpanel.js';
import { unlockVoice } from './voice.js';
import { SlotTimer, minutes } from './slot.js';
import { askNotifications, chime, flashTitle, notificationsSupported, notify,
  unlockAudio } from './attention.js';
import { $, TOPICS, announce, clock, connectionBanner, duration, el, endButton, passingNote,
  setText, showView, topicLabel, setNote } from './ui.js';

const VIEWS = ['v-signin', 'v-desk', 'v-session'];
const STATES = {
  away: ["You're away", "You won't be offered conversations. Set yourself available when you're ready."],
  available: ["You're available", "You'll hear a soft chime when someone who needs to talk is offered to you."],
  ringing: ['Incoming offer', 'Someone is waiting: accept or decline below.'],
  busy: ['In a conversation', ''],
  wrapup: ['Wrap-up', 'Take a moment for yourself: notes, a breath, a glass of water.'],
  offline: ['Not connected', "Offers can't reach you until the connection is back. "
    + 'This page keeps trying by itself.'],
};
const REASONS = {
  missed_offers: "You were set away after offers rang out unanswered — it looked like you'd "
    + "stepped away. Set yourself available when you're back.",
  wrapup_done: "Wrap-up finished — you're available again.",
  break: "You're on a break. Offers come back by themselves when it ends, or set yourself "
    + 'available sooner.',
  break_over: "Your break is over — you're available again.",
  shift_over: 'Your shift is over — thank you for your time today. No more offers will come: '
    + 'time to rest.',
};
const GONE = {
  timeout: 'The offer rang out and went to the next counselor. The person keeps their place.',
  client_left: 'The person left the line before you answered.',
};
const ENDED = {
  slot_over: 'the time was up',
  ended_by_client: 'the person ended it',
  ended_by_counselor: 'you ended it',
  peer_left: "the person's connection dropped",
  shutdown: 'the server restarted',
};
const SKILLS_KEY = 'earshot.counselor.skills';
const NAME_KEY = 'earshot.counselor.name';
const SESSION_KEY = 'earshot.counselor.session';   // this tab is in a session (sessionStorage)
const BACK_NOTE_MS = 8000;     // how long "Reconnected — …" and "They're back." stay

let sock = null;
let chat = null;
let state = 'away';          // the server's last word on our state
let want = 'away';           // what the counselor last chose
let lostSession = false;     // a drop may have ended the session we were in
let signedIn = false;
let reloaded = false;        // this page took up a connection of an earlier one
let sessionId = null;        // the session on screen
let offer = null;            // { id, deadline, tick, stopTitle, note }
let wrapupTick = null;
const call = new CallPanel($('call'));

const slot = new SlotTimer($('slot-timer'), $('slot-notice'), {
  warning: (s) => (s > 90
    ? `${minutes(s)} left — a good time to start guiding toward a close and next steps.`
    : 'About a minute left — time to say goodbye gently.'),
  over: (g) => `Time is up: ${g} seconds of goodbye grace, then the conversation closes.`,
});

function show(view, focus) {
  setNote('alert', '');
  showView(VIEWS, view, focus);
}

// ---- sign in ----

const savedSkills = (localStorage.getItem(SKILLS_KEY) || '').split(',');
for (const [value, label] of TOPICS) {
  const box = Object.assign(document.createElement('input'),
    { type: 'checkbox', name: 'skills', value, checked: savedSkills.includes(value) });
  const l = Object.assign(document.createElement('label'), { className: 'choice' });
  l.append(box, ` ${label}`);
  $('skills').append(l);
}
$('name').value = localStorage.getItem(NAME_KEY) || '';

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('name').value.trim();
  if (!name || new TextEncoder().encode(name).length > 64) {
    setText('signin-status', 'Please enter a name of at most 64 characters.');
    $('name').focus();
    return;
  }
  const skills = [...document.querySelectorAll('input[name=skills]:checked')].map((b) => b.value);
  localStorage.setItem(NAME_KEY, name);
  localStorage.setItem(SKILLS_KEY, skills.join(','));
  unlockAudio();   // this click lets later chimes play
  signIn({ name, skills: skills.join(',') });
});

async function signIn(claims) {
  $('signin').disabled = true;
  setText('signin-status', 'Signing in…');
  let token;
  try {
    token = await tokenFor('counselor', claims);
  } catch (err) {
    setText('signin-status', err.message);
    $('signin').disabled = false;
    return;
  }
  sock = new EarshotSocket({ role: 'counselor', token });
  chat = new Chat($('chat'), sock);
  connectionBanner(sock, $('banner'));
  sock.addEventListener('state', onSocketState);
  sock.addEventListener('message', ({ detail }) => onMessage(detail));
  sock.addEventListener('refused', ({ detail }) => onRefused(detail));
  sock.connect();
}

function onRefused(m) {
  signedIn = false;
  setSession(null);
  endOffer();
  chat.stop();
  slot.stop();
  call.stop();
  $('who').hidden = true;
  $('signin').disabled = false;
  const why = {
    replaced: 'You signed in from another tab or window, so this one stopped. Sign in again here to move back.',
    token_expired: 'Your sign-in has expired. Please sign in again.',
  }[m.code] || `Signing in was refused (${m.reason}).`;
  show('v-signin');
  setText('signin-status', why);
}

// ---- state ----

function renderState(s, reason, wrapupS, breakS) {
  state = s;
  const [title, detail] = STATES[s] || [s, ''];
  setText('state-h', title);
  setText('state-detail', REASONS[reason] || detail);
  $('state-card').dataset.state = s;
  $('go-available').hidden = !(s === 'away' || s === 'wrapup');
  setText('go-available', s === 'wrapup' ? 'Set available now' : 'Set available');
  $('go-away').hidden = !(s === 'available' || s === 'wrapup');
  if (s !== 'ringing') endOffer();
  clearInterval(wrapupTick);
  const onBreak = s === 'away' && reason === 'break';
  $('wrapup-left').hidden = s !== 'wrapup' && !onBreak;
  $('break-row').hidden = reason === 'shift_over' || onBreak || s === 'busy' || s === 'ringing';
  if (s === 'wrapup' || onBreak) {
    const until = Date.now() + ((onBreak ? breakS : wrapupS) || 0) * 1000;
    const words = onBreak ? 'Back from your break in' : 'New conversations in';
    const tick = () => setText('wrapup-left', `${words} ${clock((until - Date.now()) / 1000)}`);
    tick();
    wrapupTick = setInterval(tick, 250);
  }
}

$('take-break').addEventListener('click', () => {
  if (!sock.send({ type: 'take_break', minutes: Number($('break-min').value) }))
    setNote('desk-note', 'Not connected right now: take your break, and set yourself available when you are back.');
});

// While the connection is down the choice is kept and applied on reconnect.
function choose(s) {
  want = s;
  if (!sock.send({ type: 'set_state', state: s }))
    setNote('desk-note', `Not connected right now: you'll be set ${s} as soon as the connection is back.`);
}
$('go-available').addEventListener('click', () => choose('available'));
$('go-away').addEventListener('click', () => choose('away'));

// ---- offers ----

function onOffer(m) {
  endOffer();
  const deadline = performance.now() + m.ring_s * 1000;
  const tick = () => {
    const left = Math.max(0, (deadline - performance.now()) / 1000);
    setText('ring-n', String(Math.ceil(left)));
    $('ring-arc').setAttribute('stroke-dashoffset', String(100 - (100 * left) / m.ring_s));
  };
  const topic = topicLabel(m.topic);
  setText('offer-topic', topic);
  setText('offer-mode', m.mode === 'voice' ? 'voice' : 'text');
  setText('offer-waited', m.waited_s < 5 ? 'just joined' : duration(m.waited_s));
  $('offer-crisis').hidden = !m.crisis;
  $('offer-before').hidden = !m.talked_before;
  $('accept').disabled = false;
  $('decline').disabled = false;
  setNote('desk-note', '');
  tick();
  offer = {
    id: m.offer_id,
    mode: m.mode,
    tick: setInterval(tick, 250),
    stopTitle: flashTitle(m.crisis ? '(!) Urgent: someone may not be safe — earshot'
      : '(•) Someone is waiting — earshot'),
    note: notify(m.crisis ? 'Urgent: someone may not be safe' : 'Someone is waiting to talk',
      `${topic} · by ${m.mode} · ${m.ring_s} s to answer`),
  };
  $('offer').hidden = false;
  chime();
  $('accept').focus();
  announce(`${m.crisis ? 'Urgent: someone who may not be safe' : 'Someone'} is waiting to talk `
    + `about ${topic}. Accept or decline.`);
}

function endOffer() {
  if (!offer) return;
  clearInterval(offer.tick);
  offer.stopTitle();
  if (offer.note) offer.note.close();
  offer = null;
  $('offer').hidden = true;
}

$('accept').addEventListener('click', () => {
  if (!offer) return;
  $('accept').disabled = true;
  $('decline').disabled = true;
  if (offer.mode === 'voice') unlockVoice();   // this click lets the person's voice play
  sock.send({ type: 'accept', offer_id: offer.id });
});
$('decline').addEventListener('click', () => {
  if (!offer) return;
  sock.send({ type: 'decline', offer_id: offer.id });
  endOffer();
  $('go-away').focus();
});

function onOfferGone(m) {
  if (!offer || offer.id !== m.offer_id) return;
  endOffer();
  if (GONE[m.reason]) setNote('desk-note', GONE[m.reason]);
}

// ---- session ----

// A crisis, flagged by either side: the timer no longer ends the session,
// supervisors are alerted, and the wrap-up after it is the longer one.
$('flag-crisis').addEventListener('click', () => sock.send({ type: 'crisis' }));

function onCrisis(m) {
  slot.hold('The timer will not end this session: end it when it is safe to.');
  $('crisis-banner').textContent = `Crisis flagged ${m.by === 'you' ? 'by you' : 'by the person'}. `
    + 'Your supervisors have been alerted, and the person has been shown where to get urgent help.';
  $('crisis-banner').hidden = false;
  $('flag-crisis').hidden = true;
}

// A session begins; or, `resumed`, the session as the server has it after a
// dropped connection: the same one goes on as it was (chat, timer, with
// fresh voice keys); a reloaded page starts it on screen again.
function onSessionStart(m) {
  const same = m.resumed && m.session_id === sessionId;
  setSession(m.session_id);
  endOffer();
  if (same) {
    slot.resume(m.remaining_s);
  } else {
    setText('session-topic', `Topic: ${topicLabel(m.topic)} · by ${m.mode}`);
    setText('session-h', m.peer ? `In a conversation with ${m.peer}` : 'In a conversation');
    chat.start(m.peer || 'The person');
    slot.start(m.remaining_s);
    resetEnd();
    $('crisis-banner').hidden = true;
    $('flag-crisis').hidden = false;
    passingNote('peer-note', '');
  }
  if (m.resumed) chat.resume(m);
  if (m.mode === 'voice') call.start(m, sock, m.peer || 'The person');
  else call.hide();
  const focus = m.mode === 'voice' ? 'session-h' : 'chat-text';
  if (same || (m.resumed && reloaded)) {
    if ($('v-session').hidden) show('v-session', focus);
    if (!same) chat.note('The page was reloaded, so earlier messages may not be shown here.');
    passingNote('back-note', `Reconnected — you're still ${m.peer ? `talking with ${m.peer}`
      : 'in the conversation'}.`, BACK_NOTE_MS);
  } else {
    show('v-session', focus);
    announce('The conversation has started.');
  }
}

// The session on screen; kept in this tab's sessionStorage too, so that a
// reload in a session signs in by itself (see the end of this file).
function setSession(id) {
  sessionId = id;
  try {
    if (id) sessionStorage.setItem(SESSION_KEY, id);
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // no storage: a reload shows the sign-in as before
  }
}

// The person's connection dropped: the session stays open for them.
function onPeerLost(m) {
  passingNote('peer-note', `The connection to the person dropped. They have up to `
    + `${duration(m.grace_s)} to come back — the session is still open.`);
}

const resetEnd = endButton(() => sock.send({ type: 'end' }));

function onSessionEnd(m) {
  setSession(null);
  passingNote('peer-note', '');
  passingNote('back-note', '');
  chat.stop();
  slot.stop();
  call.hide();
  askFeedback();
  show('v-desk');
  setNote('desk-note', `The conversation has ended: ${ENDED[m.reason] || 'it is closed'}.`);
}

// ---- feedback ----

// Asked for at sign-in and whenever it may have moved: when a session ends
// and when the wrap-up after it does (people rate after the end).
function askFeedback() {
  sock.send({ type: 'ratings' });
}

function renderFeedback(m) {
  const own = (m.counselors || [])[0];
  if (!own) return;
  setText('feedback-summary', own.count
    ? `${own.count} ${own.count === 1 ? 'rating' : 'ratings'}, ${own.mean.toFixed(1)} stars on average.`
    : 'No ratings yet.');
  const most = Math.max(1, ...own.hist);
  const rows = [5, 4, 3, 2, 1].map((stars) => {
    const n = own.hist[stars - 1];
    const bar = el('dd', { className: 'bar' }, el('span'));
    bar.setAttribute('aria-hidden', 'true');
    bar.firstChild.style.width = `${(100 * n) / most}%`;
    return el('div', {}, el('dt', { textContent: `${stars} ${stars === 1 ? 'star' : 'stars'}` }),
      bar, el('dd', { textContent: String(n) }));
  });
  $('feedback-hist').replaceChildren(...rows);
  $('feedback-hist').hidden = own.count === 0;
  const comments = own.comments || [];
  $('feedback-comments').replaceChildren(...comments.map((c) => el('li', { textContent: c })));
  $('feedback-comments').hidden = comments.length === 0;
  $('comments-h').hidden = comments.length === 0;
}

// ---- connection ----

// In a session the server keeps it for a while: the conversation stays on
// screen (the timer runs on, writing is held back) until the welcome says
// whether it was kept.
function onSocketState({ detail }) {
  if (detail.state !== 'down' || state === 'offline') return;
  passingNote('back-note', '');
  if (state === 'busy') lostSession = true;
  if (state === 'busy' && sock.resumable) {
    chat.suspend();
  } else {
    chat.stop();
    slot.stop();
  }
  call.stop();   // voice comes back with fresh keys, or not at all
  renderState('offline');
}

function onWelcome(m) {
  const first = !signedIn;
  signedIn = true;
  if (first && m.resumed) reloaded = true;
  $('who').hidden = false;
  setText('who', m.name ? `Signed in as ${m.name}` : 'Signed in');
  renderState(m.state);
  askFeedback();
  if (m.resumed && m.state === 'busy') {   // kept for us: session_start follows
    lostSession = false;
    setText('signin-status', '');
    return;
  }
  setSession(null);   // not in a session, whatever the page thought
  if (first) {
    setText('signin-status', '');
    show('v-desk');
    return;
  }
  if (lostSession) {
    lostSession = false;
    chat.stop();
    slot.stop();
    passingNote('peer-note', '');
    want = 'away';
    show('v-desk');
    setNote('desk-note', "The connection dropped and your conversation had to end. You're set away: "
      + 'set yourself available when you are ready.');
  } else if (want === 'available' && m.state === 'away') {
    sock.send({ type: 'set_state', state: 'available' });
    setNote('desk-note', "The connection dropped for a moment; you're available again.");
  } else {
    setNote('desk-note', '');
  }
}

function onMessage(m) {
  if (chat.handle(m) || call.handle(m)) return;
  switch (m.type) {
  case 'welcome': onWelcome(m); break;
  case 'state':
    if (m.reason === 'break_next') {
      announce(`Your ${Math.round(m.break_s / 60)}-minute break starts when this conversation ends.`);
      break;
    }
    if (state === 'wrapup' && m.state !== 'wrapup') askFeedback();
    renderState(m.state, m.reason, m.wrapup_s, m.break_s);
    if (m.reason === 'missed_offers' || m.reason === 'shift_over' || m.reason === 'break') want = 'away';
    if (m.reason === 'break_over') want = 'available';
    if (m.state === 'available' && m.reason === 'wrapup_done') setNote('desk-note', '');
    break;
  case 'offer': onOffer(m); break;
  case 'offer_gone': onOfferGone(m); break;
  case 'session_start': onSessionStart(m); break;
  case 'peer_lost': onPeerLost(m); break;
  case 'peer_back': passingNote('peer-note', "They're back.", BACK_NOTE_MS); break;
  case 'slot_warning': slot.warning(m.remaining_s); break;
  case 'slot_over': slot.over(m.grace_s); break;
  case 'session_end': onSessionEnd(m); break;
  case 'crisis': onCrisis(m); break;
  case 'ratings': renderFeedback(m); break;
  case 'going_away': announce('The server is restarting; this console will reconnect by itself.'); break;
  case 'error':
    if (m.code === 'rate_limited') setNote('alert', "That was a lot at once; some of it wasn't sent.");
    else if (m.code === 'no_such_offer') endOffer();
    else if (m.ref === 'ratings') setText('feedback-summary', "Your feedback can't be shown right now.");
    else if (m.code === 'shift_over') {
      want = 'away';
      setNote('desk-note', REASONS.shift_over);
    }
    else console.warn('earshot error', m);
    break;
  default: break;
  }
}

// ---- alerts ----

function showNotifyState(result) {
  const supported = notificationsSupported();
  const perm = supported ? Notification.permission : 'unsupported';
  $('notify-on').hidden = perm !== 'default';
  setText('notify-status', {
    granted: 'Desktop notifications are on.',
    denied: "Desktop notifications are blocked in this browser's site settings.",
    unsupported: "This browser can't show desktop notifications.",
  }[perm] || (result === 'default' ? 'Notifications were not turned on.' : ''));
}
$('notify-on').addEventListener('click', async () => showNotifyState(await askNotifications()));
$('test-chime').addEventListener('click', () => chime());
showNotifyState();

// In production the hosting app hands the token over in the URL fragment:
// sign in at once with the name and strengths it carries. A page reloaded
// in a session signs in again by itself, in time to take the session up.
if (new URLSearchParams(location.hash.slice(1)).get('token')) signIn({});
else if (resumeHeld('counselor') && sessionStorage.getItem(SESSION_KEY)
  && localStorage.getItem(NAME_KEY))
  signIn({ name: localStorage.getItem(NAME_KEY), skills: localStorage.getItem(SKILLS_KEY) || '' });
