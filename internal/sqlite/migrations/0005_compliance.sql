-- The current compliance state: the latest result of each container (by host
-- and container ID) and of each host (container_id ''), written by
-- AppendEvents from compliance.container and compliance.host events in the
-- transaction that stores them. A newer result replaces the row and its
-- findings; a clean result has no findings. Times are unix nanoseconds.
CREATE TABLE compliance_results (
	host            TEXT    NOT NULL,
	container_id    TEXT    NOT NULL, -- '' for the host's own result
	container_name  TEXT    NOT NULL,
	image           TEXT    NOT NULL,
	pod             TEXT    NOT NULL,
	namespace       TEXT    NOT NULL,
	defender_id     TEXT    NOT NULL, -- the event this result came from
	seq             INTEGER NOT NULL,
	time            INTEGER NOT NULL,
	policy_revision INTEGER NOT NULL,
	reason          TEXT    NOT NULL, -- event.Compliance.Trigger
	findings        BLOB    NOT NULL, -- JSON array of compliance.Finding
	PRIMARY KEY (host, container_id)
) STRICT, WITHOUT ROWID;

-- The findings of the current results, one row each, for the explorer's
-- counts per check. n is the finding's index in compliance_results.findings.
CREATE TABLE compliance_findings (
	host         TEXT    NOT NULL,
	container_id TEXT    NOT NULL,
	n            INTEGER NOT NULL,
	check_slug   TEXT    NOT NULL,
	prisma_id    TEXT    NOT NULL, -- '' when the check has none
	severity     TEXT    NOT NULL,
	title        TEXT    NOT NULL,
	PRIMARY KEY (host, container_id, n),
	FOREIGN KEY (host, container_id) REFERENCES compliance_results (host, container_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE INDEX compliance_findings_check ON compliance_findings (check_slug, prisma_id);
