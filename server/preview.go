package server

import (
	"crypto/subtle"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
)

// The host form reaches an exposed port at {port}-{id}.{preview domain},
// for browsers and apps that use absolute paths. A private port's token
// comes once as ?bothy_token=, and then as a cookie of that host only
// (named with the __Host- prefix over TLS, which browsers hold to exactly
// that: Secure, no Domain, Path=/). The preview host owns all of its
// paths: no route of bothy's own is answered there.
const (
	previewTokenParam  = "bothy_token"
	previewTokenCookie = "bothy_port_token"
	// previewTokenCookieTLS is the cookie's name over TLS.
	previewTokenCookieTLS = "__Host-bothy_port_token"
	// previewTokenHeader carries the token for clients that keep no cookies.
	previewTokenHeader = "X-Bothy-Port-Token"
)

// previewLabel is the first label of a preview host: port, then sandbox ID.
var previewLabel = regexp.MustCompile(`^([0-9]{1,5})-(sb-[0-9a-f]+)$`)

// previewHost parses host as {port}-{id}.{domain}. under says host lies
// under domain at all (the API's own host, domain itself, does not).
func previewHost(host, domain string) (id string, port int, under bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, ok := strings.CutSuffix(host, "."+domain)
	if domain == "" || !ok {
		return "", 0, false
	}
	m := previewLabel.FindStringSubmatch(label)
	if m == nil {
		return "", 0, true
	}
	port, _ = strconv.Atoi(m[1])
	return m[2], port, true
}

// previewServe serves a request to a preview host (front hands it over
// before routing, so that a preview host owns all of its paths): a route
// of its own, class proxy, under the same bounds as the API's.
func (s *Server) previewServe(c *echo.Context) error {
	return s.guard(s.classes().proxy, 0)(s.servePreview)(c)
}

// servePreview passes a request on to the port its host names when the
// port is exposed, and public or the request carries its token.
func (s *Server) servePreview(c *echo.Context) error {
	r := c.Request()
	id, port, _ := previewHost(r.Host, s.cfg.PreviewDomain)
	if id == "" {
		return newError(http.StatusNotFound, api.CodeNotFound, "not a preview host: want {port}-{sandbox id}."+s.cfg.PreviewDomain)
	}
	owner, p, err := s.deps.Ports.Exposure(r.Context(), id, port)
	if err != nil {
		return err
	}
	sc := bounds.From(r.Context())
	if err := sc.Sandbox(id); err != nil {
		return err
	}
	if err := sc.Anonymous(id, port); err != nil {
		return err
	}
	given := takeQueryToken(r)
	cookie := previewTokenCookie
	if isHTTPS(r) {
		cookie = previewTokenCookieTLS
	}
	if !p.Public {
		switch {
		case given != "" && sameToken(given, p.Token):
			// Host-only (no Domain), so no other preview host gets it.
			http.SetCookie(c.Response(), &http.Cookie{Name: cookie, Value: p.Token, Path: "/",
				HttpOnly: true, Secure: isHTTPS(r), SameSite: http.SameSiteLaxMode})
			// A browser's navigation is sent on without the token in its
			// address; other clients are answered at once.
			if r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate" {
				return c.Redirect(http.StatusSeeOther, r.URL.RequestURI())
			}
		case sameToken(r.Header.Get(previewTokenHeader), p.Token):
		case sameToken(cookieValue(r, cookie), p.Token):
		default:
			return newError(http.StatusUnauthorized, api.CodeUnauthenticated,
				"port "+strconv.Itoa(port)+" of sandbox "+id+" needs its token: open the URL once with ?"+previewTokenParam+"=TOKEN")
		}
	}
	r.Header.Del(previewTokenHeader)
	dropCookie(r, previewTokenCookie)
	dropCookie(r, previewTokenCookieTLS)
	return s.deps.Ports.Proxy(c.Response(), r, owner, id, port, r.URL.Path)
}

// takeQueryToken removes the port's token from r's query, where a browser
// brings it, and returns it: the token is bothy's, not the server's, and
// is not passed on.
func takeQueryToken(r *http.Request) string {
	query := r.URL.Query()
	if !query.Has(previewTokenParam) {
		return ""
	}
	given := query.Get(previewTokenParam)
	query.Del(previewTokenParam)
	r.URL.RawQuery = query.Encode()
	return given
}

// sameToken compares a given token with the port's in constant time.
func sameToken(given, token string) bool {
	return given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1
}

// cookieValue is the value of r's cookie name, or "".
func cookieValue(r *http.Request, name string) string {
	if ck, err := r.Cookie(name); err == nil {
		return ck.Value
	}
	return ""
}

// dropCookie removes cookie name from r's Cookie headers, keeping the others.
func dropCookie(r *http.Request, name string) {
	if cookieValue(r, name) == "" {
		return
	}
	var keep []string
	for _, ck := range r.Cookies() {
		if ck.Name != name {
			keep = append(keep, ck.Name+"="+ck.Value)
		}
	}
	r.Header.Del("Cookie")
	if len(keep) > 0 {
		r.Header.Set("Cookie", strings.Join(keep, "; "))
	}
}
