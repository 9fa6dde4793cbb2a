-- 0002: search and mentions.
--
-- terms are the message's conversation id followed by core.Terms of its
-- content, made in Go so that both stores index the same terms (no term
-- holds the '_' of a conversation id, so the id matches no query term).
-- They are NULL for a message of an earlier release not yet indexed: the
-- store's backfill fills them in (backfill.go). Adding a nullable column
-- rewrites nothing, so this migration is quick on a large table; building
-- the two indexes reads it once.
--
-- The GIN index finds the messages holding every term of a query, and,
-- with the conversation id as one more term, those of one conversation:
-- an intersection of posting lists. See find.go for when a search uses it
-- and when it reads a conversation newest first through the primary key.
ALTER TABLE messages ADD COLUMN terms text[];
CREATE INDEX messages_terms ON messages USING gin (terms);

-- What the backfill still has to do; empty once it is done, since every
-- message appended from now on has terms.
CREATE INDEX messages_unindexed ON messages (id) WHERE terms IS NULL;

-- The users the message mentions (core.SendRequest.Mentions), NULL for
-- none.
ALTER TABLE messages ADD COLUMN mentions bigint[];

-- One row per mentioned recipient of a message: a user's mentions newest
-- first are a scan of their key. group_id (0 for a 1:1) lets the read skip
-- the mentions of groups the user has left.
CREATE TABLE mentions (
	user_id         bigint NOT NULL,
	message_id      bigint NOT NULL,
	conversation_id text   COLLATE "C" NOT NULL,
	group_id        bigint NOT NULL,
	PRIMARY KEY (user_id, message_id)
);
