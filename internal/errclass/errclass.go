// Package errclass classifies an error with containerd/errdefs classes while
// keeping its cause: errors.Is finds both, and the text keeps the cause's.
package errclass

type classified struct {
	msg    string
	causes []error
}

func (e *classified) Error() string   { return e.msg }
func (e *classified) Unwrap() []error { return e.causes }

// Wrap returns "msg: cause" classified as class (an errdefs error such as
// errdefs.ErrUnavailable); errors.Is and errors.As also see cause.
func Wrap(class, cause error, msg string) error {
	if cause == nil {
		return &classified{msg: msg, causes: []error{class}}
	}
	return &classified{msg: msg + ": " + cause.Error(), causes: []error{class, cause}}
}

// New returns an error with text msg that is each of classes for errors.Is.
func New(msg string, classes ...error) error {
	return &classified{msg: msg, causes: classes}
}
