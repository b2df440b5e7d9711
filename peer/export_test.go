package peer

// RemoteAllowed is remoteAllowed, for the external tests.
var RemoteAllowed = remoteAllowed
