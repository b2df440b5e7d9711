package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// TestLoadSmall runs the tool as CI does: a gateway and the floor in this
// process on loopback, 20 viewers for ~3 s each, and checks that it works
// (not how fast: figures live in docs/BENCHMARKS.md); once over plain
// http/ws, once with -tls (WHIP over https, viewers over wss).
func TestLoadSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a gateway for ~15 s")
	}
	t.Run("ws", func(t *testing.T) { testLoadSmall(t) })
	t.Run("wss", func(t *testing.T) {
		rep := testLoadSmall(t, "-tls")
		if !strings.HasPrefix(rep.Gateway.Target, "https://") || !strings.HasPrefix(rep.Floor.Target, "https://") {
			t.Errorf("-tls: targets %s, %s", rep.Gateway.Target, rep.Floor.Target)
		}
	})
}

func testLoadSmall(t *testing.T, extra ...string) report {
	t.Cleanup(func() { serverCert, clientTLS, dialer.TLSClientConfig = nil, nil, nil })
	var out, errb bytes.Buffer
	code := run(append([]string{
		"-inprocess", "-viewers", "20", "-slow", "2", "-duration", "3s", "-ramp", "500ms", "-warmup", "500ms", "-record", "2s",
		"-video", "../../testdata/media/h264_1280x720_30fps_2500k.h264", "-audio", "../../testdata/media/opus_48k_stereo.ogg",
		"-log-level", "error",
	}, extra...), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 3 || !strings.Contains(out.String(), "gateway / floor:") {
		t.Fatalf("text report missing:\n%s", out.String())
	}
	var rep report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line is not the JSON report: %v\n%s", err, lines[len(lines)-1])
	}
	if rep.Viewers != 20 || rep.Slow != 2 || !rep.Audio || rep.Gateway == nil || rep.Floor == nil || rep.Ratio == nil {
		t.Fatalf("report incomplete: %+v", rep)
	}
	if rep.Publisher == nil || rep.Publisher.Frames < 60 {
		t.Errorf("publisher stats: %+v", rep.Publisher)
	}
	for name, p := range map[string]*phaseResult{"gateway": rep.Gateway, "floor": rep.Floor} {
		if p.Connected != 20 || p.Errors != 0 {
			t.Errorf("%s: connected %d, errors %d %q", name, p.Connected, p.Errors, p.ErrorSamples)
		}
		// Progress, not speed: 3 s at 30 fps is 90 frames, but CI runs this
		// next to the browser tests under -race on 2 cores.
		if p.FramesPerViewer[0] < 15 {
			t.Errorf("%s: a viewer got only %d frames in 3 s", name, p.FramesPerViewer[0])
		}
		if p.UnstampedFrames != 0 || p.LatencyMs.N != p.Frames || p.LatencyMs.P50 <= 0 || p.LatencyMs.Max < p.LatencyMs.P99 {
			t.Errorf("%s: latency not measured for every frame: %+v, frames %d, unstamped %d", name, p.LatencyMs, p.Frames, p.UnstampedFrames)
		}
		// A starved client may fall behind and skip to a keyframe (that is
		// the gateway's policy working); most frames must still arrive.
		if p.SkippedFrames > p.Frames/4 {
			t.Errorf("%s: %d frames skipped of %d", name, p.SkippedFrames, p.Frames)
		}
		if p.SkippedFrames != 0 {
			t.Logf("%s: %d frames skipped (a loaded machine)", name, p.SkippedFrames)
		}
		if p.TTFFMs.N != 20 || p.TTFFMs.Max <= 0 {
			t.Errorf("%s: time to first frame: %+v", name, p.TTFFMs)
		}
		if p.ThroughputKbps[0] <= 0 {
			t.Errorf("%s: throughput %v kbit/s (about 2700 expected)", name, p.ThroughputKbps)
		}
		if p.CPUPct <= 0 || p.RSSKiB <= 0 {
			t.Errorf("%s: CPU %v%%, RSS %d KiB not read from /proc", name, p.CPUPct, p.RSSKiB)
		}
	}
	return rep
}

func TestStampRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	au := []byte{0, 0, 0, 1, 0x65, 0x88, 0x84}
	got := stampFrame(au, at)
	if !bytes.HasSuffix(got, au) {
		t.Fatal("access unit not kept after the stamp")
	}
	// No zero byte inside the SEI payload: no emulation prevention needed.
	if bytes.IndexByte(got[4:4+stampNALLen], 0) >= 0 {
		t.Fatalf("stamp holds a zero byte: % x", got[:4+stampNALLen])
	}
	// As the gateway stores it: a 4-byte length instead of the start code,
	// inside an mdat after a moof whose trun points at it.
	sei := got[4 : 4+stampNALLen]
	moof := buildMoof(t, 7, 3000, 90000)
	msg := append(append([]byte{}, moof...), 0, 0, 0, 0, 'm', 'd', 'a', 't', 0, 0, 0, byte(len(sei)))
	msg = append(msg, sei...)
	sh, err := viewerclient.ParseSegmentHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if sh.First.TrackID != 7 || sh.First.BaseTime != 90000 || sh.First.FirstDur != 3000 || !viewerclient.IsSync(sh.First.SampleFlags) {
		t.Fatalf("header = %+v", sh)
	}
	ns, ok := readStamp(msg, sh)
	if !ok || ns != at.UnixNano() {
		t.Fatalf("stamp = %d %v, want %d", ns, ok, at.UnixNano())
	}
	// The floor refreshes the clock in place.
	o := stampOffset(msg, sh)
	putClock(msg[o:o], 42)
	if ns, _ := readStamp(msg, sh); ns != 42 {
		t.Fatalf("patched stamp = %d", ns)
	}
}

// buildMoof writes a moof with one traf (tfhd, tfdt v1, trun with one
// sample) whose data offset points just past the moof and an 8-byte mdat header.
func buildMoof(t *testing.T, track uint32, dur uint32, base uint64) []byte {
	t.Helper()
	be := func(b []byte, v uint32) []byte { return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }
	box := func(typ string, body []byte) []byte {
		return append(be(nil, uint32(8+len(body))), append([]byte(typ), body...)...)
	}
	tfhd := box("tfhd", be(be(nil, 0x020000), track))
	tfdtBody := be(nil, 1<<24)
	tfdtBody = be(be(tfdtBody, uint32(base>>32)), uint32(base))
	tfdt := box("tfdt", tfdtBody)
	trunLen := 8 + 12 + 12
	mfhd := box("mfhd", be(be(nil, 0), 1))
	moofLen := 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trunLen
	trunBody := be(be(be(nil, 0x000701), 1), uint32(moofLen+8))
	trunBody = be(be(be(trunBody, dur), 100), 0x02000000)
	trun := box("trun", trunBody)
	traf := box("traf", append(append(tfhd, tfdt...), trun...))
	moof := box("moof", append(mfhd, traf...))
	if len(moof) != moofLen {
		t.Fatalf("moof length %d, computed %d", len(moof), moofLen)
	}
	return moof
}
