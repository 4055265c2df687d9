package openapi

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestDocumentValidates loads the document with kin-openapi and validates it
// as OpenAPI 3.1.
func TestDocumentValidates(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(Document())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.IsOpenAPI32OrLater() {
		t.Fatalf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOperationIDsUnique: generators name methods after operationId.
func TestOperationIDsUnique(t *testing.T) {
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(Document(), &d); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for path, item := range d.Paths {
		for method, op := range item {
			if op.OperationID == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
			if prev, ok := seen[op.OperationID]; ok {
				t.Errorf("operationId %s used by %s and %s %s", op.OperationID, prev, method, path)
			}
			seen[op.OperationID] = method + " " + path
		}
	}
}

func TestTemplatePath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/sandboxes/:id/ports/:port/*": "/v1/sandboxes/{id}/ports/{port}/{path}",
		"/v1/images/*":                    "/v1/images/{path}",
		"/healthz":                        "/healthz",
	} {
		if got := TemplatePath(in); got != want {
			t.Errorf("TemplatePath(%q) = %q, want %q", in, got, want)
		}
	}
}
