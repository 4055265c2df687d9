// Package e2e tests the built binaries as a user runs them: bothy serving on
// a port, bothy calling it, sandboxes on the real engine, bothy killed and
// restarted.
package e2e
