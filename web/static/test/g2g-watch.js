// Clock viewer for the glass-to-glass latency test: plays the stream with MSEPlayer
// and reads the painted clock from every presented frame.
// Query: stream=NAME, mode=auto|worker|main, latency=target seconds (none: the player's
// own default target), sound=1 (unmuted: the audio played too).
// Test hook: window.g2g = {player, reader, state, error, stalls, target, reset(), counters()};
// window.player = the MSEPlayer.
import { MSEPlayer } from '/player.js';
import { clockReader, percentile } from '/test/clock.js';

const q = new URLSearchParams(location.search);
const name = q.get('stream') || 'g2g';
const video = document.getElementById('video');
const opts = { stream: name, mode: q.get('mode') || 'auto' };
const latency = parseFloat(q.get('latency'));
// latency=X measures the player at target X: no audio floor (see DEFAULT_AUDIO_LATENCY).
if (latency > 0) Object.assign(opts, { targetLatency: latency, audioLatency: 0 });
const player = new MSEPlayer(video, opts);
window.player = player;
// sound=1: unmuted, as a viewer who clicked "Unmute" (the stream's audio is played).
if (q.get('sound') === '1') player.setMuted(false);
const reader = clockReader(video);

// The player's stalls (its live counter; stats.stalls is refreshed once a second).
const stallCount = () => player.stalls ?? (player.stats && player.stats.stalls) ?? 0;
// Frames the element decoded and dropped (too late to show): the price of a low target.
const quality = () => {
  const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  return { decoded: q.totalVideoFrames || 0, dropped: q.droppedVideoFrames || 0 };
};
let since = { stalls: 0, target: player.targetLatency, targetMax: player.targetLatency, ...quality() };
window.g2g = {
  player,
  reader,
  get state() { return player.state; },
  get error() { return player.lastError; },
  get stalls() { return stallCount(); },
  get target() { return player.targetLatency; },
  /** Start a sample period: the clock samples and the player's counters. */
  reset() {
    reader.reset();
    since = { stalls: stallCount(), target: player.targetLatency, targetMax: player.targetLatency, ...quality() };
  },
  /** Over the sample period: stalls, the target at its start, the highest target seen, the base target, frames decoded and dropped. */
  counters() {
    since.targetMax = Math.max(since.targetMax, player.targetLatency);
    const q = quality();
    return {
      stalls: stallCount() - since.stalls, target: since.target, targetMax: since.targetMax, base: player.baseLatency,
      decoded: q.decoded - since.decoded, dropped: q.dropped - since.dropped,
    };
  },
};
// The adaptive target rises after a stall and creeps back down: keep its peak.
setInterval(() => { since.targetMax = Math.max(since.targetMax, player.targetLatency); }, 100);
document.getElementById('name').textContent = name;
player.addEventListener('state', (e) => {
  document.body.dataset.state = e.detail.state;
  document.getElementById('state').textContent = `${e.detail.state} (${player.mode || '?'})`;
});
player.start();
setInterval(() => {
  document.getElementById('lat').textContent =
    `${reader.samples.length} samples, p50 ${percentile(reader.samples, 50)} ms, p95 ${percentile(reader.samples, 95)} ms; ` +
    `player latency ${player.stats.latency} s, target ${player.targetLatency} s, stalls ${stallCount()}`;
}, 1000);
