// Package devices will own local capture with pion/mediadevices: cameras,
// microphones, screens and test patterns, published into a local stream hub
// or to a remote gateway over WHIP (the capture agent). It is not built yet:
// see the capture-agent issue.
package devices
