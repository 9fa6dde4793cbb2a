package node_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/buntdb"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/internal/testkit"
)

// legacyData is a data directory in the single-file layout of the releases
// before history moved to Pebble, written key by key as those releases
// wrote them (core/buntdb/legacy.go documents the keys), with what each
// user must find in it.
type legacyData struct {
	tokens []string             // one device token per user
	ids    []core.ID            // user ids
	inbox  map[core.ID][]string // message ids in seq order, per user
	cmids  map[string]core.ID   // "uid/cmid" → message id
}

func pad20(n uint64) string {
	s := strconv.FormatUint(n, 10)
	return strings.Repeat("0", 20-len(s)) + s
}

// writeLegacy writes users users, a group of the first ten, and msgs
// messages (one in ten to the group) into dir/chatgate.db.
func writeLegacy(t *testing.T, dir string, users, msgs int) *legacyData {
	t.Helper()
	db, err := buntdb.Open(filepath.Join(dir, "chatgate.db"))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.SetConfig(buntdb.Config{SyncPolicy: buntdb.Never, AutoShrinkDisabled: true}))
	ids, err := core.NewSnowflake(7)
	require.NoError(t, err)
	ld := &legacyData{inbox: map[core.ID][]string{}, cmids: map[string]core.ID{}}
	rng := rand.New(rand.NewPCG(1, 2))
	heads := map[core.ID]uint64{}
	listed := map[string]bool{}
	set := func(tx *buntdb.Tx, k, v string) {
		_, _, err := tx.Set(k, v, nil)
		require.NoError(t, err)
	}
	mustJSON := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}
	require.NoError(t, db.Update(func(tx *buntdb.Tx) error {
		for i := 0; i < users; i++ {
			u := core.UserRecord{User: core.User{ID: ids.Next(), Username: fmt.Sprintf("legacy%02d", i), DisplayName: fmt.Sprintf("Legacy %d", i), CreatedAt: core.Now()}}
			d := core.Device{ID: ids.Next(), UserID: u.ID, Name: "phone", CreatedAt: core.Now()}
			tok := fmt.Sprintf("legacy-token-%02d-%s", i, strings.Repeat("x", 20))
			h := hex.EncodeToString(core.TokenHash(tok))
			set(tx, "u:"+pad20(uint64(u.ID)), mustJSON(u))
			set(tx, "un:"+u.Username, pad20(uint64(u.ID)))
			set(tx, "dn:"+strings.ToLower(u.DisplayName)+"\x00"+pad20(uint64(u.ID)), "")
			set(tx, "t:"+h, mustJSON(d))
			set(tx, "ud:"+pad20(uint64(u.ID))+":"+pad20(uint64(d.ID)), h)
			ld.ids, ld.tokens = append(ld.ids, u.ID), append(ld.tokens, tok)
		}
		g := ids.Next()
		members := ld.ids[:10]
		set(tx, "g:"+pad20(uint64(g)), mustJSON(map[string]any{"id": core.ID(g), "name": "legacy group", "owner_id": members[0], "members": members, "created_at": core.Now()}))
		for _, m := range members {
			set(tx, "ug:"+pad20(uint64(m))+":"+pad20(uint64(g)), "")
		}
		for i := 0; i < msgs; i++ {
			from := ld.ids[rng.IntN(len(ld.ids))]
			m := core.Message{ID: ids.Next(), From: from, Content: fmt.Sprintf("legacy message %d: %s", i, strings.Repeat("é", i%50)), CreatedAt: core.Now(), ClientMsgID: fmt.Sprintf("lc-%d", i)}
			var rcpt []core.ID
			if i%10 == 0 {
				m.From = members[i%len(members)]
				m.GroupID, m.ConversationID, rcpt = g, core.GroupConv(g), members
			} else {
				to := ld.ids[rng.IntN(len(ld.ids))]
				m.To, m.ConversationID, rcpt = to, core.DirectConv(from, to), []core.ID{from, to}
				if to == from {
					rcpt = rcpt[:1]
				}
			}
			mid := pad20(uint64(m.ID))
			set(tx, "m:"+mid, string(m.AppendJSON(nil)))
			set(tx, "cm:"+m.ConversationID+":"+mid, m.From.String())
			set(tx, "c:"+pad20(uint64(m.From))+":"+m.ClientMsgID, mid)
			ld.cmids[m.From.String()+"/"+m.ClientMsgID] = m.ID
			for _, r := range rcpt {
				heads[r]++
				set(tx, "i:"+pad20(uint64(r))+":"+pad20(heads[r]), mid)
				ld.inbox[r] = append(ld.inbox[r], m.ID.String())
				if k := "uc:" + pad20(uint64(r)) + ":" + m.ConversationID; !listed[k] {
					listed[k] = true
					set(tx, k, "")
				}
			}
		}
		return nil
	}))
	return ld
}

// spawn starts the binary on dir without waiting for it, logging at debug
// level into logPath.
func spawn(t *testing.T, bin, dir, logPath string) *durProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", durFreePort(t))
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(bin, "-addr", addr, "-data", dir, "-log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p := &durProc{cmd: cmd, base: "http://" + addr, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	return p
}

// awaitLog waits until the process's log holds want (the process reports
// its progress there) and reports whether it did before the process ended.
func awaitLog(t *testing.T, p *durProc, want string) bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log)
		if bytes.Contains(b, []byte(want)) {
			return true
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.log)
			return bytes.Contains(b, []byte(want))
		case <-time.After(2 * time.Millisecond): // polling a file for a line
		}
	}
	t.Fatalf("no %q in the log within 60 s", want)
	return false
}

// TestMigrationSurvivesKill9 kills the binary twice while it migrates a
// big legacy data directory — once while it copies history into Pebble,
// once while it deletes the copied keys from chatgate.db — and then lets
// it finish: every user finds exactly their inbox, in seq order, and
// retries of old sends are answered from their client_msg_id.
func TestMigrationSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and kills the real binary") // CI runs without -short
	}
	durLeakCheck(t)
	bin := testkit.Binary(t)
	dir, logDir := t.TempDir(), t.TempDir()
	start0 := time.Now()
	ld := writeLegacy(t, dir, 40, 40_000)
	t.Logf("legacy data written in %v", time.Since(start0))

	p := spawn(t, bin, dir, filepath.Join(logDir, "1.log"))
	require.True(t, awaitLog(t, p, "keys_copied="), "the copy started")
	p.kill()
	b, _ := os.ReadFile(p.log)
	require.NotContains(t, string(b), "history migrated", "killed too late: the migration had ended")

	p = spawn(t, bin, dir, filepath.Join(logDir, "2.log"))
	require.True(t, awaitLog(t, p, "resuming history migration"), "the second start resumes the copy")
	require.True(t, awaitLog(t, p, "keys_deleted="), "the delete started")
	p.kill()
	b, _ = os.ReadFile(p.log)
	require.NotContains(t, string(b), "history migrated", "killed too late: the migration had ended")

	t.Logf("after two kills: %v", time.Since(start0))
	p = spawn(t, bin, dir, filepath.Join(logDir, "3.log"))
	require.True(t, awaitLog(t, p, "history migrated"))
	require.True(t, awaitLog(t, p, "chatgate listening"))
	b, _ = os.ReadFile(p.log)
	require.NotContains(t, string(b), "keys_copied=", "the third start copies nothing again")

	t.Logf("migrated and serving: %v", time.Since(start0))
	hc := durHTTP(t)
	for i, uid := range ld.ids {
		c := &testkit.Client{T: t, Base: p.base, Token: ld.tokens[i], ID: uid.String(), HTTP: hc}
		evs := durInbox(t, c) // seqs 1..N, no duplicate, ids growing
		got := make([]string, len(evs))
		for j, e := range evs {
			got[j] = e["message"].(map[string]any)["id"].(string)
		}
		require.Equal(t, ld.inbox[uid], got, "inbox of user %d", i)
	}
	// Old sends retried: answered from the migrated client_msg_id keys.
	keys := make([]string, 0, len(ld.cmids))
	for k := range ld.cmids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys[:20] {
		uid, cmid, _ := strings.Cut(k, "/")
		idx := 0
		for i, id := range ld.ids {
			if id.String() == uid {
				idx = i
			}
		}
		c := &testkit.Client{T: t, Base: p.base, Token: ld.tokens[idx], ID: uid, HTTP: hc}
		n, _ := strconv.Atoi(strings.TrimPrefix(cmid, "lc-"))
		// Same content, recipient unknown to the test: a conflicting
		// retry still proves the key is there.
		r := c.Do("POST", "/v1/messages", map[string]any{"to": uid, "content": fmt.Sprintf("not message %d", n), "client_msg_id": cmid})
		require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
	}
	// A new message gets the next seq of both inboxes.
	a := &testkit.Client{T: t, Base: p.base, Token: ld.tokens[11], ID: ld.ids[11].String(), HTTP: hc}
	r := a.Do("POST", "/v1/messages", map[string]any{"to": ld.ids[12].String(), "content": "after the migration", "client_msg_id": "new-1"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	page := a.Poll(uint64(len(ld.inbox[ld.ids[11]])))
	require.Len(t, page.Events, 1)
	require.Equal(t, float64(len(ld.inbox[ld.ids[11]])+1), page.Events[0]["seq"])
	_, err := os.Stat(filepath.Join(dir, "history"))
	require.NoError(t, err)
}

// TestTornWALTail kills the binary after acknowledged sends and then
// leaves a torn write at the end of Pebble's newest write-ahead log, as a
// crash in the middle of writing a batch would (part of a record, zeros,
// garbage): the store opens, every acknowledged message is there exactly
// once, and sends go on with the next seqs.
func TestTornWALTail(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and kills the real binary") // CI runs without -short
	}
	durLeakCheck(t)
	bin := testkit.Binary(t)
	tails := map[string]func(last []byte) []byte{
		"half a record": func(last []byte) []byte { return last[len(last)/2:] },
		"zeros":         func([]byte) []byte { return make([]byte, 1000) },
		"garbage": func([]byte) []byte {
			b := make([]byte, 700)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		},
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			dir, logDir := t.TempDir(), t.TempDir()
			p := durStart(t, bin, dir, logDir, 0)
			users := testkit.SignupMany(t, p.base, "torn", 3)
			var sent []durSent
			for i := 0; i < 60; i++ {
				from, to := users[i%3], users[(i+1)%3]
				m := from.Send(to.ID, fmt.Sprintf("torn %d", i), fmt.Sprintf("t-%d", i))
				sent = append(sent, durSent{ID: m["id"].(string), Conv: durDirectConv(from.ID, to.ID), From: from.ID, To: to.ID, Content: fmt.Sprintf("torn %d", i), ClientMsgID: fmt.Sprintf("t-%d", i)})
			}
			p.kill()

			logs, err := filepath.Glob(filepath.Join(dir, "history", "*.log"))
			require.NoError(t, err)
			require.NotEmpty(t, logs, "a write-ahead log after kill -9")
			sort.Strings(logs)
			wal := logs[len(logs)-1]
			b, err := os.ReadFile(wal)
			require.NoError(t, err)
			require.NotEmpty(t, b, "the newest log holds the sends")
			f, err := os.OpenFile(wal, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write(tail(b[max(0, len(b)-600):]))
			require.NoError(t, err)
			require.NoError(t, f.Close())

			p = durStart(t, bin, dir, logDir, 1)
			for _, u := range users {
				u.Base = p.base
			}
			durCheckAll(t, users, sent, nil)
			m := users[0].Send(users[1].ID, "after the torn tail", "t-after")
			sent = append(sent, durSent{ID: m["id"].(string), Conv: durDirectConv(users[0].ID, users[1].ID), From: users[0].ID, To: users[1].ID, Content: "after the torn tail", ClientMsgID: "t-after"})
			durCheckAll(t, users, sent, nil)
		})
	}
}
