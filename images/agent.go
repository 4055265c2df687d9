package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	cerrdefs "github.com/containerd/errdefs"
)

// AgentPath is where the agent image keeps the agent binary.
const AgentPath = "/bothy-agent"

// AgentImage makes (once per binary) the image that carries the agent binary
// at AgentPath and nothing else, for runtimes that cannot mount it from the
// host: a pod's init container copies it from there. Its tag is the binary's
// hash, so that a new agent is a new image.
func (b *Builder) AgentImage(ctx context.Context, binary string) (string, error) {
	f, err := os.Open(binary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	ref := "bothy/agent:" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := b.eng.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: AgentPath[1:], Mode: 0o755, Size: size, Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.CopyN(tw, f, size)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	if err := b.eng.ImageImport(ctx, pr, ref, nil); err != nil {
		return "", fmt.Errorf("import the agent image: %w", err)
	}
	return ref, nil
}
