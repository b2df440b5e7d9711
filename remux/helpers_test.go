package remux

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/mseway/mseway/bitstream"
)

// ---- H.264 test data ----

// readAnnexB splits an Annex B file into NAL units.
func readAnnexB(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bitstream.SplitAnnexB(b)
}

// accessUnit is one coded picture of a test file, as NAL units.
type accessUnit struct {
	nals [][]byte
	key  bool
}

// splitAUs groups NAL units into access units (H.264 7.4.1.2.3): a new AU
// starts at an AUD/SEI/SPS/PPS after a slice, or at a slice with
// first_mb_in_slice == 0 after a slice.
func splitAUs(nals [][]byte) []accessUnit {
	var aus []accessUnit
	var cur accessUnit
	sawVCL := false
	for _, n := range nals {
		typ := n[0] & 0x1f
		vcl := typ >= 1 && typ <= 5
		newAU := sawVCL && ((typ >= 6 && typ <= 9) || (vcl && n[1]&0x80 != 0))
		if newAU {
			aus = append(aus, cur)
			cur = accessUnit{}
			sawVCL = false
		}
		cur.nals = append(cur.nals, n)
		if vcl {
			sawVCL = true
		}
		if typ == 5 {
			cur.key = true
		}
	}
	if len(cur.nals) > 0 {
		aus = append(aus, cur)
	}
	return aus
}

// avccSample is what remux must put in mdat for an AU: its NAL units but
// parameter sets, AUD and filler, each with a 4-byte length.
func avccSample(au accessUnit) []byte {
	var b []byte
	for _, n := range au.nals {
		switch n[0] & 0x1f {
		case 7, 8, 9, 10, 11, 12:
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
		b = append(b, n...)
	}
	return b
}

func annexB(au accessUnit) []byte {
	var b []byte
	for _, n := range au.nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

type pktOpts struct {
	mtu         uint16
	disableStap bool
	seq         uint16
	ts          uint32
	tsStep      uint32
	start       time.Time
	frameDur    time.Duration
}

type timedPacket struct {
	pkt     *rtp.Packet
	arrival time.Time
	frame   int
	audio   bool
}

// packetizeH264 turns AUs into RTP packets with pion's payloader (FU-A for
// NAL units above the MTU, STAP-A for SPS+PPS unless disabled, single NAL
// unit packets otherwise). The last packet of each AU has the marker bit.
func packetizeH264(aus []accessUnit, o pktOpts) []timedPacket {
	frames := make([]codecFrame, len(aus))
	for i, au := range aus {
		frames[i] = codecFrame{wire: annexB(au), key: au.key}
	}
	return packetizeFrames(frames, &codecs.H264Payloader{DisableStapA: o.disableStap}, o)
}

// ---- Opus test data ----

// readOggOpus returns the Opus packets of an Ogg Opus file (header packets
// skipped).
func readOggOpus(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	var cur []byte
	for len(b) >= 27 {
		if string(b[:4]) != "OggS" {
			t.Fatal("bad ogg page")
		}
		nseg := int(b[26])
		lacing := b[27 : 27+nseg]
		body := b[27+nseg:]
		off := 0
		for _, l := range lacing {
			cur = append(cur, body[off:off+int(l)]...)
			off += int(l)
			if l < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
		b = body[off:]
	}
	if len(pkts) < 3 || !bytes.HasPrefix(pkts[0], []byte("OpusHead")) {
		t.Fatal("not an ogg opus file")
	}
	return pkts[2:]
}

func packetizeOpus(frames [][]byte, seq uint16, ts uint32, start time.Time) []timedPacket {
	var out []timedPacket
	for i, f := range frames {
		d, _ := opusDuration(f)
		out = append(out, timedPacket{
			pkt: &rtp.Packet{Header: rtp.Header{
				Version: 2, PayloadType: 111, SequenceNumber: seq + uint16(i),
				Timestamp: ts, SSRC: 2, Marker: i == 0,
			}, Payload: f},
			arrival: start.Add(time.Duration(i) * 20 * time.Millisecond),
			audio:   true,
			frame:   i,
		})
		ts += d
	}
	return out
}

// mergeByArrival interleaves packet lists by arrival time (stable).
func mergeByArrival(a, b []timedPacket) []timedPacket {
	out := make([]timedPacket, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j >= len(b) || (i < len(a) && !b[j].arrival.Before(a[i].arrival)) {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	return out
}

// ---- sink ----

type recSink struct {
	mu     sync.Mutex
	events []any // *Init or *Segment, in order
	sums   map[*Segment][32]byte
}

func (r *recSink) WriteInit(i *Init) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, i)
}

func (r *recSink) WriteSegment(s *Segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sums == nil {
		r.sums = map[*Segment][32]byte{}
	}
	r.sums[s] = sha256.Sum256(s.Data)
	r.events = append(r.events, s)
}

func (r *recSink) inits() []*Init {
	var out []*Init
	for _, e := range r.events {
		if i, ok := e.(*Init); ok {
			out = append(out, i)
		}
	}
	return out
}

func (r *recSink) segments() []*Segment {
	var out []*Segment
	for _, e := range r.events {
		if s, ok := e.(*Segment); ok {
			out = append(out, s)
		}
	}
	return out
}

// checkImmutable verifies no segment changed after emission.
func (r *recSink) checkImmutable(t *testing.T) {
	t.Helper()
	for s, sum := range r.sums {
		if sha256.Sum256(s.Data) != sum {
			t.Fatal("a segment's bytes changed after emission")
		}
	}
}

// files splits the recorded output into one byte stream per init.
func (r *recSink) files() [][]byte {
	var out [][]byte
	for _, e := range r.events {
		switch v := e.(type) {
		case *Init:
			out = append(out, append([]byte(nil), v.Data...))
		case *Segment:
			if len(out) == 0 {
				panic("segment before init")
			}
			out[len(out)-1] = append(out[len(out)-1], v.Data...)
		}
	}
	return out
}

func feed(s *Stream, pkts []timedPacket) {
	for _, p := range pkts {
		if p.audio {
			s.PushAudio(p.pkt, p.arrival)
		} else {
			s.PushVideo(p.pkt, p.arrival)
		}
	}
}

// ---- validation ----

type parsedSample struct {
	track uint32
	dts   uint64
	dur   uint32
	flags uint32
	cto   int32 // composition time offset
	data  []byte
}

// parseMP4 decodes init+segments with mp4ff and checks the structure every
// output must have. It returns the samples in file order.
func parseMP4(t *testing.T, data []byte, in *Init) []parsedSample {
	t.Helper()
	f, err := mp4.DecodeFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("mp4ff cannot parse output: %v", err)
	}
	if f.Init == nil || f.Moov == nil || f.Moov.Mvex == nil {
		t.Fatal("no init / mvex")
	}
	if len(f.Moov.Traks) != len(in.Tracks) || len(f.Moov.Mvex.Trexs) != len(in.Tracks) {
		t.Fatalf("moov has %d traks, %d trex; Init says %d tracks", len(f.Moov.Traks), len(f.Moov.Mvex.Trexs), len(in.Tracks))
	}
	var out []parsedSample
	lastDTS := map[uint32]uint64{}
	seen := map[uint32]bool{}
	lastSeq := uint32(0)
	for _, seg := range f.Segments {
		for _, frag := range seg.Fragments {
			if frag.Moof.Mfhd.SequenceNumber <= lastSeq && lastSeq != 0 {
				t.Fatalf("moof sequence %d after %d", frag.Moof.Mfhd.SequenceNumber, lastSeq)
			}
			lastSeq = frag.Moof.Mfhd.SequenceNumber
			mdatStart := frag.Moof.Size() + 8
			for _, traf := range frag.Moof.Trafs {
				if traf.Tfhd.Flags&0x020000 == 0 {
					t.Fatal("tfhd without default-base-is-moof")
				}
				id := traf.Tfhd.TrackID
				dts := traf.Tfdt.BaseMediaDecodeTime()
				if seen[id] && dts <= lastDTS[id] {
					t.Fatalf("track %d: tfdt %d not after previous sample %d", id, dts, lastDTS[id])
				}
				off := uint64(traf.Trun.DataOffset) - mdatStart
				for _, s := range traf.Trun.Samples {
					if s.Dur == 0 {
						t.Fatalf("track %d: zero sample duration", id)
					}
					end := off + uint64(s.Size)
					if end > uint64(len(frag.Mdat.Data)) {
						t.Fatal("sample outside mdat")
					}
					out = append(out, parsedSample{track: id, dts: dts, dur: s.Dur, flags: s.Flags, cto: s.CompositionTimeOffset, data: frag.Mdat.Data[off:end]})
					off = end
					seen[id] = true
					lastDTS[id] = dts
					dts += uint64(s.Dur)
				}
			}
		}
	}
	return out
}

func ffmpegRequired(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg not on PATH (required in CI)")
		}
		t.Skip("ffmpeg not on PATH")
	}
}

// ffmpegDecode writes data to a temp .mp4, decodes it fully and fails on
// any ffmpeg output. It returns the path.
func ffmpegDecode(t *testing.T, data []byte) string {
	t.Helper()
	ffmpegRequired(t)
	p := filepath.Join(t.TempDir(), "out.mp4")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", p, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg decode failed (%v):\n%s", err, out)
	}
	return p
}

// ffprobeCount counts decoded frames (or packets) of one stream type.
func ffprobeCount(t *testing.T, path, stream string, packets bool) int {
	t.Helper()
	args := []string{"-v", "error", "-select_streams", stream, "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path}
	if packets {
		args = []string{"-v", "error", "-select_streams", stream, "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path}
	}
	out, err := exec.Command("ffprobe", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return n
}

var errStop = errors.New("stop")
