// voice-worklet.js - the two audio-thread halves of a voice session, run
// in the page's AudioWorklet (48 kHz):
//   earshot-capture   microphone -> 20 ms frames (960 samples) posted to
//                     the page with their level, for the Opus encoder;
//   earshot-playback  decoded 20 ms frames from the page -> the speakers,
//                     through a small jitter buffer: playing starts once
//                     60 ms are buffered, an underrun waits for 60 ms
//                     again, and more than 200 ms queued (the network
//                     delivered a burst after a stall) is trimmed back to
//                     60 ms so the conversation does not fall behind.

const FRAME = 960;
const TARGET = 2880;     // 60 ms
const MOST = 9600;       // 200 ms
const RING = 16384;      // power of two, > MOST + FRAME
const REPORT_EVERY = 375; // render quanta: about 1 s

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
    this.live = true;
    this.port.onmessage = () => { this.live = false; };
  }

  process(inputs) {
    const input = inputs[0][0];
    // No input channel: the microphone track is gone. Send nothing, so
    // the other side and the server notice rather than hear silence.
    if (!input) return this.live;
    let at = 0;
    while (at < input.length) {
      const n = Math.min(input.length - at, FRAME - this.fill);
      this.frame.set(input.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === FRAME) {
        let sum = 0;
        for (let i = 0; i < FRAME; i++) sum += this.frame[i] * this.frame[i];
        this.port.postMessage({ pcm: this.frame, level: Math.sqrt(sum / FRAME) },
          [this.frame.buffer]);
        this.frame = new Float32Array(FRAME);
        this.fill = 0;
      }
    }
    return this.live;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(RING);
    this.read = 0;        // counters, not indexes: depth = write - read
    this.write = 0;
    this.playing = false;
    this.live = true;
    this.underruns = 0;
    this.trimmed = 0;
    this.quanta = 0;
    this.port.onmessage = ({ data }) => {
      if (data === 'stop') {
        this.live = false;
        return;
      }
      this.push(data);
    };
  }

  push(pcm) {
    for (let i = 0; i < pcm.length; i++) this.ring[(this.write + i) & (RING - 1)] = pcm[i];
    this.write += pcm.length;
    if (this.write - this.read > MOST) {
      this.trimmed += this.write - this.read - TARGET;
      this.read = this.write - TARGET;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const depth = this.write - this.read;
    if (!this.playing && depth >= TARGET) this.playing = true;
    if (this.playing) {
      const n = Math.min(out.length, depth);
      for (let i = 0; i < n; i++) out[i] = this.ring[(this.read + i) & (RING - 1)];
      this.read += n;
      if (n < out.length) {     // underrun: the rest stays silent; buffer up again
        this.playing = false;
        this.underruns++;
      }
    }
    if (++this.quanta % REPORT_EVERY === 0) {
      this.port.postMessage({ depthMs: (this.write - this.read) / 48,
        underruns: this.underruns, trimmedMs: this.trimmed / 48 });
    }
    return this.live;
  }
}

registerProcessor('earshot-capture', Capture);
registerProcessor('earshot-playback', Playback);
