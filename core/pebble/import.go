package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chatgate/chatgate/core"
)

// Import writes history records exactly as given (ids, seqs), for the
// migration of a data directory from an earlier format. Nothing else may
// write while an import runs; every record written twice is written the
// same, so an import cut short can simply be run again.
type Import struct {
	s      *Store
	b      *pebble.Batch
	newest core.ID
	n      int
}

// NewImport starts one atomic batch of imported records.
func (s *Store) NewImport() *Import { return &Import{s: s, b: s.db.NewBatch()} }

// Len is how many records the batch holds.
func (im *Import) Len() int { return im.n }

func (im *Import) conv(id string) (conv, error) {
	c, _, ok := convOf(id)
	if !ok {
		return c, fmt.Errorf("import: malformed conversation id %q", id)
	}
	return c, nil
}

// Message imports a message under its conversation.
func (im *Import) Message(m core.Message) error {
	c, err := im.conv(m.ConversationID)
	if err != nil {
		return err
	}
	im.newest = max(im.newest, m.ID)
	im.n++
	if err := im.b.Set(queueKey(m.ID, c), nil, nil); err != nil {
		return err
	}
	return im.b.Set(msgKey(c, m.ID), encodeRecord(nil, &m), nil)
}

// Inbox imports the inbox entry seq of uid, pointing to message id of conv.
func (im *Import) Inbox(uid core.ID, seq uint64, convID string, id core.ID) error {
	c, err := im.conv(convID)
	if err != nil {
		return err
	}
	im.n++
	return im.b.Set(inboxKey(uid, seq), msgRef(c, id), nil)
}

// ClientMsgID imports the client_msg_id of a send of uid.
func (im *Import) ClientMsgID(uid core.ID, cmid, convID string, id core.ID) error {
	c, err := im.conv(convID)
	if err != nil {
		return err
	}
	im.n++
	return im.b.Set(cmidKey(uid, cmid), msgRef(c, id), nil)
}

// Conversation imports that uid has the conversation.
func (im *Import) Conversation(uid core.ID, convID string) error {
	c, err := im.conv(convID)
	if err != nil {
		return err
	}
	im.n++
	return im.b.Set(convKey(uid, c), nil, nil)
}

// ReadMarker imports uid's read marker in a conversation.
func (im *Import) ReadMarker(uid core.ID, convID string, id core.ID) error {
	c, err := im.conv(convID)
	if err != nil {
		return err
	}
	im.n++
	return im.b.Set(readKey(uid, c), appendU64(nil, uint64(id)), nil)
}

// Push imports a pending notification of message id (of conv) to uid.
func (im *Import) Push(id, uid core.ID, convID string) error {
	c, err := im.conv(convID)
	if err != nil {
		return err
	}
	im.n++
	return im.b.Set(pushKey(id, uid), c.bytes(), nil)
}

// Commit writes the batch durably together with the migration's progress
// note (see MigrationState).
func (im *Import) Commit(progress string) error {
	if err := im.s.enter(); err != nil {
		return err
	}
	defer im.s.leave()
	if im.newest != 0 {
		v, ok, err := im.s.get(metaKey("newest_id"))
		if err != nil {
			return err
		}
		if !ok || len(v) != 8 || core.ID(binary.BigEndian.Uint64(v)) < im.newest {
			_ = im.b.Set(metaKey("newest_id"), appendU64(nil, uint64(im.newest)), nil)
		}
		im.s.ids.Observe(im.newest)
	}
	_ = im.b.Set(metaKey("migration"), []byte(progress), nil)
	err := im.b.Commit(pebble.Sync)
	if err == nil {
		// Imported ids are older than the indexer's cursor may be.
		im.s.idx.rewind.Store(true)
		im.s.idx.durableUpTo(im.newest)
		im.s.idx.wake()
	}
	return errors.Join(err, im.b.Close())
}

// Abort drops the batch.
func (im *Import) Abort() { im.b.Close() }

// MigrationState is the progress note of the last committed import, ""
// if none ever ran.
func (s *Store) MigrationState() (string, error) {
	if err := s.enter(); err != nil {
		return "", err
	}
	defer s.leave()
	v, _, err := s.get(metaKey("migration"))
	return string(v), err
}
