package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIngestSmall runs the ingest mode in this process (gateway and ingest
// floor on loopback, 2 publishers, one short round) and checks that both
// phases received the publishers' packets and that the report is whole;
// not how fast (figures: docs/BENCHMARKS.md, "Ingest").
func TestIngestSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a gateway for ~10 s")
	}
	var out, errb bytes.Buffer
	code := run([]string{
		"-inprocess", "-ingest", "2", "-ingest-rounds", "1", "-duration", "2s", "-idle", "500ms", "-ingest-settle", "1500ms",
		"-video", "../../testdata/media/h264_1280x720_30fps_2500k.h264", "-audio", "../../testdata/media/opus_48k_stereo.ogg",
		"-log-level", "error",
	}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.Contains(out.String(), "gateway / floor CPU per publisher") {
		t.Fatalf("text report missing:\n%s", out.String())
	}
	var rep report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line is not the JSON report: %v", err)
	}
	if rep.Ingest == nil || rep.Ingest.Publishers != 2 || len(rep.Ingest.Rounds) != 1 {
		t.Fatalf("ingest report: %+v", rep.Ingest)
	}
	r := rep.Ingest.Rounds[0]
	for name, p := range map[string]*ingestPhase{"gateway": r.Gateway, "floor": r.Floor} {
		// 2 publishers send ~2 x (230 video + 50 audio) packets a second;
		// a starved CI machine may lag, so only progress is checked.
		if p.PacketsPerSec < 100 {
			t.Errorf("%s: %.0f packets/s received", name, p.PacketsPerSec)
		}
		if p.CPUPct <= 0 || p.RSSKiB <= 0 {
			t.Errorf("%s: CPU %v%%, RSS %d KiB not read from /proc", name, p.CPUPct, p.RSSKiB)
		}
		// In process, the publishers' allocations count too: only read here.
		if p.AllocsPerPacket <= 0 {
			t.Errorf("%s: allocations per packet not read (%v)", name, p.AllocsPerPacket)
		}
	}
	if r.Floor.DecryptErrors != 0 || r.Floor.DatagramsPerRead < 1 {
		t.Errorf("floor: %d decrypt errors, %.2f datagrams per read", r.Floor.DecryptErrors, r.Floor.DatagramsPerRead)
	}
}

// TestIngestFloorSenderReports: the floor decrypts the bare publishers'
// SRTCP and the sender reports reach the remuxer.
func TestIngestFloorSenderReports(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes for ~2.5 s")
	}
	c := config{videoPath: "../../testdata/media/h264_1280x720_30fps_2500k.h264", audioPath: "../../testdata/media/opus_48k_stereo.ogg", fps: 30, logLevel: "error"}
	video, audio, err := loadMedia(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h, cleanup, err := newIngestFloorHandler("error", 0, &logs)
	if err != nil {
		t.Fatal(err)
	}
	base, stop, err := serveLoopback(h, cleanup, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := &http.Client{Timeout: 10 * time.Second}
	p, err := publishBare(t.Context(), client, base, video, audio, 30)
	if err != nil {
		t.Fatal(err)
	}
	sleep(t.Context(), 2500*time.Millisecond)
	p.Close()
	st, err := getFloorStats(client, base)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sessions != 1 || st.DecryptErrors != 0 || st.Unknown != 0 || st.RTP < 100 || st.RTCP < 2 || st.SenderReports < 2 || st.VideoFrames < 10 || st.SegmentsOut < 10 {
		t.Fatalf("floor stats: %+v", st)
	}
}
