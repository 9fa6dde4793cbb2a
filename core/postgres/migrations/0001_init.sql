-- 0001: the whole store. Keys lead with the user or conversation they
-- belong to (see doc.go); ids are snowflakes stored as bigint; text that is
-- compared by prefix uses the C collation so that order is byte order
-- whatever the database's locale.

-- Accounts. The case-folded username (folded in Go, so that folding does
-- not depend on the database's locale) is unique through its own table,
-- keyed by the name, so users can be keyed by id alone.
CREATE TABLE users (
	id            bigint      PRIMARY KEY,
	username      text        NOT NULL,
	display_name  text        NOT NULL,
	display_key   text        COLLATE "C" NOT NULL, -- lower-cased display_name, for prefix search
	password_hash bytea       NOT NULL,
	created_at    timestamptz NOT NULL
);
CREATE INDEX users_display_key ON users (display_key);

CREATE TABLE usernames (
	username_key text   COLLATE "C" PRIMARY KEY, -- lower-cased username
	user_id      bigint NOT NULL
);

-- Devices of a user, and the token hash that authenticates each; the
-- lookup by token has its own table keyed by the hash.
CREATE TABLE devices (
	user_id    bigint NOT NULL,
	id         bigint NOT NULL,
	token_hash bytea  NOT NULL,
	PRIMARY KEY (user_id, id)
);

CREATE TABLE device_tokens (
	token_hash bytea       PRIMARY KEY,
	user_id    bigint      NOT NULL,
	device_id  bigint      NOT NULL,
	name       text        NOT NULL,
	created_at timestamptz NOT NULL
);

-- user_id asked friend_id to be friends; a friendship is both rows.
CREATE TABLE friends (
	user_id   bigint NOT NULL,
	friend_id bigint NOT NULL,
	PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX friends_incoming ON friends (friend_id, user_id);

CREATE TABLE groups (
	id         bigint      PRIMARY KEY,
	name       text        NOT NULL,
	owner_id   bigint      NOT NULL,
	created_at timestamptz NOT NULL
);

-- pos orders members by joining, for the owner's succession.
CREATE TABLE group_members (
	group_id bigint NOT NULL,
	user_id  bigint NOT NULL,
	pos      bigint NOT NULL,
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id, group_id);

CREATE TABLE presence (
	user_id        bigint PRIMARY KEY,
	status         text   NOT NULL,
	last_active_at timestamptz
);

-- Messages of a conversation ("d_<lo>_<hi>" or "g_<group>"). The content
-- is bytea: message text may hold U+0000, which PostgreSQL text cannot.
-- sender_id rides in the primary key's index so unread counts are
-- index-only scans.
CREATE TABLE messages (
	conversation_id text        COLLATE "C" NOT NULL,
	id              bigint      NOT NULL,
	sender_id       bigint      NOT NULL,
	recipient_id    bigint      NOT NULL, -- 1:1 recipient, or 0
	group_id        bigint      NOT NULL, -- group, or 0
	content         bytea       NOT NULL,
	created_at      timestamptz NOT NULL,
	client_msg_id   text        NOT NULL,
	PRIMARY KEY (conversation_id, id) INCLUDE (sender_id)
);

-- The newest seq of each user's inbox, and the id of the newest message
-- delivered to it. Appends lock these rows (in user id order) to give out
-- seqs; they are updated on every message, so pages keep room for HOT
-- updates.
CREATE TABLE inbox_heads (
	user_id bigint PRIMARY KEY,
	head    bigint NOT NULL,
	last_id bigint NOT NULL
) WITH (fillfactor = 50);

-- One row per delivery: the user's seq points at a message.
CREATE TABLE inbox (
	user_id         bigint NOT NULL,
	seq             bigint NOT NULL,
	conversation_id text   COLLATE "C" NOT NULL,
	message_id      bigint NOT NULL,
	PRIMARY KEY (user_id, seq)
);

-- client_msg_id idempotency, per sender.
CREATE TABLE client_msg_ids (
	sender_id       bigint NOT NULL,
	client_msg_id   text   COLLATE "C" NOT NULL,
	conversation_id text   COLLATE "C" NOT NULL,
	message_id      bigint NOT NULL,
	PRIMARY KEY (sender_id, client_msg_id)
);

-- A user's conversations: the newest message delivered to it (0: none
-- since joining, not listed) and its read marker. last_id is not indexed
-- so that its update on every message stays a HOT update; a listing sorts
-- one user's rows.
CREATE TABLE user_conversations (
	user_id         bigint NOT NULL,
	conversation_id text   COLLATE "C" NOT NULL,
	group_id        bigint NOT NULL, -- the group of a group conversation, or 0
	last_id         bigint NOT NULL,
	read_up_to      bigint NOT NULL,
	PRIMARY KEY (user_id, conversation_id)
) WITH (fillfactor = 70);

-- Push notifications not yet accepted by a provider. claimed_by and
-- claimed_until are the lease of the store instance handing the entry to
-- its pusher (see push.go).
CREATE TABLE push_outbox (
	message_id      bigint      NOT NULL,
	user_id         bigint      NOT NULL,
	conversation_id text        COLLATE "C" NOT NULL,
	claimed_by      bigint,
	claimed_until   timestamptz,
	PRIMARY KEY (message_id, user_id)
);
