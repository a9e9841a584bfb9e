// slot.js - the session's time: a countdown from session_start.remaining_s,
// re-synchronised at every slot_warning and after a resume, the gentle
// warnings themselves and the goodbye-grace notice after slot_over. Each
// page words its own notices.
import { clock } from './ui.js';

export class SlotTimer {
  // timer: element showing m:ss; notice: a role=status element;
  // words: { warning(remaining_s) → text, over(grace_s) → text }.
  constructor(timer, notice, words) {
    this.timer = timer;
    this.notice = notice;
    this.words = words;
    this.deadline = 0;
    this.tick = null;
  }

  start(remaining) {
    this.notice.textContent = '';
    this.notice.hidden = true;
    this.sync(remaining);
    clearInterval(this.tick);
    this.tick = setInterval(() => this.show(), 250);
  }

  // The same session after a dropped connection: the time as the server
  // has it now, keeping the notice already shown (a warning is not sent
  // again; a goodbye grace or a crisis is, and says so itself).
  resume(remaining) {
    this.sync(remaining);
    clearInterval(this.tick);
    this.tick = setInterval(() => this.show(), 250);
  }

  sync(remaining) {
    this.deadline = performance.now() + remaining * 1000;
    this.show();
  }

  show() {
    const left = (this.deadline - performance.now()) / 1000;
    this.timer.textContent = clock(left);
    this.timer.dateTime = `PT${Math.max(0, Math.ceil(left))}S`;
  }

  warning(remaining) {
    this.sync(remaining);
    this.say(this.words.warning(remaining));
  }

  over(grace) {
    this.sync(0);
    clearInterval(this.tick);
    this.timer.textContent = '0:00';
    this.say(this.words.over(grace));
  }

  stop() {
    clearInterval(this.tick);
  }

  // A crisis: the clock no longer ends the session.
  hold(text) {
    clearInterval(this.tick);
    this.timer.textContent = 'open';
    this.timer.removeAttribute('datetime');
    this.say(text);
  }

  say(text) {
    this.notice.hidden = false;
    this.notice.textContent = text;
  }
}

export function minutes(seconds) {
  const m = Math.max(1, Math.round(seconds / 60));
  return `${m} minute${m === 1 ? '' : 's'}`;
}
