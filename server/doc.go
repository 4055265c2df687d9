// Package server is bothy's HTTP front door: the Echo app with its
// middleware (recover, request IDs, request logs, body limits, API-key auth), the
// route table, the one error handler that writes the JSON error envelope, and
// the conversions between domain types and the wire types of package api. It
// holds no state and never talks to Docker.
package server
