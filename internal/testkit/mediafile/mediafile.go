// Package mediafile reads small media files into the units a WebRTC sender
// sends: H.264 Annex B elementary streams into access units, Ogg Opus files
// into Opus packets. The test publishers and the load tool use it.
package mediafile

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/mseway/mseway/bitstream"
)

// AccessUnit is one H.264 frame in Annex B form (start codes kept).
type AccessUnit struct {
	Data     []byte
	Keyframe bool // holds an IDR slice
}

// ReadH264 reads an Annex B file and splits it into access units.
func ReadH264(path string) ([]AccessUnit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	aus := SplitH264(data)
	if len(aus) == 0 {
		return nil, fmt.Errorf("%s: no H.264 access units", path)
	}
	return aus, nil
}

// SplitH264 splits an Annex B stream into access units: a new unit starts at
// a parameter set, SEI or AUD after a slice, or at a slice whose
// first_mb_in_slice is 0 after another slice.
func SplitH264(data []byte) []AccessUnit {
	var out []AccessUnit
	var cur AccessUnit
	curHasVCL := false
	curStart := -1
	flush := func(end int) {
		if curStart >= 0 && curHasVCL {
			cur.Data = data[curStart:end]
			out = append(out, cur)
		}
		cur, curHasVCL, curStart = AccessUnit{}, false, -1
	}
	for _, n := range bitstream.Units(data) {
		if n.End <= n.Payload {
			continue
		}
		typ := data[n.Payload] & 0x1f
		vcl := typ == 1 || typ == 5
		firstMB0 := vcl && n.End > n.Payload+1 && data[n.Payload+1]&0x80 != 0
		if curHasVCL && ((vcl && firstMB0) || typ == 6 || typ == 7 || typ == 8 || typ == 9) {
			flush(n.Start)
		}
		if curStart < 0 {
			curStart = n.Start
		}
		if vcl {
			curHasVCL = true
		}
		if typ == 5 {
			cur.Keyframe = true
		}
	}
	flush(len(data))
	return out
}

// ReadOggOpus reads the Opus packets of an Ogg file (the OpusHead and
// OpusTags header packets are skipped).
func ReadOggOpus(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pkts, err := ParseOggOpus(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pkts, nil
}

// ParseOggOpus returns the Opus audio packets of an Ogg stream.
func ParseOggOpus(data []byte) ([][]byte, error) {
	var packets [][]byte
	var partial []byte
	for len(data) > 0 {
		if len(data) < 27 || string(data[:4]) != "OggS" {
			return nil, errors.New("not an Ogg page")
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			return nil, errors.New("truncated Ogg page header")
		}
		lacing := data[27 : 27+nseg]
		body := data[27+nseg:]
		total := 0
		for _, l := range lacing {
			total += int(l)
		}
		if len(body) < total {
			return nil, errors.New("truncated Ogg page")
		}
		off := 0
		for _, l := range lacing {
			partial = append(partial, body[off:off+int(l)]...)
			off += int(l)
			if l < 255 {
				packets = append(packets, partial)
				partial = nil
			}
		}
		data = body[total:]
	}
	var audio [][]byte
	for _, p := range packets {
		if bytes.HasPrefix(p, []byte("OpusHead")) || bytes.HasPrefix(p, []byte("OpusTags")) {
			continue
		}
		audio = append(audio, p)
	}
	if len(audio) == 0 {
		return nil, errors.New("no Opus packets")
	}
	return audio, nil
}
