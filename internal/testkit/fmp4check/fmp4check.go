// Package fmp4check inspects fragmented MP4 as a viewer receives it (an init
// segment, then media segments) and validates it with ffmpeg. Tests and the
// load tool use it; it is not on any serving path.
package fmp4check

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/Eyevinn/mp4ff/mp4"
)

// Sample is one sample of one track.
type Sample struct {
	TrackID    uint32
	DecodeTime uint64 // in the track's timescale
	Offset     int64  // composition time offset: presentation = DecodeTime + Offset
	Duration   uint32
	Size       uint32
	Sync       bool
}

// Init describes an init segment.
type Init struct {
	Tracks map[uint32]TrackInfo
	trex   map[uint32]*mp4.TrexBox
}

// TrackInfo is one track of an init segment.
type TrackInfo struct {
	Kind      string // "video" or "audio"
	Timescale uint32
	Codec     string // sample entry type, e.g. "avc1", "Opus"
}

// ParseInit parses an init segment (ftyp+moov).
func ParseInit(data []byte) (*Init, error) {
	f, err := mp4.DecodeFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if f.Init == nil || f.Init.Moov == nil {
		return nil, errors.New("init: no moov")
	}
	if f.Init.Moov.Mvex == nil || len(f.Init.Moov.Mvex.Trexs) != len(f.Init.Moov.Traks) {
		return nil, errors.New("init: mvex/trex missing for some track")
	}
	in := &Init{Tracks: map[uint32]TrackInfo{}, trex: map[uint32]*mp4.TrexBox{}}
	for _, trex := range f.Init.Moov.Mvex.Trexs {
		in.trex[trex.TrackID] = trex
	}
	for _, trak := range f.Init.Moov.Traks {
		ti := TrackInfo{Timescale: trak.Mdia.Mdhd.Timescale}
		switch trak.Mdia.Hdlr.HandlerType {
		case "vide":
			ti.Kind = "video"
		case "soun":
			ti.Kind = "audio"
		default:
			ti.Kind = trak.Mdia.Hdlr.HandlerType
		}
		if stsd := trak.Mdia.Minf.Stbl.Stsd; stsd != nil && len(stsd.Children) > 0 {
			ti.Codec = stsd.Children[0].Type()
		}
		in.Tracks[trak.Tkhd.TrackID] = ti
	}
	return in, nil
}

// ParseSegment returns the samples of a media segment (one or more
// moof+mdat) that belongs to init, in the order they appear.
func ParseSegment(init *Init, data []byte) ([]Sample, error) {
	f, err := mp4.DecodeFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	if f.Init != nil {
		return nil, errors.New("segment: unexpected init boxes")
	}
	var out []Sample
	nfrag := 0
	for _, seg := range f.Segments {
		for _, frag := range seg.Fragments {
			nfrag++
			if frag.Moof == nil || frag.Mdat == nil {
				return nil, errors.New("segment: moof without mdat")
			}
			for _, traf := range frag.Moof.Trafs {
				if traf.Tfdt == nil {
					return nil, errors.New("segment: traf without tfdt")
				}
				t := traf.Tfdt.BaseMediaDecodeTime()
				for _, trun := range traf.Truns {
					if _, ok := init.Tracks[traf.Tfhd.TrackID]; !ok {
						return nil, fmt.Errorf("segment: track %d is not in the init", traf.Tfhd.TrackID)
					}
					trun.AddSampleDefaultValues(traf.Tfhd, init.trex[traf.Tfhd.TrackID])
					for _, s := range trun.Samples {
						out = append(out, Sample{TrackID: traf.Tfhd.TrackID, DecodeTime: t, Offset: int64(s.CompositionTimeOffset),
							Duration: s.Dur, Size: s.Size, Sync: mp4.IsSyncSampleFlags(s.Flags)})
						t += uint64(s.Dur)
					}
				}
			}
		}
	}
	if nfrag == 0 {
		return nil, errors.New("segment: no moof")
	}
	return out, nil
}

// CheckMSEContinuity reports the first place where MSE's coded frame
// processing would see a discontinuity on a non-sync sample (a decode-time
// step back, or forward by more than twice the previous sample's duration):
// browsers then drop every frame up to the next keyframe. Samples are those of
// consecutive segments of one init, in order.
func CheckMSEContinuity(samples []Sample) error {
	type last struct {
		dts uint64
		dur uint32
	}
	prev := map[uint32]last{}
	for i, s := range samples {
		p, ok := prev[s.TrackID]
		prev[s.TrackID] = last{s.DecodeTime, s.Duration}
		if !ok || s.Sync {
			continue
		}
		if s.DecodeTime < p.dts || s.DecodeTime-p.dts > 2*uint64(p.dur) {
			return fmt.Errorf("sample %d (track %d): decode time %d after %d with duration %d: MSE discontinuity on a non-sync sample",
				i, s.TrackID, s.DecodeTime, p.dts, p.dur)
		}
		if s.Offset < 0 {
			return fmt.Errorf("sample %d (track %d): negative composition offset %d", i, s.TrackID, s.Offset)
		}
	}
	return nil
}

// Decode writes init+segments to a file in dir and decodes every frame with
// ffmpeg. It returns ffmpeg's error output (empty when clean) and the number
// of video frames ffprobe counts.
func Decode(dir string, init []byte, segments [][]byte) (errOutput string, videoFrames int, err error) {
	var buf bytes.Buffer
	buf.Write(init)
	for _, s := range segments {
		buf.Write(s)
	}
	f, err := os.CreateTemp(dir, "viewer-*.mp4")
	if err != nil {
		return "", 0, err
	}
	path := f.Name()
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return "", 0, err
	}
	f.Close()
	out, err := decodeAll(path)
	if err != nil && len(out) == 0 {
		return "", 0, fmt.Errorf("ffmpeg: %w", err)
	}
	probe, perr := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).Output()
	if perr == nil {
		videoFrames, _ = strconv.Atoi(strings.TrimSpace(strings.Split(string(probe), "\n")[0]))
	}
	return strings.TrimSpace(string(out)), videoFrames, nil
}

// decodeAll decodes every stream of path with ffmpeg and returns what it
// printed. Live video has a variable frame rate (a browser's capture clock
// under load): frames are kept with their own timestamps and time base, since
// by default ffmpeg rescales them to 1/frame-rate, where two frames closer
// than a frame period collide and its muxer reports a non-monotonic dts that
// is not in the file.
func decodeAll(path string) ([]byte, error) {
	return exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-map", "0",
		"-fps_mode", "passthrough", "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput()
}

// TB is the part of testing.TB that RequireFFmpeg uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// RequireFFmpeg fails the test in CI (CI=true) and skips it elsewhere when
// ffmpeg or ffprobe is not installed.
func RequireFFmpeg(t TB) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI (apt-get install ffmpeg)", bin)
			}
			t.Skipf("%s not installed", bin)
		}
	}
}
