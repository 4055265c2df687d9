package api

import "fmt"

// Error codes, one per HTTP status class bothy answers with.
const (
	CodeInvalidArgument  = "invalid_argument"   // 400
	CodeUnauthenticated  = "unauthenticated"    // 401
	CodeForbidden        = "forbidden"          // 403
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409
	CodeRateLimited      = "rate_limited"       // 429, with Retry-After
	CodeQuotaExceeded    = "quota_exceeded"     // 429: the key holds all its quota allows
	CodeTooLarge         = "payload_too_large"  // 413
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeInternal         = "internal"        // 500
	CodeNoSpace          = "no_space"        // 507
	CodeUnavailable      = "unavailable"     // 503
	CodeNotListening     = "not_listening"   // 502: nothing listens on a sandbox's port
	CodeNotImplemented   = "not_implemented" // 501: the runtime cannot do it (pause on Kubernetes)
	CodeCanceled         = "canceled"        // 499: the client went away first
)

// Error is the one shape every error takes on the wire, inside ErrorEnvelope.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
	// Status is the HTTP status the error came with (not sent).
	Status int `json:"-"`
	// RetryAfter is the Retry-After header's value in seconds, on a 429.
	RetryAfter int `json:"-"`
}

// ErrorEnvelope is the body of every error response.
type ErrorEnvelope struct {
	Error Error `json:"error"`
}

func (e *Error) Error() string {
	if e.RequestID != "" {
		return fmt.Sprintf("%s: %s (request %s)", e.Code, e.Message, e.RequestID)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}
