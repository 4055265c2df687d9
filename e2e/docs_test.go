package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bothy/bothy/internal/testenv"
)

// TestAPIDocsPage opens /docs in Chromium: Swagger UI, served from the binary
// under the UI's content security policy, renders every operation of
// /openapi.json.
func TestAPIDocsPage(t *testing.T) {
	browser := browserTest(t)
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY=e2e-docs-key-0123456789abcdefgh", "BOTHY_DEFAULT_IMAGE=bothy/busybox")

	res, err := http.Get(d.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || res.StatusCode != 200 || doc.OpenAPI != "3.1.0" {
		t.Fatalf("GET /openapi.json without a key: %d %v %.200s", res.StatusCode, err, b)
	}
	ops := 0
	for _, item := range doc.Paths {
		ops += len(item)
	}

	ctx, shot := newBrowser(t, browser)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.url+"/docs")); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".opblock").length`))
		return n
	}
	for deadline := time.Now().Add(time.Minute); count() < ops; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			shot("docs-failed.png")
			t.Fatalf("/docs shows %d operations, want %d", count(), ops)
		}
	}
	title, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(".info .title")||{}).textContent||""`))
	if len(title) < len("bothy") || title[:len("bothy")] != "bothy" {
		t.Errorf("title %q", title)
	}
	shot("docs.png")
}
