package clustertest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/internal/clustertest"
	"github.com/chatgate/chatgate/internal/testkit"
)

type foundPage struct {
	Results []struct {
		ConversationID string `json:"conversation_id"`
		Message        struct {
			ID       string   `json:"id"`
			Mentions []string `json:"mentions"`
		} `json:"message"`
	} `json:"results"`
	HasMore bool `json:"has_more"`
}

type msgPage struct {
	Messages []struct {
		ID       string   `json:"id"`
		Mentions []string `json:"mentions"`
	} `json:"messages"`
	HasMore  bool `json:"has_more"`
	HasNewer bool `json:"has_newer"`
}

func searchIDs(t *testing.T, c *testkit.Client, q string) []string {
	t.Helper()
	r := c.Do("GET", "/v1/search?q="+url.QueryEscape(q), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var p foundPage
	r.Decode(t, &p)
	var out []string
	for _, res := range p.Results {
		out = append(out, res.Message.ID)
	}
	return out
}

// TestClusterFind: on a cluster (PostgreSQL store), a message sent through
// one node is found by a word or a two-character Korean or Japanese
// substring through another, never by a non-member; mentions are listed
// and a jump works there too.
func TestClusterFind(t *testing.T) {
	env := clustertest.Start(t)
	n1, n2 := env.Node(t), env.Node(t)
	a := testkit.Signup(t, n1.URL(), "cf_a")
	b := testkit.Signup(t, n2.URL(), "cf_b")
	c := testkit.Signup(t, n2.URL(), "cf_c")
	r := a.Do("POST", "/v1/groups", map[string]any{"name": "cf", "members": []string{b.ID}})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	gid := r.JSON()["id"].(string)

	var ids []string
	for i := range 20 {
		ids = append(ids, a.Send(b.ID, fmt.Sprintf("filler %d", i), fmt.Sprintf("cf-%d", i))["id"].(string))
	}
	ko := a.Send(b.ID, "채팅을 시작합니다", "cf-ko")["id"].(string)
	ja := a.Send(b.ID, "明日、東京に行きます", "cf-ja")["id"].(string)
	en := a.Send(b.ID, "Cluster search works", "cf-en")["id"].(string)
	c.Send(b.ID, "채팅 東京 cluster from c", "cf-c") // b sees it, a never does
	r = a.Do("POST", "/v1/messages", map[string]any{"group_id": gid, "content": "@" + b.User["username"].(string) + " 채팅 in the group", "client_msg_id": "cf-g"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	g := r.JSON()["message"].(map[string]any)
	require.Equal(t, []any{b.ID}, g["mentions"])

	require.Equal(t, []string{g["id"].(string), ko}, searchIDs(t, a, "채팅"))
	require.Equal(t, []string{ja}, searchIDs(t, a, "東京"))
	require.Equal(t, []string{en}, searchIDs(t, a, "CLUSTER"))
	require.Len(t, searchIDs(t, b, "채팅"), 3, "b reads all three conversations")
	require.Len(t, searchIDs(t, c, "채팅"), 1, "c only its own")
	require.Equal(t, http.StatusBadRequest, c.Do("GET", "/v1/search?q=x", nil).Status)
	r = c.Do("GET", "/v1/search?q=filler&conversation_id=g_"+gid, nil)
	require.Equal(t, http.StatusNotFound, r.Status)

	r = b.Do("GET", "/v1/mentions", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var mp msgPage
	r.Decode(t, &mp)
	require.Len(t, mp.Messages, 1)
	require.Equal(t, g["id"], mp.Messages[0].ID)

	conv := a.Send(b.ID, "last", "cf-last")["conversation_id"].(string)
	r = b.Do("GET", "/v1/conversations/"+conv+"/messages?around="+ids[10]+"&limit=5", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	mp = msgPage{}
	r.Decode(t, &mp)
	var got []string
	for _, m := range mp.Messages {
		got = append(got, m.ID)
	}
	require.Equal(t, []string{ids[12], ids[11], ids[10], ids[9], ids[8]}, got)
	require.True(t, mp.HasMore)
	require.True(t, mp.HasNewer)
	r = c.Do("GET", "/v1/conversations/"+conv+"/messages?around="+ids[10], nil)
	require.Equal(t, http.StatusNotFound, r.Status)
}
