package peer

// RemoteAllowed is remoteAllowed, for the external tests.
var RemoteAllowed = remoteAllowed

// NewPionLogger is newPionLogger, for the external tests.
var NewPionLogger = newPionLogger
