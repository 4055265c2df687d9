package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// ErrTooLarge: the sandbox's agent would have to hold more than its
// share of the sandbox's memory to answer (a capture of too many changed
// paths).
var ErrTooLarge = errors.New("too large for the sandbox's agent")

// Capture streams, as a layer (a tar with whiteouts), what changed in the
// sandbox's filesystem since since, a time before its container was made
// from the image whose paths are imagePaths (wire/capture.go): start is
// told the layer's size and answers where its bytes go.
func (c *Conn) Capture(ctx context.Context, since time.Time, imagePaths []string, start func(size int64) (io.Writer, error)) error {
	st, stop, err := c.open(ctx, wire.Request{Op: "capture", Capture: &wire.CaptureRequest{SinceNs: since.UnixNano()}})
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	out := wire.NewFrameSender(st)
	buf := make([]byte, 0, wire.CapturePathFrame)
	for _, p := range imagePaths {
		if len(buf) > 0 && len(buf)+len(p)+1 > wire.CapturePathFrame {
			if err := out.Send(wire.FrameStdin, buf); err != nil {
				return orCanceled(ctx, err)
			}
			buf = buf[:0]
		}
		buf = append(append(buf, p...), 0)
	}
	if len(buf) > 0 {
		if err := out.Send(wire.FrameStdin, buf); err != nil {
			return orCanceled(ctx, err)
		}
	}
	if err := out.Send(wire.FrameStdinEOF, nil); err != nil {
		return orCanceled(ctx, err)
	}
	var res wire.OpResult
	if err := wire.ReadJSON(st, &res); err != nil {
		return orCanceled(ctx, fmt.Errorf("capture: %w", err))
	}
	if res.Code == wire.CodeTooLarge {
		return fmt.Errorf("%w: %s", ErrTooLarge, res.Error)
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	var size wire.CaptureStart
	if err := wire.ReadJSON(st, &size); err != nil {
		return orCanceled(ctx, fmt.Errorf("capture: %w", err))
	}
	w, err := start(size.Bytes)
	if err != nil {
		return err
	}
	for {
		typ, n, err := wire.ReadFrameHeader(st)
		if err != nil {
			return orCanceled(ctx, fmt.Errorf("capture: %w", err))
		}
		if typ == wire.FrameStdout {
			werr, err := wire.CopyFrame(w, st, n)
			if werr != nil {
				return werr
			}
			if err != nil {
				return orCanceled(ctx, fmt.Errorf("capture: %w", err))
			}
			continue
		}
		payload, err := wire.ReadPayload(st, typ, n)
		if err != nil {
			return orCanceled(ctx, fmt.Errorf("capture: %w", err))
		}
		if typ != wire.FrameJSON {
			return fmt.Errorf("capture: unexpected frame %q", typ)
		}
		if err := wire.DecodeFrame(payload, &res); err != nil {
			return err
		}
		if res.Error != "" {
			return errors.New(res.Error)
		}
		return nil
	}
}
