// Package devices captures local cameras, microphones, screens and test
// patterns with pion/mediadevices, encodes them (H.264 with openh264, or x264
// with the x264 build tag; VP9 with libvpx and the vpx build tag, chosen by
// Config.VideoCodec; Opus) and delivers the encoded frames either to a
// remote gateway over WHIP (Agent, the `gateway capture` subcommand) or
// straight into a local stream of this gateway (LocalSource: RTP packetized
// in-process, remuxed by remux.Stream, fanned out by mseout).
//
// Drivers: videotest and audiotest (pure Go) are always present. With cgo the
// camera (V4L2) and microphone (miniaudio) drivers are linked in too; the
// screen driver needs libx11-dev and libxext-dev and is linked with the
// `screen` build tag. Without cgo there is no encoder: Open fails with
// ErrNoEncoder. A VP9 capture in a build without the vpx tag fails with
// ErrNoVP9. The x264 and vpx tags combine.
package devices
