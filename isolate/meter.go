package isolate

import (
	"github.com/bothy/bothy/supervisor"
)

// Admitter admits a run or an invoke against its key's (and app's) rates and
// concurrency; release ends it.
type Admitter interface {
	Admit(key, app string, appRate supervisor.Rate) (release func(), err error)
}

// Recorder keeps the usage ledger.
type Recorder interface {
	Record(e supervisor.Entry)
}

// excerptBytes is how much of a run's output the ledger keeps.
const excerptBytes = 8 << 10

// excerpt keeps the start of a run's output, and counts all of it.
type excerpt struct {
	out, err headWriter
}

// headWriter keeps the first excerptBytes written to it.
type headWriter struct {
	head []byte
	n    int64
}

func (h *headWriter) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	if room := excerptBytes - len(h.head); room > 0 {
		h.head = append(h.head, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// runEntry is the ledger's record of a run.
func runEntry(owner string, o RunOptions, r RunOutput) supervisor.Entry {
	in := int64(len(o.Code) + len(o.Stdin))
	for _, f := range o.Files {
		in += int64(len(f.Data))
	}
	out := r.excerpt.out.n + r.excerpt.err.n
	for _, f := range r.Files {
		out += int64(len(f.Data))
	}
	text := string(r.excerpt.out.head)
	text += string(r.excerpt.err.head[:min(len(r.excerpt.err.head), excerptBytes-len(text))])
	return supervisor.Entry{
		Key: owner, Kind: "run", App: o.Runtime, Status: r.ExitCode, DurationMs: r.WallMs, CPUMs: r.CPUMs,
		BytesIn: in, BytesOut: out, Output: text, Truncated: r.Truncated,
		Failed: r.ExitCode != 0 || r.TimedOut || r.OOMKilled, Error: r.Failure(),
	}
}

// Failure says, in a few words, how a run that did not exit by itself ended;
// empty if it did.
func (r RunOutput) Failure() string {
	switch {
	case r.TimedOut:
		return "timed out"
	case r.OOMKilled:
		return "killed: out of memory"
	case r.Signal != "":
		return "killed by " + r.Signal
	}
	return ""
}
