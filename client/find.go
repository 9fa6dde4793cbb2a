package client

import (
	"context"
	"net/url"
	"strconv"
)

// SearchResult is one message found by Search.
type SearchResult struct {
	ConversationID string  `json:"conversation_id"`
	Message        Message `json:"message"`
}

// SearchPage is one page of Search, newest first.
type SearchPage struct {
	Results []SearchResult `json:"results"`
	HasMore bool           `json:"has_more"`
}

// MessagePage is a page of messages, newest first; HasNewer is set by
// HistoryAround only.
type MessagePage struct {
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
	HasNewer bool      `json:"has_newer"`
}

// SearchQuery selects what Search finds: messages holding every word of Q
// (any 2+ character substring in Korean, Japanese and Chinese), in one
// conversation if ConversationID is set, older than Before if set.
type SearchQuery struct {
	Q              string
	ConversationID string
	Before         string
	Limit          int
}

// Search finds messages in the caller's conversations (GET /v1/search).
func (c *Client) Search(ctx context.Context, q SearchQuery) (*SearchPage, error) {
	v := url.Values{"q": {q.Q}}
	if q.ConversationID != "" {
		v.Set("conversation_id", q.ConversationID)
	}
	pageValues(v, q.Before, q.Limit)
	var out SearchPage
	if err := c.Do(ctx, "GET", "/v1/search?"+v.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Mentions lists the messages that mention the caller (GET /v1/mentions).
func (c *Client) Mentions(ctx context.Context, before string, limit int) (*MessagePage, error) {
	v := url.Values{}
	pageValues(v, before, limit)
	var out MessagePage
	if err := c.Do(ctx, "GET", "/v1/mentions?"+v.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// HistoryAround returns message id of a conversation with its neighbours,
// about limit in all: the jump to a search result or a mention.
func (c *Client) HistoryAround(ctx context.Context, conversationID, id string, limit int) (*MessagePage, error) {
	v := url.Values{"around": {id}}
	pageValues(v, "", limit)
	var out MessagePage
	if err := c.Do(ctx, "GET", "/v1/conversations/"+url.PathEscape(conversationID)+"/messages?"+v.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func pageValues(v url.Values, before string, limit int) {
	if before != "" {
		v.Set("before", before)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
}
