// Package orchestrator owns the life of sandboxes: their state machine, their
// rows in the SQLite store, the containers behind them (through a small runtime
// interface it declares), each sandbox's agent channel, reconciliation with the
// engine, the idle and TTL reaper, and one lifecycle operation at a time per
// sandbox.
//
// Data flows one way: the server calls the orchestrator with domain types; the
// orchestrator calls the runtime (containers, networks), the image builder and the
// agent channel. It never imports Echo or the Docker SDK.
package orchestrator
