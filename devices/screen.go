//go:build screen && cgo

package devices

import _ "github.com/pion/mediadevices/pkg/driver/screen" // X11 screens (libx11-dev, libxext-dev)

const screenBuilt = true
