// Package e2e tests the built binaries as a user runs them: sandboxd serving on
// a port, sbx calling it, sandboxes on the real engine, sandboxd killed and
// restarted.
package e2e
