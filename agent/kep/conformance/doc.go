// Package conformance holds the conformance test of KEP-539.2's "Core"
// level, written from agent-sandbox's spec and driven with its own
// generated gRPC client, against a runtime named by SANDBOXD_REST_ADDR and
// SANDBOXD_GRPC_ADDR (or, without them, a bothy-agent it starts in this
// process's stead on loopback ports).
package conformance
