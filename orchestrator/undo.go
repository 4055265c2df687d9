package orchestrator

import (
	"context"
	"log/slog"
)

// undoStack records how to take back each step of a multi-step operation; on
// failure the steps are undone in reverse, on a context that ignores the
// caller's cancellation.
type undoStack struct {
	steps []func(context.Context) error
}

func (u *undoStack) push(fn func(context.Context) error) { u.steps = append(u.steps, fn) }

// run undoes everything pushed so far when *err is set.
func (u *undoStack) run(ctx context.Context, err *error, log *slog.Logger) {
	if *err == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for i := len(u.steps) - 1; i >= 0; i-- {
		if uerr := u.steps[i](ctx); uerr != nil {
			log.Warn("undo after failure", "err", uerr, "cause", *err)
		}
	}
}
