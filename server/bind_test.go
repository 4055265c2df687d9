package server

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestUnknownFieldIsFoundAtAnyDepth(t *testing.T) {
	type inner struct {
		Path string `json:"path"`
	}
	type Embedded struct {
		Shared int `json:"shared"`
	}
	type req struct {
		Embedded
		Name   string           `json:"name,omitempty"`
		Plain  int              // matched by its Go name
		Skip   string           `json:"-"`
		Files  []inner          `json:"files"`
		ByName map[string]inner `json:"by_name"`
		Ptr    *inner           `json:"ptr"`
		Any    any              `json:"any"`
	}
	for body, want := range map[string]string{
		`{"name":"x","NAME":"y","plain":1,"shared":2,"any":{"whatever":1}}`: "",
		`{"nmae":"x"}`:                         "nmae",
		`{"Skip":"x"}`:                         "Skip",
		`{"files":[{"path":"a"},{"pth":"b"}]}`: "files.1.pth",
		`{"by_name":{"k":{"oops":1}}}`:         "by_name.k.oops",
		`{"ptr":{"path":"a","x":1}}`:           "ptr.x",
	} {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if got := unknownField(reflect.TypeOf(&req{}), v, ""); got != want {
			t.Errorf("%s: unknown field %q, want %q", body, got, want)
		}
	}
}
