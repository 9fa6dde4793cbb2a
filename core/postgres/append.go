package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/writeq"
)

// Appends are group-committed. Append queues its request; each of the
// store's committer goroutines takes the first waiting request and every
// other one waiting behind it (up to Options.MaxBatch) and runs them all
// in one transaction: one commit, and three pipelined round trips (two
// when the batch names no group):
//
//  1. BEGIN; share-lock the batch's groups (FOR KEY SHARE, so membership
//     cannot change under the batch) and read their members;
//  2. lock the inbox_heads rows of every user the batch touches in one
//     SELECT … ORDER BY user_id FOR UPDATE, then look up the batch's
//     client_msg_ids (after the locks, so a send another node committed
//     meanwhile is seen);
//  3. every INSERT of the batch (messages with their search terms,
//     client_msg_ids, inbox rows, push entries, conversation listings,
//     mentions), the new heads, COMMIT.
//
// Between 2 and 3 the committer goes through the requests in order:
// replays and reuses of a client_msg_id are answered from what is stored
// (or from an earlier request of the same batch), unknown users and
// non-members are refused, and every other request gets its message id
// and one seq per recipient. Refused requests write nothing, so they fail
// alone. Should a statement fail anyway, each request of the batch is
// run again in a transaction of its own.
//
// Seqs are gap-free and strictly increasing per user, also with several
// stores on one database: a user's next seq is its head row's value plus
// one, read and written under the row's lock. Rows are locked in user id
// order in a single statement, by every batch of every store, so two
// batches never wait for each other in a cycle. The message id is taken
// while the locks are held and after observing the newest id delivered to
// each recipient (inbox_heads.last_id), so ids grow with seq per user even
// across nodes whose clocks disagree.
//
// NeedsPush is called by the committer, with the batch's locks held: it
// must be quick and must not call the store.

// batchTimeout bounds one batch's work against the database.
const batchTimeout = time.Minute

type appendReq struct {
	ctx   context.Context
	req   core.SendRequest
	terms string // core.Terms of the content, joined by termSep
	done  chan error
	res   core.SendResult
	err   error // this request's own refusal, set by runBatch
}

// Append implements core.Messages.
func (s *Store) Append(ctx context.Context, req core.SendRequest) (core.SendResult, error) {
	// The terms are made here, by the caller, rather than by the
	// committer, which holds the batch's locks.
	r := &appendReq{ctx: ctx, req: req, terms: joinTerms(req.Content), done: make(chan error, 1)}
	if err := s.reqs.Do(ctx, r, r.done); err != nil {
		if errors.Is(err, writeq.ErrClosed) {
			return core.SendResult{}, core.ErrUnavailable
		}
		return core.SendResult{}, err
	}
	m := &r.res.Message
	r.res.Raw = m.AppendJSON(make([]byte, 0, 200+len(m.Content)+len(m.ClientMsgID)))
	return r.res, nil
}

// committer runs batches until Close, then the requests still queued.
func (s *Store) committer() {
	batch := make([]*appendReq, 0, s.opts.MaxBatch)
	for {
		var first *appendReq
		select {
		case first = <-s.reqs.C():
		case <-s.reqs.Closing():
			// Nothing can be queued any more: finish what is there.
			select {
			case first = <-s.reqs.C():
			default:
				return
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r := <-s.reqs.C():
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit runs one batch and answers each of its requests.
func (s *Store) commit(batch []*appendReq) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	live := make([]*appendReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err // gave up before anything was written
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	err := s.runBatch(ctx, live)
	if err == nil && s.opts.OnCommit != nil {
		s.opts.OnCommit(len(live), time.Since(start))
	}
	if err != nil && len(live) > 1 && pgError(err) != nil {
		// The server refused a statement, so the transaction wrote
		// nothing: run each request alone, and only the culprit fails.
		s.log.Warn("append batch failed; retrying its requests one by one", "requests", len(live), "err", err)
		for _, r := range live {
			s.answer(r, s.runBatch(ctx, []*appendReq{r}))
		}
		return
	}
	for _, r := range live {
		s.answer(r, err)
	}
}

func (s *Store) answer(r *appendReq, batchErr error) {
	if batchErr != nil {
		r.done <- s.fail("append message", batchErr)
		return
	}
	r.done <- s.fail("append message", r.err)
}

// runBatch runs reqs in one transaction, again if the server asks for a
// retry. It returns the transaction's error; each request's own refusal
// is in its err.
func (s *Store) runBatch(ctx context.Context, reqs []*appendReq) error {
	for attempt := 0; ; attempt++ {
		err := s.tryBatch(ctx, reqs)
		if err == nil || attempt >= 3 || !retryable(err) {
			return err
		}
	}
}

// head is a user's inbox head as the batch advances it.
type head struct {
	seq, last int64
	dirty     bool
}

type cmidKey struct {
	from core.ID
	id   string
}

type convKey struct {
	user core.ID
	conv string
}

// batchRows are the rows a batch inserts, column by column.
type batchRows struct {
	stored int // new messages

	mConv                   []string // messages
	mID, mFrom, mTo, mGroup []int64
	mContent                [][]byte
	mCreated                []time.Time
	mCmid                   []string
	mTerms                  []string // joined by termSep
	mMentions               []string // decimal ids joined by ",", "" for none

	xUser, xMsg, xGroup []int64 // mentions
	xConv               []string

	cFrom      []int64 // client_msg_ids
	cID, cConv []string
	cMsg       []int64

	iUser, iSeq, iMsg []int64 // inbox
	iConv             []string

	pMsg, pUser []int64 // push_outbox
	pConv       []string

	convs map[convKey]convRow // user_conversations, one row per key

	hUser, hSeq, hLast []int64 // inbox_heads
}

type convRow struct{ group, last int64 }

func (s *Store) tryBatch(ctx context.Context, reqs []*appendReq) (err error) {
	for _, r := range reqs {
		r.res, r.err = core.SendResult{}, nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	inTx := false
	defer func() {
		if err != nil && inTx {
			// Ends the failed transaction; a connection that cannot is
			// broken, and the pool drops it on Release.
			_, _ = conn.Exec(ctx, "ROLLBACK")
		}
	}()

	// 1. Groups and their members.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	inTx = true
	var gids []int64
	for _, r := range reqs {
		if g := i64(r.req.GroupID); g != 0 && !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	members := map[core.ID][]core.ID{}
	if len(gids) > 0 {
		slices.Sort(gids)
		b.Queue(`SELECT id FROM groups WHERE id = ANY($1) ORDER BY id FOR KEY SHARE`, gids)
		b.Queue(`SELECT group_id, user_id FROM group_members WHERE group_id = ANY($1) ORDER BY group_id, pos`, gids).
			Query(func(rows pgx.Rows) error {
				var g, u int64
				_, err := pgx.ForEachRow(rows, []any{&g, &u}, func() error {
					members[core.ID(g)] = append(members[core.ID(g)], core.ID(u))
					return nil
				})
				return err
			})
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		b = &pgx.Batch{}
	}

	// 2. Lock the heads of everyone the batch may write to, then read the
	// client_msg_ids.
	var users []int64
	seen := map[core.ID]bool{}
	add := func(u core.ID) {
		if !seen[u] {
			seen[u] = true
			users = append(users, i64(u))
		}
	}
	var cmSenders []int64
	var cmIDs []string
	for _, r := range reqs {
		add(r.req.From)
		if r.req.GroupID != 0 {
			if ms := members[r.req.GroupID]; slices.Contains(ms, r.req.From) {
				for _, m := range ms {
					add(m)
				}
			}
		} else {
			add(r.req.To)
		}
		if r.req.ClientMsgID != "" {
			cmSenders = append(cmSenders, i64(r.req.From))
			cmIDs = append(cmIDs, r.req.ClientMsgID)
		}
	}
	slices.Sort(users)
	heads := make(map[core.ID]*head, len(users))
	b.Queue(`SELECT user_id, head, last_id FROM inbox_heads WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE`, users).
		Query(func(rows pgx.Rows) error {
			var u, seq, last int64
			_, err := pgx.ForEachRow(rows, []any{&u, &seq, &last}, func() error {
				heads[core.ID(u)] = &head{seq: seq, last: last}
				return nil
			})
			return err
		})
	stored := map[cmidKey]core.Message{}
	if len(cmIDs) > 0 {
		b.Queue(`SELECT c.sender_id, c.client_msg_id, `+msgCols+`
			FROM unnest($1::bigint[], $2::text[]) AS k(sender_id, client_msg_id)
			JOIN client_msg_ids c ON c.sender_id = k.sender_id AND c.client_msg_id = k.client_msg_id
			JOIN messages m ON m.conversation_id = c.conversation_id AND m.id = c.message_id`, cmSenders, cmIDs).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var k cmidKey
					var from int64
					m, err := scanMessage(rows, &from, &k.id)
					if err != nil {
						return err
					}
					k.from = core.ID(from)
					stored[k] = m
				}
				return rows.Err()
			})
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}

	// Decide each request, in order.
	w := &batchRows{convs: map[convKey]convRow{}}
	for _, r := range reqs {
		s.decide(r, heads, members, stored, w)
	}

	// 3. Write and commit.
	b = &pgx.Batch{}
	if w.stored > 0 {
		w.queue(b, heads)
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	inTx = false
	return nil
}

// decide answers one request of a batch: a replay, a refusal, or a new
// message whose rows it adds to w.
func (s *Store) decide(r *appendReq, heads map[core.ID]*head, members map[core.ID][]core.ID, stored map[cmidKey]core.Message, w *batchRows) {
	req := r.req
	key := cmidKey{req.From, req.ClientMsgID}
	if req.ClientMsgID != "" {
		// A retry is answered from its client_msg_id before anything
		// else is checked: the stored send may predate a change (the
		// sender has left the group since, say).
		if m, ok := stored[key]; ok {
			if m.To != req.To || m.GroupID != req.GroupID || m.Content != req.Content {
				r.err = core.ErrClientMsgIDReuse
				return
			}
			r.res = core.SendResult{Message: m, Replayed: true}
			return
		}
	}
	if heads[req.From] == nil {
		r.err = core.ErrUserNotFound
		return
	}
	var conv string
	var recipients []core.ID
	if req.GroupID != 0 {
		ms := members[req.GroupID]
		if !slices.Contains(ms, req.From) {
			r.err = core.ErrGroupNotFound
			return
		}
		conv, recipients = core.GroupConv(req.GroupID), ms
	} else {
		if heads[req.To] == nil {
			r.err = core.ErrUserNotFound
			return
		}
		conv, recipients = core.DirectConv(req.From, req.To), []core.ID{req.From, req.To}
		if req.To == req.From {
			recipients = recipients[:1]
		}
	}

	var newest int64
	for _, u := range recipients {
		h := heads[u]
		if h == nil {
			// A member without an inbox: users are never deleted, so
			// this is damage, not a race; refuse rather than skip them.
			r.err = fmt.Errorf("group %d member %d has no inbox head", req.GroupID, u)
			return
		}
		newest = max(newest, h.last)
	}
	s.ids.Observe(core.ID(newest))
	m := core.Message{
		ID: s.ids.Next(), ConversationID: conv, From: req.From, To: req.To, GroupID: req.GroupID,
		Content: req.Content, CreatedAt: req.CreatedAt, ClientMsgID: req.ClientMsgID, Mentions: req.Mentions,
	}
	id := i64(m.ID)
	res := core.SendResult{Message: m, Deliveries: make([]core.Delivery, 0, len(recipients))}
	w.stored++
	w.mConv = append(w.mConv, conv)
	w.mID = append(w.mID, id)
	w.mFrom = append(w.mFrom, i64(m.From))
	w.mTo = append(w.mTo, i64(m.To))
	w.mGroup = append(w.mGroup, i64(m.GroupID))
	w.mContent = append(w.mContent, []byte(m.Content))
	w.mCreated = append(w.mCreated, m.CreatedAt.Time)
	w.mCmid = append(w.mCmid, m.ClientMsgID)
	w.mTerms = append(w.mTerms, r.terms)
	w.mMentions = append(w.mMentions, w.mentions(&m, recipients))
	if m.ClientMsgID != "" {
		w.cFrom = append(w.cFrom, i64(m.From))
		w.cID = append(w.cID, m.ClientMsgID)
		w.cConv = append(w.cConv, conv)
		w.cMsg = append(w.cMsg, id)
		stored[key] = m // a second request of this batch replays this one
	}
	for _, u := range recipients {
		h := heads[u]
		h.seq++
		h.last = id
		h.dirty = true
		w.iUser = append(w.iUser, i64(u))
		w.iSeq = append(w.iSeq, h.seq)
		w.iConv = append(w.iConv, conv)
		w.iMsg = append(w.iMsg, id)
		w.convs[convKey{u, conv}] = convRow{group: i64(req.GroupID), last: id}
		if u != req.From && req.NeedsPush != nil && req.NeedsPush(u) {
			w.pMsg = append(w.pMsg, id)
			w.pUser = append(w.pUser, i64(u))
			w.pConv = append(w.pConv, conv)
			res.Pushes++
		}
		res.Deliveries = append(res.Deliveries, core.Delivery{UserID: u, Seq: uint64(h.seq)})
	}
	r.res = res
}

// mentions adds the mentions rows of m, one per recipient it mentions
// (a mention of anyone else lists nothing), and returns m.Mentions as the
// messages row keeps them.
func (w *batchRows) mentions(m *core.Message, recipients []core.ID) string {
	if len(m.Mentions) == 0 {
		return ""
	}
	var ids []byte
	var listed []core.ID
	for i, u := range m.Mentions {
		if i > 0 {
			ids = append(ids, ',')
		}
		ids = strconv.AppendInt(ids, i64(u), 10)
		if slices.Contains(recipients, u) && !slices.Contains(listed, u) {
			listed = append(listed, u)
			w.xUser = append(w.xUser, i64(u))
			w.xMsg = append(w.xMsg, i64(m.ID))
			w.xConv = append(w.xConv, m.ConversationID)
			w.xGroup = append(w.xGroup, i64(m.GroupID))
		}
	}
	return string(ids)
}

// queue adds the batch's writes to b. A message's terms are its
// conversation id followed by the terms of its content (see find.go).
func (w *batchRows) queue(b *pgx.Batch, heads map[core.ID]*head) {
	b.Queue(`INSERT INTO messages (conversation_id, id, sender_id, recipient_id, group_id, content, created_at, client_msg_id, terms, mentions)
		SELECT c, i, f, t, g, content, at, cmid, array_prepend(c, string_to_array(terms, E'\x1f')), nullif(string_to_array(mentions, ','), '{}')::bigint[]
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])
			AS v(c, i, f, t, g, content, at, cmid, terms, mentions)`,
		w.mConv, w.mID, w.mFrom, w.mTo, w.mGroup, w.mContent, w.mCreated, w.mCmid, w.mTerms, w.mMentions)
	if len(w.xUser) > 0 {
		b.Queue(`INSERT INTO mentions (user_id, message_id, conversation_id, group_id)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])`,
			w.xUser, w.xMsg, w.xConv, w.xGroup)
	}
	if len(w.cID) > 0 {
		b.Queue(`INSERT INTO client_msg_ids (sender_id, client_msg_id, conversation_id, message_id)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])`,
			w.cFrom, w.cID, w.cConv, w.cMsg)
	}
	b.Queue(`INSERT INTO inbox (user_id, seq, conversation_id, message_id)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])`,
		w.iUser, w.iSeq, w.iConv, w.iMsg)
	if len(w.pMsg) > 0 {
		b.Queue(`INSERT INTO push_outbox (message_id, user_id, conversation_id)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])`,
			w.pMsg, w.pUser, w.pConv)
	}
	n := len(w.convs)
	cu, cc, cg, cl := make([]int64, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for k, v := range w.convs {
		cu, cc, cg, cl = append(cu, i64(k.user)), append(cc, k.conv), append(cg, v.group), append(cl, v.last)
	}
	b.Queue(`INSERT INTO user_conversations (user_id, conversation_id, group_id, last_id, read_up_to)
		SELECT u, c, g, l, 0 FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS v(u, c, g, l)
		ON CONFLICT (user_id, conversation_id) DO UPDATE SET last_id = GREATEST(user_conversations.last_id, EXCLUDED.last_id)`,
		cu, cc, cg, cl)
	for u, h := range heads {
		if h.dirty {
			w.hUser, w.hSeq, w.hLast = append(w.hUser, i64(u)), append(w.hSeq, h.seq), append(w.hLast, h.last)
		}
	}
	b.Queue(`UPDATE inbox_heads h SET head = v.head, last_id = v.last_id
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(user_id, head, last_id)
		WHERE h.user_id = v.user_id`, w.hUser, w.hSeq, w.hLast)
}
