// Package cluster joins several gateways into one namespace of streams over
// NATS (issue 11, docs/CLUSTER.md). This piece owns three things:
//
//   - The node's NATS connection (Start, Close): servers, name, credentials
//     and TLS from configs.Cluster; it reconnects forever with backoff and
//     Start succeeds while NATS is down, so local streams keep working and
//     the directory reports itself unavailable (ErrUnavailable, Healthy).
//   - An optional embedded nats-server with JetStream (cluster.embedded):
//     client port, cluster port and routes, so that three gateways form a
//     NATS cluster with no other process. Its client port requires the
//     node's own user/password or token, its route port the route
//     user/password, and both take TLS (mutual on routes); a port open
//     beyond loopback without authentication is refused at start.
//   - The directory: two JetStream key-value buckets, mseway_nodes (node id
//     -> NodeInfo) and mseway_streams (stream name -> StreamInfo), each entry
//     renewed every heartbeat and gone after the TTL when its node stops
//     renewing it. A node claims a name cluster-wide (Claim, Announce) with
//     revision-checked writes, so two nodes never both hold a name for longer
//     than one TTL: the node that loses a name stops renewing it and is told
//     through Options.OnLost. Every node watches both buckets and keeps
//     in-memory views (Nodes, Streams, Lookup) with a change notification
//     (Changed).
//
// A node cut off from NATS cannot renew its claims nor learn of a takeover:
// it keeps its local publications (local viewers keep watching), its entries
// lapse after the TTL, and at the reconnection each claim is written again if
// the name is still free, or given up (OnLost) if another node took it.
//
// Expiry: nats-server sends watchers nothing when a bucket's TTL (MaxAge)
// removes an entry, unless the bucket has limit markers (LimitMarkerTTL,
// nats-server 2.11+). The buckets this package creates have them; the views
// also drop, on a timer, entries not renewed for one TTL (measured on this
// node's clock from when the renewal was seen, so clock skew between nodes
// does not matter), which covers buckets made without markers and older
// servers.
//
// Replicas: a bucket is created with 1 replica on a single server, and with 3
// when the NATS server is clustered (falling back to 1 with a warning when
// three peers cannot be placed after a grace period, and raised to 3 at the
// next connection when they can). A bucket that exists is used as it is: its
// TTL is the first creator's.
//
// The package imports configs and ratelog of this module and nothing of its
// HTTP or media packages; internal/gateway wires it.
package cluster
