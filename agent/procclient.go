package agent

import (
	"context"
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

// ProcLogs streams a process's output records to fn, from req.From, until
// the "end" record (which fn also gets), fn fails, or ctx is done.
func (c *Conn) ProcLogs(ctx context.Context, req ProcRequest, fn func(ProcRecord) error) error {
	st, stop, err := c.open(ctx, Request{Op: "proc_logs", Proc: &req})
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	for {
		var r ProcRecord
		if err := readJSON(st, &r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
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
