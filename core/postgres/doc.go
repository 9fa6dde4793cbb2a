// Package postgres is the cluster's core.Store: every chatgate node of a
// cluster opens one Store on the same PostgreSQL database (through
// github.com/jackc/pgx/v5's pool), and clients see the same state through
// any node. It keeps every promise of core.Store and passes
// core/storetest unchanged.
//
// Durability: a change is acknowledged only once its transaction has
// committed with synchronous_commit on, which every session of the store
// sets whatever the server's default. Appends are group-committed (see
// append.go): concurrent sends share one transaction and one WAL flush.
//
// Several nodes at once: each node's Store has its own snowflake node id.
// Per-user inbox seqs stay gap-free and strictly increasing because they
// are given out under the row lock of the user's inbox_heads row, taken in
// user id order; a client_msg_id is looked up under the sender's lock, so
// a retry sent to another node replays instead of storing twice; the push
// outbox is claimed with a lease, so one entry reaches one node's pusher
// at a time and a dead node's entries pass to another (see push.go).
// Schema migrations (migrate.go, migrations/*.sql) run at Open under an
// advisory lock, so nodes may start together.
//
// Search (find.go): each message keeps its search terms, core.Terms of its
// content after its conversation id, in a text[] column with a GIN index,
// written in the append's own transaction; a search reads each of the
// caller's conversations either newest first through the primary key or
// through the GIN index, whichever the term statistics say is cheaper.
// Messages of the release before search get their terms from a backfill
// that Open starts (backfill.go); WaitBackfilled waits for it. Mentions are a
// table keyed by the mentioned user.
//
// Keys. Every table that grows with traffic is keyed by the user or the
// conversation it belongs to, first, so that it could later be distributed
// (Citus-style, or by hand across databases) on that column with each
// hot query on one shard: inbox (user_id, seq) and inbox_heads (user_id),
// so a resume and a seq assignment touch one user; messages
// (conversation_id, id), so history pages and unread counts scan one
// conversation; user_conversations (user_id, conversation_id), the
// per-user listing with read markers; client_msg_ids (sender_id,
// client_msg_id); devices (user_id, id); group_members (group_id, user_id);
// presence (user_id); push_outbox (message_id, user_id), which holds its
// user in the key; mentions (user_id, message_id). The search terms of a
// message include its conversation id, so a search asks the GIN index for
// given conversations only, which a messages table distributed by
// conversation could answer shard by shard. Lookups by something other
// than the owner have tables of their own keyed by what is looked up,
// rather than a unique secondary index that a distributed table could not
// enforce: usernames
// (username_key) and device_tokens (token_hash). An inbox row refers to
// its message by (conversation_id, id), the message's full key, so a
// distributed inbox read is a lookup by key on the message's shard. The
// secondary indexes (display-name search, a user's groups, incoming
// friend requests) are the ones that would become cross-shard queries.
package postgres
