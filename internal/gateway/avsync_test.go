package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/mseway/mseway/internal/testkit/mediafile"
	"github.com/mseway/mseway/internal/testkit/whipclient"
)

// mediaSample is one sample a viewer received, with its bytes.
type mediaSample struct {
	video bool
	pts   time.Duration
	data  []byte
}

// viewerSamples decodes init+segments with mp4ff into samples with their
// presentation times and bytes.
func viewerSamples(t *testing.T, init []byte, segs [][]byte) []mediaSample {
	t.Helper()
	f, err := mp4.DecodeFile(bytes.NewReader(bytes.Join(append([][]byte{init}, segs...), nil)))
	if err != nil {
		t.Fatal(err)
	}
	kind := map[uint32]bool{}
	scale := map[uint32]uint32{}
	for _, trak := range f.Moov.Traks {
		kind[trak.Tkhd.TrackID] = trak.Mdia.Hdlr.HandlerType == "vide"
		scale[trak.Tkhd.TrackID] = trak.Mdia.Mdhd.Timescale
	}
	var out []mediaSample
	for _, seg := range f.Segments {
		for _, frag := range seg.Fragments {
			mdatStart := frag.Moof.Size() + 8
			for _, traf := range frag.Moof.Trafs {
				id := traf.Tfhd.TrackID
				dts := traf.Tfdt.BaseMediaDecodeTime()
				off := uint64(traf.Trun.DataOffset) - mdatStart
				for _, s := range traf.Trun.Samples {
					pts := int64(dts) + int64(s.CompositionTimeOffset)
					out = append(out, mediaSample{
						video: kind[id],
						pts:   time.Duration(pts) * time.Second / time.Duration(scale[id]),
						data:  frag.Mdat.Data[off : off+uint64(s.Size)],
					})
					off += uint64(s.Size)
					dts += uint64(s.Dur)
				}
			}
		}
	}
	return out
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// TestAVSyncEndToEnd: a Pion publisher whose video sender reports say each
// frame was captured `shift` before (or after) it was sent, as an encoder
// pipeline delay would, publishes VP9 + Opus. The gateway must align audio
// and video by the reports (RTCP sender reports, NTP <-> RTP), not by arrival:
// in the viewer's output, audio sent at t and video captured at t share a
// presentation time, |skew| < 20 ms. Samples are matched to what was sent
// by their bytes (frames and packets sent once only).
func TestAVSyncEndToEnd(t *testing.T) {
	// 8 s of a two-tone sweep: every Opus packet differs (the 2 s file
	// loops within the test).
	audio, err := mediafile.ReadOggOpus(filepath.Join(repoRoot(t), "testdata/media/opus_sweep_8s.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	mime, video := codecMedia(t, "vp9_640x360_30fps.ivf")
	for _, shift := range []time.Duration{-300 * time.Millisecond, 150 * time.Millisecond, 0} {
		t.Run(fmt.Sprintf("video-capture-shift-%v", shift), func(t *testing.T) {
			gw := startGateway(t, nil)
			stream := "avsync"
			v := watch(t, gw, stream)
			v.expectControl("waiting", 5*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			pub, err := whipclient.Publish(ctx, whipclient.Options{
				URL: gw.base + "/whip/" + stream, Video: video, VideoCodec: mime, Audio: audio, FPS: 30,
				LoopbackOnly: true, LogSent: true, Impair: &whipclient.Impairment{VideoNTPShift: shift},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			_, init := v.expectInit(10 * time.Second)
			segs, stop := v.collect(4500 * time.Millisecond)
			if stop != nil {
				t.Fatalf("unexpected %+v", stop)
			}
			if status := pub.Close(); status != http.StatusOK {
				t.Fatalf("DELETE: %d", status)
			}

			sent := pub.Sent()
			t0 := sent[0].At
			type sendInfo struct {
				at    time.Time
				count int
			}
			byHash := map[[32]byte]*sendInfo{}
			for _, s := range sent {
				t0 = minTime(t0, s.At)
				h := sha256.Sum256(s.Data)
				if si := byHash[h]; si != nil {
					si.count++
				} else {
					byHash[h] = &sendInfo{at: s.At, count: 1}
				}
			}
			// Offsets (presentation - capture) of samples sent after the
			// first sender reports had time to arrive (pion sends them every
			// second).
			var vOff, aOff []time.Duration
			for _, s := range viewerSamples(t, init, segs) {
				si := byHash[sha256.Sum256(s.data)]
				if si == nil || si.count != 1 || si.at.Sub(t0) < 2*time.Second {
					continue
				}
				capture := si.at.Sub(t0)
				if s.video {
					vOff = append(vOff, s.pts-(capture+shift))
				} else {
					aOff = append(aOff, s.pts-capture)
				}
			}
			if len(vOff) < 20 || len(aOff) < 30 {
				t.Fatalf("matched %d video and %d audio samples", len(vOff), len(aOff))
			}
			skew := median(aOff) - median(vOff)
			t.Logf("shift %v: A/V skew %v (median over %d video, %d audio samples; aligned by arrival time it would be %v)",
				shift, skew, len(vOff), len(aOff), shift)
			if skew <= -20*time.Millisecond || skew >= 20*time.Millisecond {
				t.Fatalf("A/V skew %v", skew)
			}
		})
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
