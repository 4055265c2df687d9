package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/bothy/bothy/agent/wire"
)

// ProcError is a process operation the agent refused, with its code
// (ProcNotFound, ProcInvalid, ProcConflict).
type ProcError struct {
	Code string
	Msg  string
}

func (e *ProcError) Error() string { return e.Msg }

// StartProc starts a background process.
func (c *Conn) StartProc(ctx context.Context, req wire.ProcStart) (wire.ProcInfo, error) {
	var a wire.ProcAnswer
	if err := c.call(ctx, wire.Request{Op: "proc_start", ProcStart: &req}, &a); err != nil {
		return wire.ProcInfo{}, err
	}
	if a.Error != "" || a.Info == nil {
		return wire.ProcInfo{}, &ProcError{Code: a.Code, Msg: a.Error}
	}
	return *a.Info, nil
}

// Proc runs op on a process (or, for ProcList, lists them).
func (c *Conn) Proc(ctx context.Context, op wire.ProcOp, req wire.ProcRequest) (wire.ProcAnswer, error) {
	var a wire.ProcAnswer
	if err := c.call(ctx, wire.Request{Op: string(op), Proc: &req}, &a); err != nil {
		return a, err
	}
	if a.Error != "" {
		return a, &ProcError{Code: a.Code, Msg: a.Error}
	}
	return a, nil
}

// logPiece bounds the output of one record ProcLogs hands on.
const logPiece = 4 << 10

// ProcLogs streams a process's output records to fn, from req.From, until
// the "end" record (which fn also gets), fn fails, or ctx is done. An
// output record's Data is good only until fn returns.
func (c *Conn) ProcLogs(ctx context.Context, req wire.ProcRequest, fn func(wire.ProcRecord) error) error {
	st, stop, err := c.open(ctx, wire.Request{Op: "proc_logs", Proc: &req})
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	fail := func(err error) error {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return orCanceled(ctx, err)
	}
	// Output comes in log frames, read a small piece at a time into one
	// buffer: a record's Data is good only until fn returns.
	buf := make([]byte, logPiece)
	var head [wire.LogHead]byte
	for {
		typ, n, err := wire.ReadFrameHeader(st)
		if err != nil {
			return fail(err)
		}
		if typ == wire.FrameLog {
			if n < wire.LogHead {
				return errors.New("agent: short log frame")
			}
			if _, err := io.ReadFull(st, head[:]); err != nil {
				return fail(err)
			}
			r := wire.ProcRecord{Type: "output", Stream: "stdout", Offset: int64(binary.BigEndian.Uint64(head[:8]))}
			if head[8] == 'E' {
				r.Stream = "stderr"
			}
			for left := n - wire.LogHead; left > 0; {
				k, err := io.ReadFull(st, buf[:min(left, logPiece)])
				if err != nil {
					return fail(err)
				}
				r.Data = buf[:k]
				if err := fn(r); err != nil {
					return err
				}
				r.Offset += int64(k)
				left -= uint32(k)
			}
			continue
		}
		if typ != wire.FrameJSON {
			return fmt.Errorf("agent: unexpected frame %q", typ)
		}
		payload, err := wire.ReadPayload(st, typ, n)
		if err != nil {
			return fail(err)
		}
		var r wire.ProcRecord
		if err := wire.DecodeFrame(payload, &r); err != nil {
			return err
		}
		if r.Type == "error" {
			return &ProcError{Code: wire.ProcNotFound, Msg: string(r.Data)}
		}
		if err := fn(r); err != nil {
			return err
		}
		if r.Type == "end" {
			return nil
		}
	}
}
