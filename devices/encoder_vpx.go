//go:build cgo && vpx

package devices

// #cgo pkg-config: vpx
// #include <vpx/vpx_encoder.h>
// #include <vpx/vp8cx.h>
//
// // Re-initializes an encoder context in place with cfg in a microsecond
// // time base, then sets its speed. 0 on success, else the failing step.
// static int mseway_vp9_retune(void *ctx, void *cfg, int cpu_used) {
//   vpx_codec_ctx_t *c = (vpx_codec_ctx_t *)ctx;
//   vpx_codec_enc_cfg_t *ec = (vpx_codec_enc_cfg_t *)cfg;
//   vpx_codec_iface_t *iface = c->iface;
//   if (iface == NULL || vpx_codec_destroy(c) != VPX_CODEC_OK) return 1;
//   ec->g_timebase.num = 1;
//   ec->g_timebase.den = 1000000;
//   if (vpx_codec_enc_init(c, iface, ec, 0) != VPX_CODEC_OK) return 2;
//   if (vpx_codec_control(c, VP8E_SET_CPUUSED, cpu_used) != VPX_CODEC_OK) return 3;
//   return 0;
// }
import "C"

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/vpx"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
)

// VP9Encoder names the VP9 encoder linked into this build ("" without the
// vpx build tag).
const VP9Encoder = "libvpx"

// vp9CPUUsed is libvpx's speed setting for real time (0 slowest .. 9
// fastest); WebRTC uses 5-7. libvpx's default, 0, encodes 640x480 at about
// 8 frames/s on one core of the CI machine.
const vp9CPUUsed = 7

// newVP9Encoder builds the VP9 encoder (profile 0: 8-bit 4:2:0). keyint is
// the keyframe period in frames (0: only on request, approximated by a very
// long period).
func newVP9Encoder(r video.Reader, p prop.Media, bitrate, keyint int) (codec.ReadCloser, error) {
	params, err := vpx.NewVP9Params()
	if err != nil {
		return nil, err
	}
	params.BitRate = bitrate
	if keyint <= 0 {
		keyint = 1 << 20
	}
	params.KeyFrameInterval = keyint
	// Real time: constant bit rate, and no look-ahead, so that each frame
	// comes out of the encoder as it goes in (no hidden alt-ref frames or
	// superframes, a keyframe request applies to the very next frame).
	params.RateControlEndUsage = vpx.RateControlCBR
	params.LagInFrames = 0
	enc, err := params.BuildVideoEncoder(r, p)
	if err != nil {
		return nil, err
	}
	if err := retuneVP9(enc); err != nil {
		_ = enc.Close()
		return nil, err
	}
	return enc, nil
}

// retuneVP9 fixes two things mediadevices v0.10.0 does not let us set on its
// libvpx encoder, before its first frame:
//   - it initializes libvpx with a millisecond time base but passes frame
//     times in microseconds, so libvpx's rate control sees frames 1000 times
//     longer than they are and misses the target bit rate by far (4.7 Mbit/s
//     for 1 Mbit/s at 640x480, 30 fps). The encoder is re-initialized in
//     place with the same configuration in a microsecond time base (the
//     configuration is the one mediadevices keeps and sets again at every
//     frame, so the two agree);
//   - the speed (VP8E_SET_CPUUSED) stays at libvpx's slowest, 0.
//
// It reaches the encoder's unexported codec context and configuration by
// reflection; a mediadevices upgrade that changes them makes this an error
// (and TestCaptureVP9Keyframes fail), not a silent regression.
func retuneVP9(enc codec.ReadCloser) error {
	v := reflect.ValueOf(enc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("vpx: unexpected encoder type %T (mediadevices changed?)", enc)
	}
	ctx, cfg := v.Elem().FieldByName("codec"), v.Elem().FieldByName("cfg")
	if ctx.Kind() != reflect.Pointer || cfg.Kind() != reflect.Pointer || ctx.IsNil() || cfg.IsNil() ||
		ctx.Type().Elem().Size() != unsafe.Sizeof(C.vpx_codec_ctx_t{}) ||
		cfg.Type().Elem().Size() != unsafe.Sizeof(C.vpx_codec_enc_cfg_t{}) {
		return fmt.Errorf("vpx: encoder %T has no libvpx context and configuration where expected (mediadevices changed?)", enc)
	}
	if rc := C.mseway_vp9_retune(ctx.UnsafePointer(), cfg.UnsafePointer(), vp9CPUUsed); rc != 0 {
		return fmt.Errorf("vpx: re-initializing the VP9 encoder failed (step %d)", int(rc))
	}
	return nil
}
