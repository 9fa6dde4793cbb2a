// Package push holds the core.Notifier implementations that alert users
// whose devices are all offline: a log notifier (the default) and a signed
// webhook for a push provider or relay of the operator's choice.
package push

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/chatgate/chatgate/core"
)

// Log is a Notifier that only logs; it always succeeds.
type Log struct{ Logger *slog.Logger }

var _ core.Notifier = Log{}

// Notify implements core.Notifier.
func (l Log) Notify(_ context.Context, n core.Notification) error {
	var m core.Message
	_ = json.Unmarshal(n.Message, &m)
	l.Logger.Info("push notification", "id", n.ID, "user", n.UserID, "mentioned", m.Mentioned(n.UserID))
	return nil
}

// PreviewChars is how much of a message a push payload carries: push
// providers cap payloads at a few KiB, and a lock screen shows a line.
const PreviewChars = 200

// Payload is the JSON body of a webhook push.
type Payload struct {
	ID             string    `json:"id"`
	UserID         core.ID   `json:"user_id"`
	MessageID      core.ID   `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	From           core.ID   `json:"from"`
	GroupID        core.ID   `json:"group_id,omitempty"`
	Preview        string    `json:"preview"`
	CreatedAt      core.Time `json:"created_at"`
	// Mentioned is true when the message mentions the user (@username):
	// apps word such a notification differently, or let it through a
	// muted group.
	Mentioned bool `json:"mentioned,omitempty"`
}

// Webhook POSTs each notification as JSON to URL, signed so the receiver
// can check it came from chatgate:
//
//	X-Chatgate-Delivery:  the notification id (the same on every retry)
//	X-Chatgate-Timestamp: Unix seconds when this attempt was signed
//	X-Chatgate-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// Any 2xx status is success; 408, 429 and 5xx answers and network errors are
// retried by the core's outbox with backoff; other 4xx answers drop the
// notification (the receiver refuses it for good).
type Webhook struct {
	URL    string
	Secret []byte
	Client *http.Client
}

var _ core.Notifier = (*Webhook)(nil)

// NewWebhook returns a webhook notifier with a 10 s request timeout.
func NewWebhook(url string, secret []byte) *Webhook {
	return &Webhook{URL: url, Secret: secret, Client: &http.Client{Timeout: 10 * time.Second}}
}

// Sign returns the signature header value for body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Notify implements core.Notifier.
func (w *Webhook) Notify(ctx context.Context, n core.Notification) error {
	var m core.Message
	if err := json.Unmarshal(n.Message, &m); err != nil {
		return fmt.Errorf("decode message for push %s: %w", n.ID, err)
	}
	body, err := json.Marshal(Payload{
		ID: n.ID, UserID: n.UserID, MessageID: m.ID, ConversationID: m.ConversationID,
		From: m.From, GroupID: m.GroupID, Preview: preview(m.Content), CreatedAt: m.CreatedAt,
		Mentioned: m.Mentioned(n.UserID),
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build push request: %w", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chatgate-push/1")
	req.Header.Set("X-Chatgate-Delivery", n.ID)
	req.Header.Set("X-Chatgate-Timestamp", ts)
	req.Header.Set("X-Chatgate-Signature", Sign(w.Secret, ts, body))
	resp, err := w.Client.Do(req)
	if err != nil {
		return fmt.Errorf("push %s: %w", n.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		// The receiver refuses this notification; retrying cannot help.
		return fmt.Errorf("push %s: webhook answered %s: %w", n.ID, resp.Status, core.ErrPushRejected)
	default:
		return fmt.Errorf("push %s: webhook answered %s", n.ID, resp.Status)
	}
	return nil
}

func preview(s string) string {
	if utf8.RuneCountInString(s) <= PreviewChars {
		return s
	}
	n := 0
	for i := range s {
		if n == PreviewChars {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
