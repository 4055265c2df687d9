package openapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTypeScriptClientCompiles generates TypeScript types from the document
// with openapi-typescript (a standard generator, from npm) and compiles
// ts/check.ts, a TypeScript user's calls, against them with tsc --strict.
func TestTypeScriptClientCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node")
	}
	tools, err := filepath.Abs("ts/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tools, "openapi-typescript", "package.json")); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatal("openapi-typescript is not installed: run make openapi-ts")
		}
		t.Skip("openapi-typescript is not installed (make openapi-ts)")
	}
	dir := t.TempDir()
	check, err := os.ReadFile("ts/check.ts")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"openapi.json": Document(), "check.ts": check} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) {
		cmd := exec.Command("node", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("node %v: %v\n%s", args, err, out)
		}
	}
	run(filepath.Join(tools, "openapi-typescript", "bin", "cli.js"), "openapi.json", "-o", "api.ts")
	run(filepath.Join(tools, "typescript", "bin", "tsc"), "--noEmit", "--strict", "--target", "es2022", "--module", "es2022",
		"--moduleResolution", "bundler", "check.ts")
}
