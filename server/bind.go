package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v5"
)

// bind decodes a JSON body into v strictly: unknown fields, trailing data and
// wrong types are 400s naming the problem; an over-limit body is a 413. An empty
// body leaves v as it is when emptyOK. A body sent as curl -d sends it (as a
// form) is read as JSON too; other media types are refused.
func bind(c *echo.Context, v any, emptyOK bool) error {
	req := c.Request()
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return echo.ErrUnsupportedMediaType
		}
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		var sc echo.HTTPStatusCoder
		if errors.As(err, &sc) {
			return err
		}
		return badRequest("could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("a JSON body is required")
	}
	// JSON is UTF-8 (RFC 8259); the decoder would turn other bytes into
	// U+FFFD without a word.
	if !utf8.Valid(body) {
		return badRequest("malformed JSON: the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badRequest(describeJSONError(err))
	}
	if dec.More() {
		return badRequest("malformed JSON: trailing data after the object")
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		return badRequest(describeJSONError(err))
	}
	if name := unknownField(reflect.TypeOf(v), generic, ""); name != "" {
		return badRequest(fmt.Sprintf("unknown field %q", name))
	}
	return nil
}

// unknownField names the first member of the JSON value v that type t has no
// field for ("" if there is none), as encoding/json would match it: by its
// json tag or name, without regard to case.
func unknownField(t reflect.Type, v any, prefix string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		fields := jsonFields(t)
		for name, member := range obj {
			f, ok := fields[strings.ToLower(name)]
			if !ok {
				return prefix + name
			}
			if bad := unknownField(f, member, prefix+name+"."); bad != "" {
				return bad
			}
		}
	case reflect.Slice, reflect.Array:
		if list, ok := v.([]any); ok {
			for i, e := range list {
				if bad := unknownField(t.Elem(), e, fmt.Sprintf("%s%d.", prefix, i)); bad != "" {
					return bad
				}
			}
		}
	case reflect.Map:
		if obj, ok := v.(map[string]any); ok {
			for k, e := range obj {
				if bad := unknownField(t.Elem(), e, prefix+k+"."); bad != "" {
					return bad
				}
			}
		}
	}
	return ""
}

// jsonFields maps the lower-cased JSON names of t's fields (those of embedded
// structs included) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = f.Type
	}
	return out
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of body"
	}
	return "malformed JSON: " + err.Error()
}
