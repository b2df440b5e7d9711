// Package webhooks owns the gateway's outgoing event notifications: signed
// HTTP POSTs to the operator's receivers (configs.Webhook), the Standard
// Webhooks way (https://www.standardwebhooks.com/): webhook-id,
// webhook-timestamp and webhook-signature ("v1," + base64 HMAC-SHA256 of
// id.timestamp.body) on a JSON body {"type", "timestamp", "data"}.
//
// It owns per receiver a bounded queue and one sending goroutine (in order,
// retries with exponential backoff, Retry-After, a timeout per attempt, no
// redirects), the once-a-second aggregation of viewer joins and leaves into
// viewers.changed events, the delivery counters, and Verify, which checks a
// delivery as a receiver would.
//
// It never blocks its callers: Emit, ViewerJoined and ViewerLeft only take a
// short mutex and enqueue; when a receiver's queue is full the oldest message
// is dropped (counted, and logged at most once every 10 s). A nil *Sender (no
// receivers configured) is valid: every method is a no-op.
package webhooks
