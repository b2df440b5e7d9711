"""A WHIP publisher built on aiortc, an independent WebRTC stack.

Usage: python3 aiortc_whip.py WHIP_URL SECONDS

It publishes a moving test pattern (video) and a 440 Hz tone (audio) with
aiortc's default codec list (VP8 first, then H.264; the gateway must pick
one it can remux), stays connected for SECONDS, then ends the session with
an HTTP DELETE on the resource URL. It prints one line per step and exits
non-zero on any failure. Non-trickle: the offer carries every candidate.
"""

import asyncio
import fractions
import math
import struct
import sys
import urllib.parse
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

WIDTH, HEIGHT = 320, 240
RATE, PTIME = 48000, 0.02


class Pattern(VideoStreamTrack):
    """A luma gradient that moves one step per frame."""

    row = bytes(range(256)) * 3

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        step = (pts // 3000) % 256
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        frame.planes[0].update(self.row[step:step + WIDTH] * HEIGHT)
        chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts, frame.time_base = pts, time_base
        return frame


class Tone(AudioStreamTrack):
    """A 440 Hz sine in 20 ms frames, paced in real time."""

    def __init__(self):
        super().__init__()
        self.samples = 0
        self.start = None

    async def recv(self):
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        wait = self.start + self.samples / RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        n = int(RATE * PTIME)
        pcm = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * (self.samples + i) / RATE)))
            for i in range(n)
        )
        frame = AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.pts, frame.time_base = self.samples, fractions.Fraction(1, RATE)
        self.samples += n
        return frame


def http(method, url, body=None):
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.status, resp.headers, resp.read()


async def main(url, seconds):
    pc = RTCPeerConnection()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        print("connection state", pc.connectionState, flush=True)
        if pc.connectionState == "connected":
            connected.set()

    pc.addTrack(Pattern())
    pc.addTrack(Tone())
    await pc.setLocalDescription(await pc.createOffer())  # waits for gathering
    loop = asyncio.get_running_loop()
    status, headers, answer = await loop.run_in_executor(
        None, http, "POST", url, pc.localDescription.sdp.encode())
    if status != 201 or not headers.get("Location"):
        raise SystemExit(f"POST: status {status}, Location {headers.get('Location')!r}")
    resource = urllib.parse.urljoin(url, headers["Location"])
    print("created", resource, flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
    await asyncio.wait_for(connected.wait(), 20)
    for t in pc.getTransceivers():
        print("sending", t.kind, flush=True)
    await asyncio.sleep(seconds)
    status, _, _ = await loop.run_in_executor(None, http, "DELETE", resource)
    print("deleted", status, flush=True)
    await pc.close()
    if status != 200:
        raise SystemExit(f"DELETE: status {status}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
