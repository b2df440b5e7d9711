//go:build !(screen && cgo)

package devices

const screenBuilt = false
