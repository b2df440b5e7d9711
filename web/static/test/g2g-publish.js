// Clock publisher for the glass-to-glass latency test (internal/gateway/latency_test.go).
// Query: stream=NAME, codec=h264|vp9|av1, signal=ws|whip, baseline=0 (no direct WebRTC),
// audio=1 (the fake microphone published too).
// Test hook: window.g2g = {publisher, baseline: clockReader | null, baselineVideo: clockReader | null, state}.
import { Publisher, videoCodecPreferences } from '/publisher.js';
import { clockStream, clockReader, percentile } from '/test/clock.js';

const q = new URLSearchParams(location.search);
const name = q.get('stream') || 'g2g';
const codec = q.get('codec') || 'h264';
const clock = clockStream(30);
const g2g = { publisher: null, baseline: null, clock, state: 'starting' };
window.g2g = g2g;
document.getElementById('name').textContent = name;
document.getElementById('source').srcObject = clock.stream;

/**
 * Direct WebRTC: the same tracks, pc1 -> pc2 in this page, same codec choice, shown in
 * the <video> with id elementId; returns its clockReader. With audio, both tracks in one
 * stream: the receiver then syncs video to audio (lip sync), as a WebRTC viewer of a
 * camera and microphone does.
 */
async function startBaseline(stream, elementId) {
  const pc1 = new RTCPeerConnection();
  const pc2 = new RTCPeerConnection();
  pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate);
  pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate);
  const video = document.getElementById(elementId);
  video.muted = true;
  const received = new MediaStream();
  pc2.ontrack = (e) => {
    received.addTrack(e.track);
    video.srcObject = received;
    video.play().catch(() => {});
  };
  for (const a of stream.getAudioTracks()) pc1.addTransceiver(a, { direction: 'sendonly', streams: [stream] });
  const tr = pc1.addTransceiver(clock.stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
  const prefs = videoCodecPreferences(RTCRtpSender.getCapabilities('video'), codec);
  if (prefs) tr.setCodecPreferences(prefs.codecs);
  await pc1.setLocalDescription(await pc1.createOffer());
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription(await pc2.createAnswer());
  await pc1.setRemoteDescription(pc2.localDescription);
  g2g.baselinePCs = (g2g.baselinePCs || []).concat([pc1, pc2]);
  return clockReader(video);
}

async function main() {
  const p = new Publisher({ stream: name, signal: q.get('signal') || 'ws' });
  g2g.publisher = p;
  p.addEventListener('change', () => {
    g2g.state = p.state;
    document.body.dataset.state = p.state;
    document.getElementById('state').textContent = p.error ? `${p.state}: ${p.error}` : p.state;
  });
  // audio=1: the fake microphone too (Opus), as a real publisher sends: a player with
  // audio needs more buffer than a video-only one (the audio renderer's own).
  let stream = clock.stream;
  if (q.get('audio') === '1') {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    stream = new MediaStream([...clock.stream.getVideoTracks(), ...mic.getAudioTracks()]);
  }
  await p.start({ stream, codec });
  if (q.get('baseline') !== '0') {
    // baseline: what the publish is (with its audio: lip-synced); baselineVideo: the
    // video track alone (null without audio: then the same as baseline).
    g2g.baseline = await startBaseline(stream, 'baseline');
    g2g.baselineVideo = stream.getAudioTracks().length ? await startBaseline(clock.stream, 'baseline-video') : null;
  }
  setInterval(() => {
    const b = g2g.baseline;
    if (b) document.getElementById('base').textContent =
      `${b.samples.length} samples, p50 ${percentile(b.samples, 50)} ms, p95 ${percentile(b.samples, 95)} ms`;
  }, 1000);
}

main().catch((e) => { g2g.state = 'failed'; g2g.error = String(e); document.body.dataset.state = 'failed'; });
