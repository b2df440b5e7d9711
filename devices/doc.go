// Package devices captures local cameras, microphones, screens and test
// patterns with pion/mediadevices, encodes them (H.264 with openh264, or x264
// with the x264 build tag; VP9 with libvpx and the vpx build tag, chosen by
// Config.VideoCodec; Opus) and delivers the encoded frames to a Sink. It is
// the capture leaf: it knows nothing of streams, WHIP or the fan-out. The
// capture agent (package agent) sends a capture to a remote gateway over
// WHIP; a local source (package sources) publishes it into a stream of this
// gateway.
//
// Drivers: videotest and audiotest (pure Go) are always present. With cgo the
// camera (V4L2) and microphone (miniaudio) drivers are linked in too; the
// screen driver needs libx11-dev and libxext-dev and is linked with the
// `screen` build tag. Without cgo there is no encoder: Open fails with
// ErrNoEncoder. A VP9 capture in a build without the vpx tag fails with
// ErrNoVP9. The x264 and vpx tags combine.
package devices
