// ui.js - small DOM helpers the pages share: element lookup, showing one
// view at a time, the topics, time formatting, screen-reader announcements
// and the connection banner. No protocol knowledge beyond socket events.

// The topics a person can choose, in the order the client page lists them.
// Values match the protocol's topic syntax [a-z0-9_-].
export const TOPICS = [
  ['general', 'Anything on my mind'],
  ['anxiety', 'Anxiety and worry'],
  ['work-stress', 'Work stress'],
  ['grief', 'Grief and loss'],
  ['relationships', 'Relationships'],
  ['parenting', 'Parenting'],
  ['study', 'Study pressure'],
];

export function topicLabel(value) {
  const t = TOPICS.find(([v]) => v === value);
  return t ? t[1] : value;
}

export const $ = (id) => document.getElementById(id);

// An element with `props` (properties, not attributes) and `children`.
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) e.append(c);
  return e;
}

// Show the view with id `id` among `ids`, hide the others. Focus moves to
// the view's first heading (tabindex -1) so keyboard and screen-reader
// users land where the page changed, unless `focus` names another element.
export function showView(ids, id, focus) {
  for (const v of ids) $(v).hidden = v !== id;
  const target = focus ? $(focus) : $(id).querySelector('h1, h2');
  if (target) target.focus();
}

export function setText(id, text) {
  $(id).textContent = text;
}

// A notice that is shown only while it has something to say.
export function setNote(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

// A note that says something passing ("Reconnected", "They're back") and
// goes by itself after `ms` (0: stays until replaced). Any later call for
// the same id replaces it, timer and all.
const fading = new Map();
export function passingNote(id, text, ms = 0) {
  clearTimeout(fading.get(id));
  setNote(id, text);
  if (text && ms) fading.set(id, setTimeout(() => setNote(id, ''), ms));
}

// 0 → "0:00", 75 → "1:15", 3700 → "1:01:40".
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

// A duration in words for people, not machines: "40 seconds", "about 3 minutes".
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.round(s / 60);
  return `about ${m} minute${m === 1 ? '' : 's'}`;
}

// Say `text` to screen readers through the page's live region (#announce).
// Clearing first makes a repeated sentence be read again.
export function announce(text) {
  const region = $('announce');
  region.textContent = '';
  setTimeout(() => { region.textContent = text; }, 50);
}

// The banner shown while the connection is down: "Connection lost —
// reconnecting in N s…", counting down to the next attempt. Screen readers
// hear the loss and the return once, not every second.
export function connectionBanner(socket, el) {
  let tick = null;
  let wasDown = false;
  socket.addEventListener('state', ({ detail }) => {
    clearInterval(tick);
    if (detail.state === 'open') {
      el.hidden = true;
      if (wasDown) announce('Connected again.');
      wasDown = false;
      return;
    }
    if (socket.stopped || (detail.state === 'connecting' && !wasDown)) return;
    if (!wasDown) announce('Connection lost. Reconnecting automatically.');
    wasDown = true;
    el.hidden = false;
    if (detail.state === 'connecting') {
      el.textContent = 'Connection lost — reconnecting now…';
      return;
    }
    const until = Date.now() + detail.retryIn;
    const show = () => {
      const n = Math.max(1, Math.ceil((until - Date.now()) / 1000));
      el.textContent = `Connection lost — reconnecting in ${n}\u00a0s…`;
    };
    show();
    tick = setInterval(show, 250);
  });
}

// The End button asks once more before ending: a slip of the thumb must not
// cut a conversation short. Uses #end, #end-confirm, #end-yes, #end-no;
// returns a function that closes the question again without moving focus.
export function endButton(onConfirm) {
  const ask = (open) => {
    $('end').hidden = open;
    $('end-confirm').hidden = !open;
  };
  $('end').addEventListener('click', () => { ask(true); $('end-no').focus(); });
  $('end-no').addEventListener('click', () => { ask(false); $('end').focus(); });
  $('end-yes').addEventListener('click', onConfirm);
  return () => ask(false);
}
