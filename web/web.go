// Package web is bothy's browser UI: static files embedded in the binary. The
// page talks to the REST API with the key the user enters (kept in the
// browser's local storage, for every tab, until "Forget key") and opens
// terminals over WebSockets with single-use tickets.
// Its front-end libraries (xterm.js, Swagger UI) come from npm at build time
// into vendor/.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static vendor
var files embed.FS

// Handler serves the UI: the page at "/", the API reference at "/docs" (Swagger
// UI reading /openapi.json), their own files under /static/, the npm libraries
// under /vendor/.
func Handler() http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		page := map[string]string{"/": "static/index.html", "/docs": "static/docs.html"}[r.URL.Path]
		if page != "" {
			b, err := fs.ReadFile(files, page)
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
