package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/chatgate/chatgate/core/buntdb"
	"github.com/chatgate/chatgate/core/pebble"
)

// Migration from the single-file layout (every release before the history
// moved to Pebble). It runs at Open, before the node serves, in two steps:
//
//  1. copy: every legacy history key of chatgate.db is written to Pebble in
//     batches of importChunk; each batch commits, durably and atomically
//     with it, a note of the last buntdb key it covered ("copy:<key>"), and
//     the last one "done". A copy cut short (kill -9) resumes after the
//     last note; records written twice are written the same.
//  2. delete: once the note says "done", the legacy keys are deleted from
//     chatgate.db in durable batches. A delete cut short resumes at the
//     next start, which finds the note "done" and copies nothing.
//
// Nothing is lost at any point: until "done" is durable in Pebble, the
// buntdb keys are untouched, and the node does not serve until both steps
// end.
const (
	importChunk = 5000
	deleteChunk = 20000
	stateDone   = "done"
)

// migrate moves legacy history from social to history and reports whether
// it moved or deleted anything.
func migrate(ctx context.Context, social *buntdb.Store, history *pebble.Store, log *slog.Logger) (bool, error) {
	has, err := social.HasLegacyHistory()
	if err != nil || !has {
		return false, err
	}
	state, err := history.MigrationState()
	if err != nil {
		return false, err
	}
	start := time.Now()
	if state != stateDone {
		after, _ := strings.CutPrefix(state, "copy:")
		if after != "" {
			log.Info("resuming history migration", "after_key", after)
		} else {
			log.Info("migrating history from chatgate.db to history/ (once, before serving)")
		}
		copied := 0
		last := time.Now()
		for {
			entries, next, err := social.LegacyHistory(after, importChunk)
			if err != nil {
				return false, err
			}
			im := history.NewImport()
			for _, e := range entries {
				if err := importEntry(im, e); err != nil {
					im.Abort()
					return false, err
				}
			}
			note := stateDone
			if next != "" {
				note = "copy:" + next
			}
			if err := im.Commit(note); err != nil {
				return false, fmt.Errorf("commit imported records: %w", err)
			}
			copied += len(entries)
			level := slog.LevelDebug
			if time.Since(last) > time.Second || next == "" {
				level, last = slog.LevelInfo, time.Now()
			}
			log.Log(ctx, level, "migrating history", "keys_copied", copied, "elapsed", time.Since(start).Round(time.Millisecond))
			if next == "" {
				break
			}
			after = next
		}
	}
	deleted := 0
	for {
		n, err := social.DeleteLegacy(ctx, deleteChunk)
		if err != nil {
			return true, fmt.Errorf("delete migrated keys from chatgate.db: %w", err)
		}
		if n == 0 {
			break
		}
		deleted += n
		log.Info("migrating history: removing copied keys from chatgate.db", "keys_deleted", deleted)
	}
	log.Info("history migrated", "elapsed", time.Since(start).Round(time.Millisecond))
	return true, nil
}

func importEntry(im *pebble.Import, e buntdb.LegacyEntry) error {
	needsConv := e.Kind == buntdb.LegacyInbox || e.Kind == buntdb.LegacyClientMsgID || e.Kind == buntdb.LegacyPush
	if needsConv && e.Conv == "" {
		return nil // points to a message that is not there: nothing to carry over
	}
	var err error
	switch e.Kind {
	case buntdb.LegacyMessage:
		err = im.Message(e.Message)
	case buntdb.LegacyInbox:
		err = im.Inbox(e.UserID, e.Seq, e.Conv, e.MessageID)
	case buntdb.LegacyClientMsgID:
		err = im.ClientMsgID(e.UserID, e.ClientMsgID, e.Conv, e.MessageID)
	case buntdb.LegacyConversation:
		err = im.Conversation(e.UserID, e.Conv)
	case buntdb.LegacyReadMarker:
		err = im.ReadMarker(e.UserID, e.Conv, e.MessageID)
	case buntdb.LegacyPush:
		err = im.Push(e.MessageID, e.UserID, e.Conv)
	}
	if err != nil {
		return fmt.Errorf("import %q: %w", e.Key, err)
	}
	return nil
}
