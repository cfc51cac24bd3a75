"""The statements of the bulk path (sync.db.store), written once from the schema: pure text.

Staging holds the records as the mapper makes them (publish time as Unix seconds); every
statement that reads it converts to the table's types. The profit is staged as numeric: the
connection's codec takes the mapper's int or decimal text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sync.db.schema import KEY_COLUMNS, RECORD_COLUMNS, video_daily_earnings

STAGE_TABLE = "taskbox_stage"

TARGET = video_daily_earnings.name
_DATA_COLUMNS = tuple(c for c in RECORD_COLUMNS if c not in KEY_COLUMNS)
IDS = tuple(c for c in KEY_COLUMNS if c != "billing_date")  # the date is the partition's


def _cols(prefix: str, names: Sequence[str]) -> str:
    return ", ".join(f"{prefix}{n}" for n in names)


def _ids_equal(a: str, b: str) -> str:
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in IDS)


def _data_differ(a: str, b: str) -> str:
    return f"({_cols(a + '.', _DATA_COLUMNS)}) IS DISTINCT FROM ({_cols(b + '.', _DATA_COLUMNS)})"


def _set_data(source: str) -> str:
    return ", ".join(f"{c} = {source}.{c}" for c in _DATA_COLUMNS)


# Staged as the mapper hands them over (Unix seconds), converted by the merge; the answer's
# time (Unix seconds, float) follows each record, with its app and run.
_STAGED_AS = {
    "publish_time": ("bigint", "to_timestamp({c})"),
    "answered_at": ("float8", "to_timestamp({c})"),
}
WRITTEN_COLUMNS = (*RECORD_COLUMNS, "app_id", "answered_at", "last_run_id")
"""A record as the writer takes it: the mapped row, then its app, when the platform answered with
it and the run (the mapper adds the three, so no page is copied into new tuples again). Staged
rows have these columns too (the merge takes the app and the run from its arguments); a page
appended straight into the table fills these of its columns (first_synced_at and last_synced_at
take the server's default, now())."""


def _stage_column(c: str) -> str:
    return f"NULL::{_STAGED_AS[c][0]} AS {c}" if c in _STAGED_AS else c


def _stored_column(c: str) -> str:
    return _STAGED_AS[c][1].format(c=c) + f" AS {c}" if c in _STAGED_AS else c


# The staged columns (no constraints: Python already made keys unique); the raw ones typed by
# NULL casts, as WITH NO DATA reads no row.
CREATE_STAGE = f"""
CREATE TEMP TABLE {STAGE_TABLE} ON COMMIT DELETE ROWS
AS SELECT {", ".join(map(_stage_column, WRITTEN_COLUMNS))} FROM {TARGET} WITH NO DATA
"""
# The staged rows with the target's types.
STAGED_ROWS = f"SELECT {', '.join(map(_stored_column, WRITTEN_COLUMNS))} FROM {STAGE_TABLE}"

# Rows staged by an earlier page whose key comes again: the later occurrence wins.
DROP_STAGED = f"""
DELETE FROM {STAGE_TABLE} s
USING unnest($1::bigint[], $2::bigint[]) AS r({_cols("", IDS)})
WHERE {_ids_equal("s", "r")}
"""

# Inserted rows: the record's columns, then the app, the answer's time and the bookkeeping.
_INSERTED = f"{_cols('', RECORD_COLUMNS)}, app_id, answered_at, first_synced_at, last_synced_at"

# A stored value stands against an older answer: two partitions of one run can both see a row
# whose publish time moved between their windows while they ran, and the later answer wins.
# (Rows stored before answers were timed have none: any answer is newer.)
_NOT_OLDER = "NOT coalesce({t}.answered_at > {w}.answered_at, false)"

# How many keys of other apps the merge met, and a few of them (for the log and the summary).
FOREIGN_SAMPLE = 5


@functools.cache
def merge_sql(*, creator: bool, mirror: bool) -> str:
    """The whole merge as one statement. $1 billing date, $2 run id, $3/$4 window, $5 app,
    $6 creator.

    `work` compares the staging table with the partition's stored rows (the app's own, in the
    window) in one FULL JOIN (a hash or merge join by necessity, so no estimate can turn it into
    a nested loop) and keeps only the rows that need a write: new, changed, or gone. The three
    writes then touch disjoint rows. Staged rows whose stored copy lies outside the scope (its
    publish time moved, or another app holds the key) show as new and go through ON CONFLICT,
    where (xmax = 0) still tells an insert from an update; a key another app holds is never
    moved: it is counted and sampled instead. The delete checks the scope again on the row it
    deletes: a row another partition moved out of the window meanwhile stays.
    """
    scope = "v.app_id = $5 AND v.billing_date = $1 AND v.publish_time BETWEEN $3 AND $4"
    if creator:
        scope += " AND v.douyin_id = $6"
    ids = ", ".join(f"coalesce(s.{c}, v.{c}) AS {c}" for c in IDS)
    gone = "WHEN s.video_id IS NULL THEN 'gone' " if mirror else ""
    still_in_scope = "t.app_id = $5 AND t.publish_time BETWEEN $3 AND $4"
    if creator:
        still_in_scope += " AND t.douyin_id = $6"
    return f"""
WITH work AS MATERIALIZED (
    SELECT * FROM (
        SELECT CASE WHEN v.video_id IS NULL THEN 'new' {gone}
                    WHEN s.video_id IS NOT NULL AND {_data_differ("v", "s")} THEN 'changed'
               END AS kind,
               {ids}, {_cols("s.", _DATA_COLUMNS)}, s.answered_at
        FROM ({STAGED_ROWS}) s
        FULL JOIN (SELECT * FROM {TARGET} v WHERE {scope}) v ON {_ids_equal("v", "s")}
    ) c
    WHERE kind IS NOT NULL
), updated AS (
    UPDATE {TARGET} t SET {_set_data("w")}, answered_at = w.answered_at,
                           last_synced_at = now(), last_run_id = $2
    FROM work w
    WHERE w.kind = 'changed' AND t.billing_date = $1 AND {_ids_equal("t", "w")} AND t.app_id = $5
      AND {_data_differ("t", "w")} AND {_NOT_OLDER.format(t="t", w="w")}
    RETURNING 1
), inserted AS (
    INSERT INTO {TARGET} AS t ({_INSERTED}, last_run_id)
    SELECT $1, {_cols("w.", RECORD_COLUMNS[1:])}, $5, w.answered_at, now(), now(), $2
    FROM work w WHERE w.kind = 'new'
    ORDER BY {_cols("w.", IDS)}
    ON CONFLICT ({_cols("", KEY_COLUMNS)}) DO UPDATE
    SET {_set_data("EXCLUDED")}, answered_at = EXCLUDED.answered_at,
        last_synced_at = now(), last_run_id = $2
    WHERE t.app_id = EXCLUDED.app_id AND {_data_differ("t", "EXCLUDED")}
      AND {_NOT_OLDER.format(t="t", w="EXCLUDED")}
    RETURNING (t.xmax = 0) AS fresh
), foreign_keys AS MATERIALIZED (
    SELECT t.video_id, t.task_id, t.app_id
    FROM work w JOIN {TARGET} t ON t.billing_date = $1 AND {_ids_equal("t", "w")}
    WHERE w.kind = 'new' AND t.app_id <> $5
), sample AS (
    SELECT * FROM foreign_keys ORDER BY video_id, task_id LIMIT {FOREIGN_SAMPLE}
), removed AS (
    DELETE FROM {TARGET} t USING work w
    WHERE w.kind = 'gone' AND t.billing_date = $1 AND {_ids_equal("t", "w")}
      AND {still_in_scope}
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted WHERE fresh) AS inserted,
       (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted WHERE NOT fresh) AS updated,
       (SELECT count(*) FROM removed) AS removed,
       (SELECT count(*) FROM foreign_keys) AS foreign,
       (SELECT coalesce(array_agg(video_id), '{{}}') FROM sample) AS foreign_videos,
       (SELECT coalesce(array_agg(task_id), '{{}}') FROM sample) AS foreign_tasks,
       (SELECT coalesce(array_agg(app_id), '{{}}') FROM sample) AS foreign_apps
"""


@functools.cache
def anything_stored_sql(*, creator: bool) -> str:
    """Whether the app's scope holds a stored row: $1 billing date, $2/$3 window, $4 app,
    $5 creator."""
    scope = "app_id = $4 AND billing_date = $1 AND publish_time BETWEEN $2 AND $3"
    if creator:
        scope += " AND douyin_id = $5"
    return f"SELECT EXISTS (SELECT 1 FROM {TARGET} WHERE {scope})"


# A partition with nothing stored in its scope (a backfill into an empty table, a new billing date)
# needs no join at all. No ON CONFLICT: a staged key stored outside the scope (its publish time
# moved, or another app's) raises, and the full merge, which handles it, runs instead.
# $1 billing date, $2 run id, $3 app.
INSERT_ALL = f"""
INSERT INTO {TARGET} ({_INSERTED}, last_run_id)
SELECT $1, {_cols("s.", RECORD_COLUMNS[1:])}, $3, s.answered_at, now(), now(), $2
FROM ({STAGED_ROWS}) s
ORDER BY {_cols("s.", IDS)}
"""
