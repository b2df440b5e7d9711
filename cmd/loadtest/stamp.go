package main

import (
	"encoding/binary"
	"time"

	"github.com/mseway/mseway/internal/testkit/viewerclient"
)

// A video frame is stamped with its send time so every viewer can measure
// publish -> viewer delivery latency: the publisher puts an H.264 SEI
// (user_data_unregistered) in front of each access unit holding a UUID and
// the wall clock in nanoseconds. The gateway keeps SEI NAL units and drops
// SPS/PPS from samples, so the SEI is the first NAL unit of the video sample
// in the segment. Publisher and viewers run in the load tool, on one clock.
//
// The clock is written 7 bits per byte with the top bit set, so the payload
// holds no zero bytes and needs no emulation prevention.

var stampUUID = [16]byte{'m', 's', 'e', 'w', 'a', 'y', '-', 'l', 'o', 'a', 'd', 't', 'e', 's', 't', '!'}

const (
	stampClockLen = 10
	stampPayload  = len(stampUUID) + stampClockLen
	// stampNALLen is the SEI NAL unit: header, payload type, size, payload, trailing bits.
	stampNALLen = 3 + stampPayload + 1
	// stampPrefix is how many bytes of a message after the moof hold the
	// stamp: mdat header, NAL length, the SEI.
	stampPrefix = 8 + 4 + stampNALLen
)

// stampFrame returns a new Annex B access unit: the stamp SEI, then au.
func stampFrame(au []byte, at time.Time) []byte {
	out := make([]byte, 0, 4+stampNALLen+len(au))
	out = append(out, 0, 0, 0, 1, 6, 5, byte(stampPayload))
	out = append(out, stampUUID[:]...)
	out = putClock(out, at.UnixNano())
	out = append(out, 0x80)
	return append(out, au...)
}

func putClock(b []byte, ns int64) []byte {
	u := uint64(ns)
	for i := stampClockLen - 1; i >= 0; i-- {
		b = append(b, 0x80|byte(u>>(7*uint(i))&0x7f))
	}
	return b
}

func getClock(b []byte) int64 {
	var u uint64
	for _, c := range b[:stampClockLen] {
		u = u<<7 | uint64(c&0x7f)
	}
	return int64(u)
}

// stampOffset returns where the clock of the stamp sits in msg (a media
// segment whose moof is parsed in sh), or -1 when the first video sample
// does not start with a stamp. msg must hold at least the moof and
// stampPrefix bytes after it.
func stampOffset(msg []byte, sh viewerclient.SegmentHeader) int {
	off := sh.First.DataOffset
	if off < 0 || off+4+stampNALLen > len(msg) {
		return -1
	}
	n := int(binary.BigEndian.Uint32(msg[off:]))
	nal := msg[off+4:]
	if n != stampNALLen || nal[0]&0x1f != 6 || nal[1] != 5 || int(nal[2]) != stampPayload || string(nal[3:3+16]) != string(stampUUID[:]) {
		return -1
	}
	return off + 4 + 3 + 16
}

// readStamp returns the send time in the stamp of msg, if any.
func readStamp(msg []byte, sh viewerclient.SegmentHeader) (int64, bool) {
	o := stampOffset(msg, sh)
	if o < 0 {
		return 0, false
	}
	return getClock(msg[o:]), true
}
