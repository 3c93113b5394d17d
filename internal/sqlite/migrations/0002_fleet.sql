-- Defenders, their certificates and events, and the policy snapshot pushed to
-- them. Times are unix nanoseconds (UTC); 0 is the zero time. Unsigned
-- counters and seqs are stored as INTEGER (signed 64-bit).

CREATE TABLE defenders (
	id              TEXT    NOT NULL PRIMARY KEY,
	hostname        TEXT    NOT NULL,
	host_network    INTEGER NOT NULL,
	version         TEXT    NOT NULL,
	os              TEXT    NOT NULL,
	kernel          TEXT    NOT NULL,
	runtimes        TEXT    NOT NULL, -- JSON array of strings
	capabilities    TEXT    NOT NULL, -- JSON array of strings
	connected       INTEGER NOT NULL,
	last_seen       INTEGER NOT NULL,
	cert_serial     TEXT    NOT NULL,
	cert_not_after  INTEGER NOT NULL,
	revoked         INTEGER NOT NULL,
	revoked_at      INTEGER NOT NULL,
	spool_depth     INTEGER NOT NULL,
	events_dropped  INTEGER NOT NULL,
	stored_seq      INTEGER NOT NULL, -- highest event seq stored; only AppendEvents moves it
	policy_revision INTEGER NOT NULL,
	created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE defender_certs (
	serial      TEXT    NOT NULL PRIMARY KEY,
	defender_id TEXT    NOT NULL REFERENCES defenders (id) ON DELETE CASCADE,
	issued_at   INTEGER NOT NULL,
	not_after   INTEGER NOT NULL,
	revoked_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX defender_certs_defender_id ON defender_certs (defender_id, issued_at);

-- Events are keyed by what makes delivery exactly once. WITHOUT ROWID stores
-- them in the primary key's b-tree: one b-tree write per event instead of two.
-- No foreign key: AppendEvents checks the Defender once per batch, not per row.
CREATE TABLE events (
	defender_id TEXT    NOT NULL,
	seq         INTEGER NOT NULL,
	time        INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	data        BLOB    NOT NULL,
	PRIMARY KEY (defender_id, seq)
) STRICT, WITHOUT ROWID;

-- Every index costs the ingest path: this one about a quarter of its
-- throughput. One on kind cost another third and is left out; a kind filter
-- without a Defender or time range scans.
CREATE INDEX events_time ON events (time);

CREATE TABLE policies (
	type     TEXT    NOT NULL PRIMARY KEY,
	doc      BLOB    NOT NULL,
	revision INTEGER NOT NULL -- the snapshot revision this document was stored at
) STRICT;

-- The snapshot's current revision: one row, 0 until the first PutPolicy.
CREATE TABLE policy_revision (
	id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	revision INTEGER NOT NULL
) STRICT;

INSERT INTO policy_revision (id, revision) VALUES (1, 0);
