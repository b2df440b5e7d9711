package remux

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/Eyevinn/mp4ff/mp4"
)

// Sample flags (ISO/IEC 14496-12 8.8.3.1).
const (
	flagsSync    = 0x02000000 // sample_depends_on=2 (depends on no other sample)
	flagsNonSync = 0x01010000 // sample_depends_on=1, sample_is_non_sync_sample=1
)

// audioTrackInfo describes the Opus track of an init.
type audioTrackInfo struct {
	channels uint16
}

// buildInit builds one ftyp+moov with the video track (if any) first and the
// audio track (if any) second.
func buildInit(video videoAssembler, audio *audioTrackInfo) (*Init, error) {
	init := mp4.CreateEmptyInit()
	init.Ftyp = mp4.NewFtyp("iso6", 0, []string{"iso6", "cmfc", "mp41"})
	init.Children[0] = init.Ftyp
	out := &Init{}
	var codecs []string
	if video != nil {
		tr, err := video.addTrack(init)
		if err != nil {
			return nil, err
		}
		out.Tracks = append(out.Tracks, tr)
		codecs = append(codecs, tr.Codec)
	}
	if audio != nil {
		trak := init.AddEmptyTrack(48000, "audio", "und")
		dops := &mp4.DopsBox{
			Version:            0,
			OutputChannelCount: byte(audio.channels),
			PreSkip:            0, // live stream joined mid-way: nothing to trim
			InputSampleRate:    48000,
		}
		entry := mp4.CreateAudioSampleEntryBox("Opus", audio.channels, 16, 48000, dops)
		trak.Mdia.Minf.Stbl.Stsd.AddChild(entry)
		out.Tracks = append(out.Tracks, Track{
			ID:         trak.Tkhd.TrackID,
			Kind:       "audio",
			Codec:      "opus",
			SampleRate: 48000,
			Channels:   int(audio.channels),
			Timescale:  48000,
		})
		codecs = append(codecs, "opus")
	}
	var b bytes.Buffer
	b.Grow(int(init.Size()))
	if err := init.Encode(&b); err != nil {
		return nil, err
	}
	out.Data = b.Bytes()
	kind := "audio"
	if video != nil {
		kind = "video"
	}
	out.MIME = kind + `/mp4; codecs="` + strings.Join(codecs, ",") + `"`
	return out, nil
}

// sampleEntry is one sample of a traf.
type sampleEntry struct {
	size  uint32
	dur   uint32
	flags uint32
	cto   uint32 // composition time offset (presentation - decode); written only for trafs with withCTO
}

// trafData is what one traf of a fragment holds.
type trafData struct {
	trackID  uint32
	baseTime uint64 // tfdt, in the track's timescale
	samples  []sampleEntry
	data     []byte // sample data, in sample order
	withCTO  bool   // write per-sample composition time offsets
}

const (
	mfhdSize     = 16
	trafFixed    = 8 + 16 + 20 + 20 // traf header, tfhd, tfdt (v1), trun without samples
	trunPerEntry = 12               // duration, size, flags
	ctoSize      = 4                // composition time offset, when present
)

func (t *trafData) entrySize() int {
	if t.withCTO {
		return trunPerEntry + ctoSize
	}
	return trunPerEntry
}

// fragmentWriter builds moof+mdat fragments. It reuses its buffers; each
// fragment it returns is a new, exactly sized slice (one allocation, not
// zeroed first).
type fragmentWriter struct {
	hdr   []byte
	parts [3][]byte
}

// build writes one moof (a traf per non-empty track, in order: at most two)
// and one mdat.
//
// tfhd: default-base-is-moof; tfdt: version 1; trun: data offset, and per
// sample duration, size and flags.
func (w *fragmentWriter) build(seq uint32, trafs []trafData) []byte {
	moofSize := 8 + mfhdSize
	dataSize := 0
	for i := range trafs {
		if len(trafs[i].samples) == 0 {
			continue
		}
		moofSize += trafFixed + trafs[i].entrySize()*len(trafs[i].samples)
		dataSize += len(trafs[i].data)
	}
	hdrSize := moofSize + 8
	if cap(w.hdr) < hdrSize {
		w.hdr = make([]byte, hdrSize+256)
	}
	b := w.hdr[:hdrSize]
	be := binary.BigEndian
	put := func(v uint32) {
		be.PutUint32(b, v)
		b = b[4:]
	}
	box := func(size int, typ string) {
		put(uint32(size))
		copy(b, typ)
		b = b[4:]
	}
	box(moofSize, "moof")
	box(mfhdSize, "mfhd")
	put(0)
	put(seq)
	dataOffset := hdrSize
	parts := w.parts[:1]
	for i := range trafs {
		t := &trafs[i]
		n := len(t.samples)
		if n == 0 {
			continue
		}
		trunSize := 20 + t.entrySize()*n
		box(trafFixed-20+trunSize, "traf")
		box(16, "tfhd")
		put(0x020000) // version 0, default-base-is-moof
		put(t.trackID)
		box(20, "tfdt")
		put(1 << 24) // version 1
		be.PutUint64(b, t.baseTime)
		b = b[8:]
		box(trunSize, "trun")
		if t.withCTO {
			put(0x000F01) // version 0; data-offset, duration, size, flags, composition offset
		} else {
			put(0x000701) // data-offset, sample-duration, sample-size, sample-flags
		}
		put(uint32(n))
		put(uint32(dataOffset))
		for _, s := range t.samples {
			put(s.dur)
			put(s.size)
			put(s.flags)
			if t.withCTO {
				put(s.cto)
			}
		}
		dataOffset += len(t.data)
		parts = append(parts, t.data)
	}
	box(8+dataSize, "mdat")
	parts[0] = w.hdr[:hdrSize]
	if len(parts) == 1 {
		parts = append(parts, nil) // bytes.Join copies a single part with append
	}
	out := bytes.Join(parts, nil)
	for i := range w.parts {
		w.parts[i] = nil
	}
	return out
}
