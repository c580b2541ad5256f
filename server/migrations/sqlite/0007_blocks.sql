-- Abuse defense: destinations (a number, a number prefix, a country) that a rule blocked,
-- with why and until when. Rows stay after a block ends (a block that comes back within a
-- day lasts longer) and are removed a week after they ended. `enforced` is 0 for a block the
-- pumping guard only records (level `monitor`).
CREATE TABLE blocks (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    strike INTEGER NOT NULL,
    enforced INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL,
    lifted_ms INTEGER,
    lifted_by TEXT
);
CREATE INDEX blocks_by_end ON blocks (ends_ms);
