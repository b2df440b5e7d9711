package main

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/mseway/mseway/devices"
)

// buildInfo is what -version prints: this binary's build.
func buildInfo() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{GoVersion: runtime.Version()}
	}
	return formatBuildInfo(bi, captureEncoders())
}

// formatBuildInfo renders a build as "key: value" lines: the main module
// and its version, the VCS revision, time and whether the tree was
// modified, the Go version and platform, cgo and build tags, and the
// capture encoders linked in. What the build does not record is "unknown".
func formatBuildInfo(bi *debug.BuildInfo, encoders string) string {
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	get := func(key, unknown string) string {
		if v := settings[key]; v != "" {
			return v
		}
		return unknown
	}
	path, version := bi.Main.Path, bi.Main.Version
	if path == "" {
		path = "github.com/mseway/mseway"
	}
	if version == "" {
		version = "(devel)"
	}
	cgo := "false"
	if settings["CGO_ENABLED"] == "1" {
		cgo = "true"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gateway %s\n", version)
	fmt.Fprintf(&b, "module: %s %s\n", path, version)
	fmt.Fprintf(&b, "vcs.revision: %s\n", get("vcs.revision", "unknown"))
	fmt.Fprintf(&b, "vcs.time: %s\n", get("vcs.time", "unknown"))
	fmt.Fprintf(&b, "vcs.modified: %s\n", get("vcs.modified", "unknown"))
	fmt.Fprintf(&b, "go: %s %s/%s\n", bi.GoVersion, get("GOOS", runtime.GOOS), get("GOARCH", runtime.GOARCH))
	fmt.Fprintf(&b, "cgo: %s\n", cgo)
	fmt.Fprintf(&b, "tags: %s\n", get("-tags", "none"))
	fmt.Fprintf(&b, "capture encoders: %s\n", encoders)
	return b.String()
}

// captureEncoders names the encoders of `gateway capture` and local sources
// in this build: none without cgo; else H.264 (openh264 or x264), Opus, and
// VP9 with the vpx tag.
func captureEncoders() string {
	probe := devices.Config{Video: devices.None}
	if errors.Is(probe.CheckBuild(), devices.ErrNoEncoder) {
		return "none (built without cgo: no capture, local sources skipped)"
	}
	vp9 := "vp9 none (build with -tags vpx)"
	if devices.VP9Encoder != "" {
		vp9 = "vp9 " + devices.VP9Encoder
	}
	return fmt.Sprintf("h264 %s, opus, %s", devices.H264Encoder, vp9)
}
