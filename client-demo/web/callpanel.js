// callpanel.js - the voice controls both pages show in a voice session:
// mute, the microphone's level, what is wrong with the microphone and how
// to fix it, "can't hear you" and "their audio stopped" warnings from the
// server, the other side's mute, and the link quality. The audio itself is
// voice.js; this builds its own DOM inside the container the page gives it.
import { VoiceCall, unlockVoice } from './voice.js';
import { announce, el } from './ui.js';

const METER_MS = 100;

// `peer`: how to name the other side at the start of a sentence
// ("Alice", "The person"); `mid` is the same inside one.
function words(peer) {
  const mid = peer.replace(/^The /, 'the ');
  const still = 'You can still listen and write.';
  return {
    opening: 'Opening your microphone…',
    live: 'Your microphone is on.',
    muted: `You're muted: ${mid} can't hear you until you unmute.`,
    denied: `Your microphone is blocked, so ${mid} can't hear you. Allow the microphone for this `
      + `site in your browser's settings, then choose Try the microphone again. ${still}`,
    missing: `No microphone was found. Connect one, then choose Try the microphone again. ${still}`,
    busy: 'Another program is using your microphone. Close it, then choose Try the microphone '
      + `again. ${still}`,
    failed: `Your microphone couldn't be opened. Choose Try the microphone again. ${still}`,
    ended: `Your microphone stopped working, so ${mid} can't hear you. Choose Try the microphone `
      + 'again; you can keep writing meanwhile.',
    youStopped: `${peer} can't hear you right now: your voice isn't getting through. Check your `
      + 'microphone and your connection, or write below.',
    peerStopped: `${peer}'s voice has stopped reaching you. They may be having connection trouble; `
      + 'you can write below meanwhile.',
    peerMuted: `${peer} has muted their microphone.`,
    peerLink: `${peer}'s`,
    broken: `Voice stopped working in this browser. Please write below; ${mid} can still read you.`,
  };
}

export class CallPanel {
  constructor(container) {
    this.container = container;
    this.call = null;
    this.meterTick = null;
    this.build();
  }

  build() {
    this.muteBtn = el('button', { type: 'button', className: 'secondary' }, 'Mute microphone');
    this.meter = el('meter', { min: 0, max: 1, low: 0.05, value: 0, id: 'mic-level' });
    const meterLabel = el('label', { htmlFor: 'mic-level', className: 'hint' }, 'Your microphone');
    this.status = el('p', { className: 'call-status' });
    this.status.setAttribute('role', 'status');
    this.retryBtn = el('button', { type: 'button', className: 'secondary', hidden: true },
      'Try the microphone again');
    this.soundBtn = el('button', { type: 'button', className: 'primary', hidden: true },
      'Turn on sound');
    this.warnYou = el('p', { className: 'notice', hidden: true });
    this.warnPeer = el('p', { className: 'notice', hidden: true });
    for (const w of [this.warnYou, this.warnPeer]) w.setAttribute('role', 'alert');
    this.peerNote = el('p', { className: 'call-status', hidden: true });
    this.link = el('p', { className: 'hint call-link' });
    const row = el('div', { className: 'call-row' }, this.muteBtn,
      el('div', { className: 'call-level' }, meterLabel, this.meter), this.retryBtn, this.soundBtn);
    this.container.replaceChildren(row, this.status, this.warnYou, this.warnPeer, this.peerNote,
      this.link);
    this.container.setAttribute('aria-label', 'Voice');

    this.muteBtn.addEventListener('click', () => {
      if (!this.call) return;
      this.call.setMuted(!this.call.muted);
      this.renderMic();
      this.renderLink();
    });
    this.retryBtn.addEventListener('click', () => this.call?.openMicrophone());
    this.soundBtn.addEventListener('click', () => { unlockVoice(); this.renderSound(); });
  }

  // A voice session began: `m` is session_start, `peer` names the other side.
  start(m, socket, peer) {
    this.stop();
    this.w = words(peer);
    this.lastLink = null;
    for (const p of [this.warnYou, this.warnPeer, this.peerNote]) p.hidden = true;
    this.link.textContent = '';
    this.muteBtn.textContent = 'Mute microphone';
    this.muteBtn.disabled = true;
    const call = new VoiceCall(socket);
    this.call = call;
    call.addEventListener('mic', () => this.renderMic());
    call.addEventListener('failed', () => {
      this.stop();
      this.status.textContent = this.w.broken;
    });
    this.container.hidden = false;
    this.renderMic();
    this.meterTick = setInterval(() => {
      this.meter.value = Math.min(1, Math.sqrt(call.stats.level) * 2);
    }, METER_MS);
    call.start(m).then(() => this.renderSound(), (e) => call.fail(e));
  }

  renderMic() {
    const call = this.call;
    if (!call) return;
    const live = call.mic === 'live';
    this.muteBtn.disabled = !live;
    this.muteBtn.textContent = call.muted ? 'Unmute microphone' : 'Mute microphone';
    this.muteBtn.classList.toggle('on', call.muted);
    this.retryBtn.hidden = live || call.mic === 'opening' || call.mic === 'off';
    this.status.textContent = live && call.muted ? this.w.muted : this.w[call.mic] || '';
  }

  // Shown when the browser kept audio off for want of a click.
  renderSound() {
    const ac = unlockVoice();
    this.soundBtn.hidden = ac.state !== 'suspended';
    ac.onstatechange = () => { this.soundBtn.hidden = ac.state !== 'suspended'; };
  }

  renderLink() {
    const m = this.lastLink;
    if (!m || !this.call) return;
    const you = this.call.muted ? 'muted' : m.you;
    this.link.textContent = `Your connection: ${you}. ${this.w.peerLink}: ${m.peer}.`;
  }

  // Voice messages from the server; true when this panel took `m`.
  handle(m) {
    if (!this.call) return false;
    switch (m.type) {
    case 'peer_mute':
      this.peerNote.textContent = this.w.peerMuted;
      this.peerNote.hidden = !m.on;
      announce(m.on ? this.w.peerMuted : 'They unmuted their microphone.');
      return true;
    case 'audio': {
      const warn = m.who === 'you' ? this.warnYou : this.warnPeer;
      const stopped = m.state === 'stopped';
      warn.textContent = m.who === 'you' ? this.w.youStopped : this.w.peerStopped;
      if (!stopped && !warn.hidden) announce('Voice is getting through again.');
      warn.hidden = !stopped;
      return true;
    }
    case 'link':
      this.lastLink = m;
      this.renderLink();
      return true;
    default:
      return false;
    }
  }

  stop() {
    clearInterval(this.meterTick);
    this.meter.value = 0;
    if (this.call) this.call.stop();
    this.call = null;
    this.muteBtn.disabled = true;
    this.retryBtn.hidden = true;
    this.soundBtn.hidden = true;
  }

  hide() {
    this.stop();
    this.container.hidden = true;
  }
}
