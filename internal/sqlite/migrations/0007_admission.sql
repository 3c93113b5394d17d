-- The admission controller's decisions (audit.Admission), one row each.
-- Times are unix nanoseconds; findings is a JSON array of compliance.Finding.
-- Rows are only appended, and pruned oldest first, so ids stay contiguous and
-- the newest N are the ids above max(id) - N. AUTOINCREMENT: an id is never
-- given twice, even after every row was pruned.
CREATE TABLE admission_audits (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	time            INTEGER NOT NULL,
	uid             TEXT    NOT NULL,
	cluster         TEXT    NOT NULL,
	namespace       TEXT    NOT NULL,
	name            TEXT    NOT NULL,
	kind            TEXT    NOT NULL,
	resource        TEXT    NOT NULL,
	operation       TEXT    NOT NULL,
	username        TEXT    NOT NULL,
	user_uid        TEXT    NOT NULL,
	user_groups     TEXT    NOT NULL,
	effect          TEXT    NOT NULL,
	mode            TEXT    NOT NULL,
	dry_run         INTEGER NOT NULL,
	policy_revision INTEGER NOT NULL,
	rule_name       TEXT    NOT NULL,
	message         TEXT    NOT NULL,
	findings        BLOB    NOT NULL
) STRICT;

-- Newest first, and the from/to range, without sorting.
CREATE INDEX admission_audits_time ON admission_audits (time, id);
