package bitstream

// OpenH264's default "increasing id" strategy gives every IDR a new SPS/PPS
// id. A receiver that builds an fMP4 init from the parameter sets (as the
// gateway does) then sees new parameter sets at every keyframe and sends its
// viewers a new init each time. normalizeParamSetIDs rewrites the ids to 0
// in SPS, PPS and slice headers, which makes identical parameter sets
// byte-identical. It is meant for CAVLC streams (openh264 encodes Constrained
// Baseline): shifting CABAC slice data would break its byte alignment, so
// slices of a PPS with entropy_coding_mode_flag set are left alone (and so
// are their parameter sets' ids).

// H264IDNormalizer rewrites the parameter set ids of one stream's access
// units. Only Constrained/Baseline streams (profile_idc 66, CAVLC) are
// touched. The zero value is ready; use one per stream.
type H264IDNormalizer struct {
	baseline bool // the last SPS was Baseline
	cabac    bool // the last PPS used CABAC
}

// Normalize returns au (Annex-B) with parameter set ids 0. It returns au
// itself when there is nothing to change.
func (z *H264IDNormalizer) Normalize(au []byte) []byte {
	nals := SplitAnnexB(au)
	changed := false
	out := make([][]byte, len(nals))
	for i, nal := range nals {
		out[i] = nal
		if len(nal) < 2 {
			continue
		}
		var n []byte
		switch nal[0] & 0x1f {
		case 7:
			n = rewriteSPS(nal, &z.baseline)
		case 8:
			if z.baseline {
				n = rewritePPS(nal, &z.cabac)
			}
		case 1, 5:
			if z.baseline && !z.cabac {
				n = rewriteSlice(nal)
			}
		}
		if n != nil {
			out[i] = n
			changed = true
		}
	}
	if !changed {
		return au
	}
	var b []byte
	for _, n := range out {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

func escapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/64+4)
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

type bitReader struct {
	b   []byte
	pos int // in bits
}

func (r *bitReader) bit() (uint32, bool) {
	if r.pos >= len(r.b)*8 {
		return 0, false
	}
	v := uint32(r.b[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return v, true
}

func (r *bitReader) bits(n int) (uint32, bool) {
	var v uint32
	for range n {
		b, ok := r.bit()
		if !ok {
			return 0, false
		}
		v = v<<1 | b
	}
	return v, true
}

func (r *bitReader) ue() (uint32, bool) {
	zeros := 0
	for {
		b, ok := r.bit()
		if !ok || zeros > 31 {
			return 0, false
		}
		if b == 1 {
			break
		}
		zeros++
	}
	rest, ok := r.bits(zeros)
	if !ok {
		return 0, false
	}
	return (1<<zeros - 1) + rest, true
}

type bitWriter struct {
	b []byte
	n int // bits written
}

func (w *bitWriter) bit(v uint32) {
	if w.n%8 == 0 {
		w.b = append(w.b, 0)
	}
	if v&1 != 0 {
		w.b[len(w.b)-1] |= 1 << (7 - w.n%8)
	}
	w.n++
}

func (w *bitWriter) bits(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> i)
	}
}

func (w *bitWriter) ue(v uint32) {
	v++
	n := 0
	for t := v; t > 1; t >>= 1 {
		n++
	}
	w.bits(0, n)
	w.bits(v, n+1)
}

// rewrite parses the first fields of a NAL's RBSP with head, which writes
// them (with changed ids) to w; it reports false when nothing must change.
// The rest of the RBSP up to its stop bit is copied after them.
func rewrite(nal []byte, head func(r *bitReader, w *bitWriter) (change, ok bool)) []byte {
	rbsp := unescapeRBSP(nal[1:])
	// The stop bit: the last 1 bit of the RBSP.
	last := len(rbsp) - 1
	for last >= 0 && rbsp[last] == 0 {
		last--
	}
	if last < 0 {
		return nil
	}
	stop := last*8 + 7
	for rbsp[last]>>(7-stop%8)&1 == 0 {
		stop--
	}
	r := &bitReader{b: rbsp}
	w := &bitWriter{}
	change, ok := head(r, w)
	if !change || !ok || r.pos > stop {
		return nil
	}
	for r.pos <= stop {
		b, _ := r.bit()
		w.bit(b)
	}
	for w.n%8 != 0 {
		w.bit(0)
	}
	return append([]byte{nal[0]}, escapeRBSP(w.b)...)
}

func rewriteSPS(nal []byte, baseline *bool) []byte {
	return rewrite(nal, func(r *bitReader, w *bitWriter) (bool, bool) {
		fixed, ok := r.bits(24) // profile_idc, constraint flags, level_idc
		if !ok {
			return false, false
		}
		id, ok := r.ue()
		if !ok {
			return false, false
		}
		*baseline = fixed>>16 == 66
		if !*baseline { // Main and High may use CABAC: leave them alone
			return false, true
		}
		w.bits(fixed, 24)
		w.ue(0)
		return id != 0, true
	})
}

func rewritePPS(nal []byte, cabac *bool) []byte {
	return rewrite(nal, func(r *bitReader, w *bitWriter) (bool, bool) {
		ppsID, ok1 := r.ue()
		spsID, ok2 := r.ue()
		entropy, ok3 := r.bit()
		if !ok1 || !ok2 || !ok3 {
			return false, false
		}
		*cabac = entropy == 1
		if *cabac {
			return false, true
		}
		w.ue(0)
		w.ue(0)
		w.bit(entropy)
		return ppsID != 0 || spsID != 0, true
	})
}

func rewriteSlice(nal []byte) []byte {
	return rewrite(nal, func(r *bitReader, w *bitWriter) (bool, bool) {
		firstMB, ok1 := r.ue()
		sliceType, ok2 := r.ue()
		ppsID, ok3 := r.ue()
		if !ok1 || !ok2 || !ok3 {
			return false, false
		}
		w.ue(firstMB)
		w.ue(sliceType)
		w.ue(0)
		return ppsID != 0, true
	})
}
