package api

import "unicode/utf8"

// Encodings of output in JSON answers: a JSON string, or base64.
const (
	EncodingText   = ""
	EncodingBase64 = "base64"
)

// OutputEncoding is the cheaper of a JSON string and base64 for p; base64
// whenever p is not valid UTF-8, which a JSON string cannot carry.
func OutputEncoding(p []byte) string {
	if !utf8.Valid(p) {
		return EncodingBase64
	}
	escaped := 0
	for _, c := range p {
		switch {
		case c == '\n' || c == '\r' || c == '\t' || c == '"' || c == '\\':
			escaped++
		case c < 0x20:
			escaped += 5 // \u00XX
		}
	}
	if int64(len(p)+escaped) > int64(len(p))*4/3+4 {
		return EncodingBase64
	}
	return EncodingText
}
