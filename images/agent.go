package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent/wire"
)

// AgentImage makes (once per binary) the image that carries the agent binary
// at wire.BinaryPath and nothing else, for runtimes that cannot mount it
// from the host: its one layer goes on top of the images sandboxes run
// (WithAgent), or a pod's init container copies the binary from it. Its tag
// is the hash of the binary and its path, so that a new agent is a new
// image.
func (b *Builder) AgentImage(ctx context.Context, binary string) (string, error) {
	f, err := os.Open(binary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	h.Write([]byte(wire.BinaryPath))
	size, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	ref := "bothy/agent:" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := b.eng.ImageInspect(ctx, ref); err == nil {
		b.setAgent(ref)
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
		var err error
		for _, dir := range []string{path.Dir(path.Dir(wire.BinaryPath)), path.Dir(wire.BinaryPath)} {
			if err == nil {
				err = tw.WriteHeader(&tar.Header{Name: dir[1:] + "/", Mode: 0o755, Typeflag: tar.TypeDir})
			}
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: wire.BinaryPath[1:], Mode: 0o755, Size: size, Typeflag: tar.TypeReg})
		}
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
	b.setAgent(ref)
	return ref, nil
}
