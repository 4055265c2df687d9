package wire

import (
	"fmt"
	"path"
	"strings"
)

// ScratchPath checks a run's file path, which is relative to the scratch
// directory, and returns it cleaned.
func ScratchPath(p string) (string, error) {
	clean := path.Clean(p)
	if p == "" || strings.ContainsRune(p, 0) || path.IsAbs(p) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("file path %q must be relative and stay inside the scratch directory", p)
	}
	return clean, nil
}
