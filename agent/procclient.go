package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProcOp names an operation on a background process.
type ProcOp string

// The operations on background processes (proc_start and proc_logs have
// methods of their own).
const (
	ProcList   ProcOp = "proc_list"
	ProcGet    ProcOp = "proc_get"
	ProcSignal ProcOp = "proc_signal"
	ProcKill   ProcOp = "proc_kill"
	ProcStdin  ProcOp = "proc_stdin"
	ProcWait   ProcOp = "proc_wait"
)

// ProcError is a process operation the agent refused, with its code
// (ProcNotFound, ProcInvalid, ProcConflict).
type ProcError struct {
	Code string
	Msg  string
}

func (e *ProcError) Error() string { return e.Msg }

// StartProc starts a background process.
func (c *Conn) StartProc(ctx context.Context, req ProcStart) (ProcInfo, error) {
	var a ProcAnswer
	if err := c.call(ctx, Request{Op: "proc_start", ProcStart: &req}, &a); err != nil {
		return ProcInfo{}, err
	}
	if a.Error != "" || a.Info == nil {
		return ProcInfo{}, &ProcError{Code: a.Code, Msg: a.Error}
	}
	return *a.Info, nil
}

// Proc runs op on a process (or, for ProcList, lists them).
func (c *Conn) Proc(ctx context.Context, op ProcOp, req ProcRequest) (ProcAnswer, error) {
	var a ProcAnswer
	if err := c.call(ctx, Request{Op: string(op), Proc: &req}, &a); err != nil {
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
func (c *Conn) ProcLogs(ctx context.Context, req ProcRequest, fn func(ProcRecord) error) error {
	st, stop, err := c.open(ctx, Request{Op: "proc_logs", Proc: &req})
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	// Output comes in log frames, read a small piece at a time into one
	// buffer: a record's Data is good only until fn returns.
	buf := make([]byte, logPiece)
	var head [logHead]byte
	for {
		typ, n, err := readFrameHeader(st)
		if err != nil {
			return fail(err)
		}
		if typ == frameLog {
			if n < logHead {
				return errors.New("agent: short log frame")
			}
			if _, err := io.ReadFull(st, head[:]); err != nil {
				return fail(err)
			}
			r := ProcRecord{Type: "output", Stream: "stdout", Offset: int64(binary.BigEndian.Uint64(head[:8]))}
			if head[8] == 'E' {
				r.Stream = "stderr"
			}
			for left := n - logHead; left > 0; {
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
		if typ != frameJSON {
			return fmt.Errorf("agent: unexpected frame %q", typ)
		}
		payload, err := readPayload(st, typ, n)
		if err != nil {
			return fail(err)
		}
		var r ProcRecord
		if err := decodeFrame(payload, &r); err != nil {
			return err
		}
		if r.Type == "error" {
			return &ProcError{Code: ProcNotFound, Msg: string(r.Data)}
		}
		if err := fn(r); err != nil {
			return err
		}
		if r.Type == "end" {
			return nil
		}
	}
}
