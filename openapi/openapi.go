// Package openapi describes bothy's REST API as an OpenAPI 3.1 document,
// built from the api package's wire types (so the schemas cannot drift from
// what the server encodes) and a table of the routes, which the server's
// tests hold to its router both ways.
package openapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/bothy/bothy/api"
)

// Route is one method and path of the API as the router writes it.
type Route struct{ Method, Path string }

// Routes lists every route the document describes; Method "ANY" stands for a
// route that takes every method.
func Routes() []Route {
	out := make([]Route, 0, len(operations))
	for _, o := range operations {
		out = append(out, Route{o.Method, o.Path})
	}
	return out
}

// anyMethods are the methods written for a route that takes any.
var anyMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Document returns the document as JSON.
var Document = sync.OnceValue(func() []byte {
	b, err := json.MarshalIndent(build(), "", "  ")
	if err != nil {
		panic(err)
	}
	return b
})

// TemplatePath turns a router path (":id", "*") into an OpenAPI path
// template ("{id}", "{path}").
func TemplatePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		switch {
		case strings.HasPrefix(s, ":"):
			parts[i] = "{" + s[1:] + "}"
		case s == "*":
			parts[i] = "{path}"
		}
	}
	return strings.Join(parts, "/")
}

func build() map[string]any {
	s := &schemas{components: map[string]any{}}
	errRef := s.of(api.ErrorEnvelope{})
	paths := map[string]map[string]any{}
	for _, o := range operations {
		tp := TemplatePath(o.Path)
		item := paths[tp]
		if item == nil {
			item = map[string]any{}
			paths[tp] = item
		}
		methods := []string{o.Method}
		if o.Method == "ANY" {
			methods = anyMethods
		}
		for _, m := range methods {
			op := operation(s, o, tp, errRef)
			if len(methods) > 1 {
				op["operationId"] = o.ID + strings.ToUpper(m[:1]) + strings.ToLower(m[1:])
			}
			item[strings.ToLower(m)] = op
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "bothy",
			"version": "v1",
			"summary": "Sandboxes for AI agents on a Docker engine: persistent containers with exec, files, processes, ports, terminals and snapshots; code runs in warm runners; small apps with their own SQLite.",
			"description": "Every /v1 route takes an API key as `Authorization: Bearer KEY`. Errors always have the shape `{\"error\": {\"code\", \"message\", \"request_id\"}}`; " +
				"429 answers carry Retry-After. MCP is served at /mcp and E2B's API beside this one (docs/mcp.md, docs/e2b.md).",
			"license": map[string]any{"name": "Apache-2.0", "identifier": "Apache-2.0"},
		},
		"servers":  []any{map[string]any{"url": "/"}},
		"security": []any{map[string]any{"bearer": []string{}}},
		"paths":    paths,
		"components": map[string]any{
			"schemas": s.components,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "A bothy API key (bothy key create, or the admin key bothyd prints at first start)."},
				"portToken": map[string]any{"type": "apiKey", "in": "header", "name": "X-Bothy-Port-Token",
					"description": "An exposed port's token (POST /v1/sandboxes/{id}/ports answers it), for requests to that port only."},
			},
			"responses": map[string]any{
				"Error": map[string]any{"description": "An error; code says which.", "content": map[string]any{"application/json": map[string]any{"schema": errRef}}},
			},
		},
		"tags": tags(),
	}
}

func tags() []any {
	var out []any
	seen := map[string]bool{}
	for _, o := range operations {
		if !seen[o.Tag] {
			seen[o.Tag] = true
			out = append(out, map[string]any{"name": o.Tag})
		}
	}
	return out
}

func operation(s *schemas, o op, tp string, errRef map[string]any) map[string]any {
	out := map[string]any{"operationId": o.ID, "summary": o.Summary, "tags": []string{o.Tag}}
	if o.Description != "" {
		out["description"] = o.Description
	}
	switch {
	case o.Public:
		out["security"] = []any{}
	case o.PortToken:
		out["security"] = []any{map[string]any{"bearer": []string{}}, map[string]any{"portToken": []string{}}, map[string]any{}}
	}
	var params []any
	for _, name := range pathNames(tp) {
		p := map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}}
		if name == "path" {
			p["description"] = "The rest of the path; it may hold slashes."
		}
		params = append(params, p)
	}
	for _, p := range o.Query {
		params = append(params, parameter(p, "query"))
	}
	for _, p := range o.Headers {
		params = append(params, parameter(p, "header"))
	}
	if params != nil {
		out["parameters"] = params
	}
	switch {
	case o.Body != nil:
		out["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": s.of(o.Body)}}}
	case o.BodyMedia != "":
		out["requestBody"] = map[string]any{"content": map[string]any{o.BodyMedia: map[string]any{"schema": map[string]any{}}}}
	}
	responses := map[string]any{"default": map[string]any{"$ref": "#/components/responses/Error"}}
	if o.Socket {
		responses["101"] = map[string]any{"description": "Switching to the WebSocket protocol."}
	} else {
		responses[strconv.Itoa(o.Status)] = answer(s, o, http.StatusText(o.Status))
	}
	for status, desc := range o.Also {
		if status >= 400 {
			responses[strconv.Itoa(status)] = map[string]any{"description": desc, "content": answer(s, o, desc)["content"]}
			continue
		}
		responses[strconv.Itoa(status)] = answer(s, o, desc)
	}
	out["responses"] = responses
	return out
}

// answer is an operation's success response.
func answer(s *schemas, o op, desc string) map[string]any {
	content := map[string]any{}
	if o.Out != nil {
		content["application/json"] = map[string]any{"schema": s.of(o.Out)}
	}
	if o.OutMedia != "" {
		content[o.OutMedia] = map[string]any{"schema": map[string]any{}}
	}
	for media, v := range o.Streams {
		m := map[string]any{"schema": map[string]any{}}
		if v != nil {
			// One item per line (NDJSON) or per event (SSE); OpenAPI 3.1 has
			// no item schema for a stream, so it is an extension.
			m = map[string]any{"schema": map[string]any{"type": "string"}, "x-item-schema": s.of(v)}
		}
		content[media] = m
	}
	out := map[string]any{"description": desc}
	if len(content) > 0 {
		out["content"] = content
	}
	return out
}

func parameter(p param, in string) map[string]any {
	schema := map[string]any{"type": p.Type}
	if p.Repeated {
		schema = map[string]any{"type": "array", "items": map[string]any{"type": p.Type}}
	}
	out := map[string]any{"name": p.Name, "in": in, "schema": schema}
	if p.Required {
		out["required"] = true
	}
	if p.Repeated {
		out["explode"] = true
	}
	if p.Description != "" {
		out["description"] = p.Description
	}
	return out
}

func pathNames(tp string) []string {
	var out []string
	for s := range strings.SplitSeq(tp, "/") {
		if strings.HasPrefix(s, "{") {
			out = append(out, strings.Trim(s, "{}"))
		}
	}
	return out
}
