package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/core/postgres"
	"github.com/chatgate/chatgate/internal/pgtest"
)

// searchBenchMessages is the size of BenchmarkSearch's history.
const searchBenchMessages = 1_000_000

// BenchmarkSearch searches a history of searchBenchMessages messages in
// 5000 group conversations whose sizes spread over four orders of
// magnitude (the largest holds 8% of all messages). Each message holds ten
// words drawn from 50,000 so that word k is in about 1/k of messages times
// 0.9: w1 is in half of them, w30000 in a few dozen. The busy user belongs
// to the ten largest conversations and forty others (about 30% of all
// messages), the typical one to fifty others (about 7000 messages). Each
// search asks for a page of 21.
//
// Building the history takes a minute: run it on its own,
//
//	go test -run '^$' -bench BenchmarkSearch ./core/postgres/
func BenchmarkSearch(b *testing.B) {
	url := pgtest.NewDB(b)
	s := open(b, url, 1, postgres.Options{})
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(b, err)
	defer conn.Close(ctx)
	for _, q := range []string{
		`DROP INDEX messages_terms`, // built once below, rather than row by row
		`INSERT INTO messages (conversation_id, id, sender_id, recipient_id, group_id, content, created_at, client_msg_id, terms)
			SELECT 'g_' || g, i, 1, 0, g, convert_to(array_to_string(w, ' '), 'UTF8'), now(), '', array_prepend('g_' || g, w)
			FROM (SELECT i, floor(exp(random() * ln(5000)))::int AS g,
				array(SELECT DISTINCT 'w' || floor(exp(random() * ln(50000)))::int FROM generate_series(1, 10) WHERE i > 0) AS w
				FROM generate_series(1, ` + fmt.Sprint(searchBenchMessages) + `) i) x`,
		`CREATE INDEX messages_terms ON messages USING gin (terms)`,
		`INSERT INTO user_conversations (user_id, conversation_id, group_id, last_id, read_up_to)
			SELECT 1, 'g_' || g, g, 1, 0 FROM generate_series(1, 10) g
			UNION SELECT 1, 'g_' || g, g, 1, 0 FROM (SELECT 11 + (random() * 4989)::int FROM generate_series(1, 40)) x(g)
			UNION SELECT 2, 'g_' || g, g, 1, 0 FROM (SELECT 11 + (random() * 4989)::int FROM generate_series(1, 50)) x(g)
			ON CONFLICT DO NOTHING`,
		`INSERT INTO group_members (group_id, user_id, pos) SELECT group_id, user_id, 0 FROM user_conversations`,
		`VACUUM ANALYZE`,
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(b, err)
	}
	for _, user := range []struct {
		name string
		id   core.ID
	}{{"busy", 1}, {"typical", 2}} {
		for _, q := range []struct{ name, q string }{
			{"common", "w1"},        // half of all messages
			{"frequent", "w10"},     // 8%
			{"occasional", "w100"},  // 1%
			{"uncommon", "w1000"},   // 0.1%
			{"rare", "w30000"},      // 0.003%
			{"absent", "nothing"},   // no message
			{"two-common", "w1 w2"}, // both in a third or more
			{"common-rare", "w1 w3000"},
		} {
			b.Run(user.name+"/"+q.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Search(ctx, user.id, core.SearchQuery{Terms: core.QueryTerms(q.q), Limit: 21}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	for _, q := range []string{"w1", "w100", "w30000"} {
		b.Run("largest-conversation/"+q, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Search(ctx, 1, core.SearchQuery{Terms: []string{q}, Conv: "g_1", Limit: 21}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
