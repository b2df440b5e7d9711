package devices

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pion/mediadevices/pkg/driver"
	_ "github.com/pion/mediadevices/pkg/driver/audiotest" // test tone, pure Go
	_ "github.com/pion/mediadevices/pkg/driver/videotest" // test pattern, pure Go
	"github.com/pion/mediadevices/pkg/prop"
)

// Device names understood by Open besides a device's ID or label.
const (
	VideoTest  = "videotest"  // colour bars with a noise corner (pure Go)
	AudioTest  = "audiotest"  // a 480 Hz tone (pure Go)
	Camera     = "camera"     // the first camera (V4L2; cgo builds)
	Microphone = "microphone" // the default microphone (cgo builds)
	Screen     = "screen"     // the first screen (builds with the screen tag)
	None       = "none"       // no track of this kind
)

// ErrNoDevice is returned (wrapped) when no device matches a name.
var ErrNoDevice = errors.New("no such device")

// DeviceInfo describes a capture device found on this machine.
type DeviceInfo struct {
	Kind  string // "video" or "audio"
	Type  string // camera, microphone, screen
	Name  string // what to pass to -video / -audio (or a config's video / audio)
	Label string
	ID    string // changes every run
}

// List returns the capture devices found on this machine, test sources first.
func List() []DeviceInfo {
	var out []DeviceInfo
	for _, d := range driver.GetManager().Query(func(driver.Driver) bool { return true }) {
		info := d.Info()
		di := DeviceInfo{Type: string(info.DeviceType), Label: info.Label, ID: d.ID(), Name: info.Label}
		switch {
		case driver.FilterVideoRecorder()(d):
			di.Kind = "video"
		case driver.FilterAudioRecorder()(d):
			di.Kind = "audio"
		default:
			continue
		}
		switch info.Label {
		case "VideoTest":
			di.Name = VideoTest
		case "AudioTest":
			di.Name = AudioTest
		default:
			if parts := strings.Split(info.Label, labelSeparator); len(parts) > 1 {
				di.Name = parts[len(parts)-1] // e.g. /dev/v4l/by-path/... or /dev/video0
			}
		}
		out = append(out, di)
	}
	rank := func(d DeviceInfo) int {
		if d.Name == VideoTest || d.Name == AudioTest {
			return 0
		}
		return 1
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // video first
		}
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		return a.Label < b.Label
	})
	return out
}

// CheckDevices resolves c's device names (not None) without opening them, so
// that a typo is found before anything is captured.
func (c *Config) CheckDevices() error {
	if c.Video != None {
		if _, err := findDriver("video", c.Video); err != nil {
			return err
		}
	}
	if c.Audio != None {
		if _, err := findDriver("audio", c.Audio); err != nil {
			return err
		}
	}
	return nil
}

// findDriver resolves a device name of the given kind ("video" or "audio").
func findDriver(kind, name string) (driver.Driver, error) {
	recorder := driver.FilterVideoRecorder()
	if kind == "audio" {
		recorder = driver.FilterAudioRecorder()
	}
	all := driver.GetManager().Query(recorder)
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].Info(), all[j].Info()
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Label < b.Label
	})
	lname := strings.ToLower(name)
	for _, d := range all {
		info := d.Info()
		switch lname {
		case VideoTest:
			if info.Label == "VideoTest" {
				return d, nil
			}
			continue
		case AudioTest:
			if info.Label == "AudioTest" {
				return d, nil
			}
			continue
		case Camera:
			if info.DeviceType == driver.Camera && info.Label != "VideoTest" {
				return d, nil
			}
			continue
		case Microphone:
			if info.DeviceType == driver.Microphone && info.Label != "AudioTest" {
				return d, nil
			}
			continue
		case Screen:
			if info.DeviceType == driver.Screen {
				return d, nil
			}
			continue
		}
		if d.ID() == name || strings.EqualFold(info.Label, name) || (info.Name != "" && strings.EqualFold(info.Name, name)) {
			return d, nil
		}
		for _, part := range strings.Split(info.Label, labelSeparator) {
			if part == name {
				return d, nil
			}
		}
	}
	hint := ""
	switch lname {
	case Camera, Microphone:
		if !cgoEnabled {
			hint = " (this binary was built without cgo: only videotest and audiotest exist)"
		}
	case Screen:
		if !screenBuilt {
			hint = " (screen capture needs a build with -tags screen and libx11-dev, libxext-dev)"
		}
	}
	return nil, fmt.Errorf("%w: %s %q%s; see gateway capture -list", ErrNoDevice, kind, name, hint)
}

// bestProp picks the device mode closest to the wanted one (W3C fitness
// distance, as getUserMedia does).
func bestProp(d driver.Driver, want prop.MediaConstraints) (prop.Media, error) {
	props := d.Properties()
	if len(props) == 0 {
		return prop.Media{}, fmt.Errorf("device %q reports no modes", d.Info().Label)
	}
	best, bestDist := -1, 0.0
	for i, p := range props {
		dist, ok := want.FitnessDistance(p)
		if !ok {
			continue
		}
		if best < 0 || dist < bestDist {
			best, bestDist = i, dist
		}
	}
	if best < 0 {
		best = 0
	}
	return props[best], nil
}

// labelSeparator separates the parts of a camera's label (camera.LabelSeparator).
const labelSeparator = ";"
