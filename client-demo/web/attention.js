// attention.js - getting a counselor's attention when someone is waiting,
// without being harsh: a soft two-note chime made with WebAudio (no audio
// files), a desktop notification when the counselor allowed them, and a
// document title that blinks in a background tab. All may be refused by
// the browser (no gesture yet, permission not granted): that is fine.

let audio = null;

// Create and resume the AudioContext; call from a click so that later
// chimes are allowed to play.
export function unlockAudio() {
  try {
    audio ??= new AudioContext();
    if (audio.state === 'suspended') audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
}

export function chime() {
  unlockAudio();
  if (!audio) return;
  const t0 = audio.currentTime + 0.02;
  // E5 then B5: a rising fifth, sine waves with a slow fade, quiet.
  for (const [freq, delay] of [[659.25, 0], [987.77, 0.22]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    const t = t0 + delay;
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.15, t + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 1.4);
    osc.connect(gain).connect(audio.destination);
    osc.start(t);
    osc.stop(t + 1.5);
  }
}

export const notificationsSupported = () => 'Notification' in window;

// Ask only from a click: browsers (rightly) ignore requests made on load.
export async function askNotifications() {
  if (!notificationsSupported()) return 'unsupported';
  return Notification.requestPermission();
}

// A notification when permitted, else null. Clicking it brings the tab forward.
export function notify(title, body) {
  if (!notificationsSupported() || Notification.permission !== 'granted') return null;
  try {
    const n = new Notification(title, { body, tag: 'earshot-offer', renotify: true });
    n.onclick = () => { window.focus(); n.close(); };
    return n;
  } catch {
    return null;  // e.g. a platform that only allows service-worker notifications
  }
}

// Alternate the tab's title with `text` until the returned function is called.
export function flashTitle(text) {
  const base = document.title;
  let on = false;
  const timer = setInterval(() => {
    on = !on;
    document.title = on ? text : base;
  }, 1000);
  document.title = text;
  on = true;
  return () => {
    clearInterval(timer);
    document.title = base;
  };
}
