-- The container a runtime event ran in: container.id of its event.Runtime
-- JSON, NULL for a host process or an event of another kind.
--
-- Every byte, index and expression the ingest path evaluates costs
-- throughput. BenchmarkAppendEvents (about 480-byte runtime events of a
-- container), against about 110,000-130,000 events/s without this migration
-- on the same, busy, 2-CPU machine:
--   - VIRTUAL generated columns over json_extract for the container ID, image
--     and host, indexed: under 40,000 events/s. SQLite parses every event's
--     JSON on insert, and in a STRICT table it computes even unindexed
--     generated columns to check their type.
--   - container_id stored, filled by AppendEvents from a scan of the JSON it
--     holds, indexed on (container_id, time): about 70% of the throughput; on
--     its 12-character short ID: about 75%.
--   - container_id stored with only the partial index below: about 85-90%.
-- So the container ID is a column and only host events, a small share, are
-- indexed. The container filter reads the column along events_time; image and
-- host filters read the JSON of the rows another index selects.
ALTER TABLE events ADD COLUMN container_id TEXT;

UPDATE events SET container_id = nullif(CAST(json_extract(data, '$.container.id') AS TEXT), '')
WHERE json_valid(data) AND json_type(data) = 'object';

-- Host events (no container) in time order, without walking the many
-- container events around them.
CREATE INDEX events_host_time ON events (time) WHERE container_id IS NULL;
