package testenv

import "net/http"

// Bearer is an HTTP client that adds key as a bearer token to every
// request (an MCP client's transport takes no headers of its own).
func Bearer(key string) *http.Client {
	return &http.Client{Transport: bearer{key, http.DefaultTransport}}
}

type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(r)
}
