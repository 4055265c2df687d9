package wire

// Capture: the agent streams what changed in its sandbox's filesystem since
// the container was made, as an image layer (a tar with whiteouts for what
// was deleted), for a checkpoint that needs no engine commit.
//
// The host sends the request (op "capture"), then the paths of the image
// the container was made from, NUL-separated, in FrameStdin frames that
// each hold whole paths, then FrameStdinEOF. The agent answers an OpResult
// (an error ends the stream there), then a CaptureStart with the layer's
// size, then the layer's tar bytes in FrameStdout frames, then an OpResult
// frame that says whether the layer is whole. The size comes first so that
// the host can stream the layer on into an image archive as it comes.

// CaptureRequest asks for a sandbox's changes, for op "capture".
type CaptureRequest struct {
	// SinceNs is a time, in nanoseconds of the Unix epoch, from before the
	// container was made: what its image holds was changed before it, and
	// everything changed in the container after it (a change sets a file's
	// ctime, which nothing in the sandbox can set back).
	SinceNs int64 `json:"since_ns"`
}

// CaptureStart is the size in bytes of the layer that follows.
type CaptureStart struct {
	Bytes int64 `json:"bytes"`
}

// Bounds of a capture.
const (
	// MaxCapturePaths bounds the bytes of the image's path list.
	MaxCapturePaths = 64 << 20
	// CapturePathFrame bounds one frame of the path list.
	CapturePathFrame = 1 << 20
)
