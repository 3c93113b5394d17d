-- Runtime defense: the Console's learned models (merged from what Defenders
-- report, edited by users) and incidents (runtime audits of one container or
-- host, grouped as they arrive).

CREATE TABLE runtime_models (
	id         TEXT    NOT NULL PRIMARY KEY,
	image      TEXT    NOT NULL,
	state      TEXT    NOT NULL,
	generation INTEGER NOT NULL,
	modified   INTEGER NOT NULL,
	doc        BLOB    NOT NULL -- runtimepolicy.Model as JSON
) STRICT;

CREATE INDEX runtime_models_image ON runtime_models (image);

CREATE TABLE incidents (
	id             TEXT    NOT NULL PRIMARY KEY, -- the first audit's defender:seq
	defender_id    TEXT    NOT NULL,
	host           TEXT    NOT NULL,
	container_id   TEXT    NOT NULL, -- '' for a host incident
	container_name TEXT    NOT NULL,
	image          TEXT    NOT NULL,
	namespace      TEXT    NOT NULL,
	category       TEXT    NOT NULL,
	detections     TEXT    NOT NULL, -- JSON list
	first_time     INTEGER NOT NULL,
	last_time      INTEGER NOT NULL,
	audits         INTEGER NOT NULL,
	acknowledged   INTEGER NOT NULL,
	ack_by         TEXT    NOT NULL,
	ack_at         INTEGER NOT NULL
) STRICT;

-- The open incident of a container: the latest of its key.
CREATE INDEX incidents_key ON incidents (defender_id, container_id, last_time);
CREATE INDEX incidents_first ON incidents (first_time);

-- Which incident each audit joined, so that an audit delivered twice joins
-- once. No foreign key: the audit is claimed before its new incident is
-- written, in the same transaction.
CREATE TABLE incident_audits (
	defender_id TEXT    NOT NULL,
	seq         INTEGER NOT NULL,
	incident_id TEXT    NOT NULL,
	time        INTEGER NOT NULL,
	PRIMARY KEY (defender_id, seq)
) STRICT;

CREATE INDEX incident_audits_incident ON incident_audits (incident_id, time);
