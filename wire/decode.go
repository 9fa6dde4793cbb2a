// Package wire holds protocol v1's encoding rules, written once for the
// gateway and every transport: strict JSON decoding of client input, the
// body cap, and the one error object.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/chatgate/chatgate/core"
)

// MaxBodyBytes caps request bodies just above the largest legal message:
// 100,000 code points can take up to 12 bytes each in JSON (an escaped
// surrogate pair, \ud83d\ude00), plus room for the other fields.
const MaxBodyBytes = core.MaxMessageChars*12 + 16<<10

// ErrBodyTooLarge answers a body above MaxBodyBytes.
var ErrBodyTooLarge = core.Errorf(core.KindTooLarge, "body_too_large", "request body exceeds %d bytes", MaxBodyBytes)

func badJSON(format string, args ...any) *core.Error {
	return core.Errorf(core.KindInvalid, "invalid_json", format, args...)
}

// DecodeRequest reads a JSON request body into v strictly: one JSON value, valid
// UTF-8 (also in \u escapes), no unknown fields, right types. Nothing is
// changed when it fails, since handlers act only after it succeeds.
func DecodeRequest(w http.ResponseWriter, r *http.Request, v any) error {
	// A client that trickles its body is cut by the server's ReadTimeout
	// (-read-timeout), which streams and held polls lift for themselves.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ErrBodyTooLarge
		}
		return badJSON("could not read the request body: %v", err)
	}
	return Decode(body, v)
}

// Decode is DecodeRequest for a body already read, such as a WebSocket
// frame.
func Decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badJSON("request body is empty; expected a JSON object")
	}
	if !utf8.Valid(body) || hasLoneSurrogate(body) {
		return core.Errorf(core.KindInvalid, "invalid_utf8", "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badJSON("unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var ie *core.IDError
	switch {
	case errors.As(err, &se):
		return badJSON("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badJSON("truncated JSON")
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badJSON("expected a JSON object, got %s", te.Value)
		}
		return core.Errorf(core.KindInvalid, "invalid_field", "field %q must be %s, got %s", field, jsonType(te.Type.String()), te.Value)
	case errors.As(err, &ie):
		return core.Errorf(core.KindInvalid, "invalid_field", "ids must be positive decimal strings")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return core.Errorf(core.KindInvalid, "unknown_field", "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badJSON("%v", err)
}

func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasSuffix(goType, "core.ID"):
		return "a decimal string id"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a number"
	}
	return goType
}

// hasLoneSurrogate finds \uD800-\uDFFF escapes that do not form a pair:
// encoding/json would silently turn them into U+FFFD.
func hasLoneSurrogate(b []byte) bool {
	for i := 0; i+6 <= len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character (handles \\u)
			continue
		}
		r, ok := hex4(b[i+2 : i+6])
		if !ok {
			continue
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
				return true
			}
			lo, ok := hex4(b[i+8 : i+12])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

func hex4(b []byte) (rune, bool) {
	v, err := strconv.ParseUint(string(b), 16, 32)
	return rune(v), err == nil
}
