package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ExposePortRequest is the body of POST /v1/sandboxes/{id}/ports.
type ExposePortRequest struct {
	Port int `json:"port"`
	// Public ports need no token in their host-form URL.
	Public bool `json:"public,omitempty"`
}

// ExposedPort is an exposed port of a sandbox.
type ExposedPort struct {
	Port   int    `json:"port"`
	Public bool   `json:"public"`
	Token  string `json:"token"`
	// URL reaches the port through bothy: the host form
	// ({port}-{id}.{preview domain}, with the token) when bothy serves
	// one, otherwise the path form.
	URL string `json:"url"`
	// PathURL is the path form, with the API key.
	PathURL   string    `json:"path_url"`
	CreatedAt time.Time `json:"created_at"`
}

// PortList is the answer of GET /v1/sandboxes/{id}/ports.
type PortList struct {
	Ports []ExposedPort `json:"ports"`
}

// ExposePort records a port of sandbox id as exposed.
func (c *Client) ExposePort(ctx context.Context, id string, req ExposePortRequest) (ExposedPort, error) {
	var p ExposedPort
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/ports", nil, req, &p)
	return p, err
}

// ListPorts lists the exposed ports of sandbox id.
func (c *Client) ListPorts(ctx context.Context, id string) (PortList, error) {
	var l PortList
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(id)+"/ports", nil, nil, &l)
	return l, err
}

// UnexposePort forgets a port's exposure.
func (c *Client) UnexposePort(ctx context.Context, id string, port int) error {
	return c.do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id)+"/ports/"+strconv.Itoa(port), nil, nil, nil)
}

// WaitPort returns once something listens on port of sandbox id, or fails
// (502, not_listening) when timeout passes first.
func (c *Client) WaitPort(ctx context.Context, id string, port int, timeout time.Duration) error {
	path := "/v1/sandboxes/" + url.PathEscape(id) + "/ports/" + strconv.Itoa(port) + "/wait?timeout_ms=" + strconv.FormatInt(timeout.Milliseconds(), 10)
	return c.do(ctx, http.MethodGet, path, nil, nil, nil)
}

// PortURL is the path-form URL of path on port of sandbox id, reached with
// the API key.
func (c *Client) PortURL(id string, port int, path string) string {
	if len(path) == 0 || path[0] != '/' {
		path = "/" + path
	}
	return c.base + "/v1/sandboxes/" + url.PathEscape(id) + "/ports/" + strconv.Itoa(port) + path
}
