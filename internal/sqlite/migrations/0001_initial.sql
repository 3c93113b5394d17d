-- The Console's first schema. Times are unix nanoseconds (UTC); 0 is the zero time.

CREATE TABLE users (
	username            TEXT    NOT NULL PRIMARY KEY,
	role                TEXT    NOT NULL,
	auth_type           TEXT    NOT NULL,
	password_hash       TEXT    NOT NULL,
	created_at          INTEGER NOT NULL,
	last_modified       INTEGER NOT NULL,
	password_changed_at INTEGER NOT NULL
) STRICT;

CREATE TABLE access_keys (
	id           TEXT    NOT NULL PRIMARY KEY,
	username     TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
	role         TEXT    NOT NULL,
	name         TEXT    NOT NULL,
	secret_hash  TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL
) STRICT;

-- Foreign keys are not indexed by SQLite; the cascade and AccessKeys(username) need this.
CREATE INDEX access_keys_username ON access_keys (username);

CREATE TABLE audits_mgmt (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,
	username  TEXT    NOT NULL,
	type      TEXT    NOT NULL,
	method    TEXT    NOT NULL,
	api       TEXT    NOT NULL,
	status    TEXT    NOT NULL,
	source_ip TEXT    NOT NULL,
	diff      TEXT    NOT NULL
) STRICT;

CREATE INDEX audits_mgmt_time ON audits_mgmt (time);

CREATE TABLE settings (
	key   TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
