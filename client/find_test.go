package client_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/client"
	"github.com/chatgate/chatgate/internal/testkit"
)

// The client finds its own messages by a word or a Korean substring, lists
// its mentions and jumps to a message.
func TestSearchMentionsAround(t *testing.T) {
	n := testkit.Start(t)
	a, _ := newUser(t, n.URL(), n.URL())
	b, tb := newUser(t, n.URL(), n.URL())
	ctx := ctxT(t)
	var sent []*client.Message
	for _, content := range []string{"채팅을 시작합니다", "plain words", "@" + tb.User["username"].(string) + " Hello there", "last one"} {
		m, err := a.Send(ctx, client.SendInput{To: tb.ID, Content: content})
		require.NoError(t, err)
		sent = append(sent, m)
	}
	p, err := b.Search(ctx, client.SearchQuery{Q: "채팅"})
	require.NoError(t, err)
	require.Len(t, p.Results, 1)
	require.Equal(t, sent[0].ID, p.Results[0].Message.ID)
	require.Equal(t, sent[0].ConversationID, p.Results[0].ConversationID)
	p, err = a.Search(ctx, client.SearchQuery{Q: "hello", ConversationID: sent[0].ConversationID, Limit: 5})
	require.NoError(t, err)
	require.Len(t, p.Results, 1)
	require.Equal(t, []string{tb.ID}, p.Results[0].Message.Mentions)

	mp, err := b.Mentions(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, mp.Messages, 1)
	require.Equal(t, sent[2].ID, mp.Messages[0].ID)
	mp, err = a.Mentions(ctx, "", 10)
	require.NoError(t, err)
	require.Empty(t, mp.Messages)

	mp, err = b.HistoryAround(ctx, sent[0].ConversationID, sent[1].ID, 3)
	require.NoError(t, err)
	require.Equal(t, []string{sent[2].ID, sent[1].ID, sent[0].ID}, []string{mp.Messages[0].ID, mp.Messages[1].ID, mp.Messages[2].ID})
	require.False(t, mp.HasMore)
	require.True(t, mp.HasNewer)

	_, err = a.Search(ctx, client.SearchQuery{Q: "x"})
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "query_too_short", ae.Code)
}
