// Package web is sandboxd's browser UI: static files embedded in the binary. The
// page talks to the REST API with the key the user enters (kept in the tab's
// session storage) and opens terminals over WebSockets with single-use tickets.
// Its front-end libraries (xterm.js) come from npm at build time into vendor/.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static vendor
var files embed.FS

// Handler serves the UI: the page at "/", its own files under /static/, the
// npm libraries under /vendor/.
func Handler() http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/" {
			b, err := fs.ReadFile(files, "static/index.html")
			if err != nil {
				http.Error(w, "ui missing", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
			return
		}
		fileServer.ServeHTTP(w, r)
	})
}

// Built reports whether the npm libraries were embedded (scripts/web.sh ran
// before the build).
func Built() bool {
	_, err := fs.Stat(files, "vendor/xterm.js")
	return err == nil
}
