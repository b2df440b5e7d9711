// Package bitstream holds bitstream facts that remux, capture and the test kits
// share: Annex-B NAL unit splitting, H.264 and VP9 keyframe tests, H.264
// parameter set id normalization. It is pure (no I/O, nothing of ours
// imported) and fuzzed: go test -fuzz FuzzX ./bitstream/.
package bitstream
