// Package record owns recordings: it keeps streams as fragmented MP4 files
// (the init segment, then the fragments exactly as viewers get them), cut at
// keyframes every segment duration and at every new init, deletes them by
// age and total size, lists them, and reads a time range of them back as
// one fMP4 (Clip) for the HTTP API.
//
// A recorder taps a stream hub like a viewer (an Output the gateway attaches
// through mseout.Registry.Attach): it only queues what the hub hands it,
// bounded, and writes on a goroutine of its own, so a slow or full disk
// stops that stream's recording (logged, counted) and never touches live
// viewers. Every fragment is written whole with one write and the file is
// synced on a schedule: a process killed mid-recording leaves every file
// playable up to its last complete fragment.
package record
