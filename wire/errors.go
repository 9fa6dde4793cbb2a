package wire

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/chatgate/chatgate/core"
)

var statusOf = map[core.Kind]int{
	core.KindInvalid:      http.StatusBadRequest,
	core.KindUnauthorized: http.StatusUnauthorized,
	core.KindForbidden:    http.StatusForbidden,
	core.KindNotFound:     http.StatusNotFound,
	core.KindConflict:     http.StatusConflict,
	core.KindTooLarge:     http.StatusRequestEntityTooLarge,
	core.KindUnavailable:  http.StatusServiceUnavailable,
	core.KindRateLimited:  http.StatusTooManyRequests,
	core.KindInternal:     http.StatusInternalServerError,
}

// errorObject is {"code","message"}, the error of every error answer.
type errorObject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorBody struct {
	Error errorObject `json:"error"`
}

// ErrorBody is the protocol's one error object for e.
func ErrorBody(e *core.Error) any { return errorBody{errorObject{e.Code, e.Message}} }

// Status is the HTTP status of e.
func Status(e *core.Error) int { return statusOf[e.Kind] }

// Token returns the bearer token of r: the Authorization header, or the
// access_token query parameter for EventSource and WebSocket clients,
// which cannot set headers.
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// ErrorEvent encodes the error as an event object:
// {"type":"error","error":{"code","message"},"client_msg_id":".."}.
func ErrorEvent(e *core.Error, clientMsgID string) []byte {
	b, _ := json.Marshal(struct {
		Type        string      `json:"type"`
		Error       errorObject `json:"error"`
		ClientMsgID string      `json:"client_msg_id,omitempty"`
	}{"error", errorObject{e.Code, e.Message}, clientMsgID})
	return b
}
