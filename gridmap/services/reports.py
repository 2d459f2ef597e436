"""Reporting incidents (上报), one or many at a time, with idempotency keys.

`create_incidents` takes a batch of reports and writes them set-based, in one transaction:

1. check each report in Python (category, severity, source, point and crs, texts, time);
   reports that fail get their own 422 and take no further part;
2. claim the idempotency keys of the batch in one INSERT … ON CONFLICT (a key held by a
   concurrent transaction blocks here until that one ends, then shows its answer);
3. one statement (REPORT_SQL) looks up the responsible grid of every point (the rule of
   `gridmap.services.locate`: the lowest code among the grids covering it, in force at the
   report time), draws the case numbers, inserts the incidents and their `report` events,
   builds each answer — the incident as a GeoJSON Feature with its likely duplicates (open,
   same category, within 50 m and 24 h, nearest first, this batch included) — stores the
   answers under their keys and notifies listeners.

So a batch costs two round trips and a commit whatever its size, and the answer's JSON is
made once, by PostgreSQL, and sent as is. The API groups concurrent reports into batches
(`gridmap.batching`); a single report is a batch of one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gridmap import vocab, workflow
from gridmap.errors import Conflict, GridmapError, InvalidInput
from gridmap.services import incidents as inc
from gridmap.services.locate import covering_grid_sql
from gridmap.workcal import calendar

MAX_KEY_LENGTH = 255
IDEMPOTENCY_TTL = dt.timedelta(hours=24)
REPORT_FUTURE_SKEW = dt.timedelta(minutes=5)  # clocks of phones and hotline systems drift
EARLIEST_REPORT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
DUPLICATE_RADIUS_M = 50.0
DUPLICATE_WINDOW = dt.timedelta(hours=24)
MAX_DUPLICATES = 20
ANONYMOUS = "anonymous"

# claim keys in a fixed order (two batches sharing keys then wait instead of deadlocking); a key
# older than the TTL is taken over
CLAIM_KEYS_SQL = text(
    """
    INSERT INTO idempotency_key AS k (caller, key, request_hash)
    SELECT x.caller, x.key, x.hash FROM json_to_recordset(CAST(:items AS json)) AS x(caller text, key text, hash text)
    ORDER BY x.caller, x.key
    ON CONFLICT (caller, key) DO UPDATE
      SET request_hash = EXCLUDED.request_hash, status_code = NULL, response = NULL, created_at = now()
      WHERE k.created_at < now() - make_interval(secs => :ttl)
    RETURNING k.caller, k.key
    """
)

STORED_SQL = text(
    """
    SELECT k.caller, k.key, k.request_hash, k.status_code, k.response::text AS response
    FROM idempotency_key k JOIN json_to_recordset(CAST(:items AS json)) AS x(caller text, key text)
      ON k.caller = x.caller AND k.key = x.key
    """
)

RELEASE_KEYS_SQL = text(
    """
    DELETE FROM idempotency_key k USING json_to_recordset(CAST(:items AS json)) AS x(caller text, key text)
    WHERE k.caller = x.caller AND k.key = x.key
    """
)

# the nearest grid in force (KNN on the GiST index), for the "outside every grid" message
NEAREST_GRID_SQL = text(
    """
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
    SELECT g.code, g.name, ST_Distance(g.geom::geography, p.g::geography) AS distance_m
    FROM grid g, p
    WHERE g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)
    ORDER BY g.geom <-> p.g
    LIMIT 1
    """
)

# One statement writes a batch and answers it:
#   x       the reports that found their grid (the rule of gridmap.services.locate), shaped as
#           `incident` rows, with their ids and case numbers drawn once (materialised);
#   ins, ev the incidents and their `report` events;
#   answer  each incident as a Feature (incidents.FEATURE_JSON) with its likely duplicates:
#           open cases of the same category within the radius and the time window, among the
#           cases already stored and the other reports of this batch. Candidates come from the
#           spatial index of open cases alone (ix_incident_open_geom; OFFSET 0 keeps the other
#           conditions out of that scan): a busy day or a common category holds tens of
#           thousands of cases, the 100 m box around a point a few;
#   stored  the answers under their idempotency keys (claimed by the previous statement).
# Reports outside every grid are absent from x, hence from the result.
REPORT_SQL = text(
    """
    WITH r AS (
      SELECT * FROM json_to_recordset(CAST(:items AS json)) AS r(
        ord int, category text, severity int, source text, status text, level text, title text,
        description text, address text, lon float8, lat float8, reporter_id int, reported_at timestamptz,
        day date, version int, seq int, action text, to_status text, note text, caller text, key text)
    ), x AS MATERIALIZED (
      SELECT r.ord, r.caller, r.key, r.seq, r.action, r.to_status, r.note, r.day,
             nextval('incident_id_seq') AS id, gridmap_case_serial(r.day) AS serial,
             r.category AS category_code, r.severity, r.source, r.status, r.level, r.title, r.description,
             r.address, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326) AS geom, g.id AS grid_id,
             g.code AS grid_code, NULL::int AS assignee_id, r.reporter_id, r.reported_at,
             NULL::timestamptz AS registered_at, NULL::timestamptz AS dispatched_at,
             NULL::timestamptz AS deadline_at, NULL::timestamptz AS resolved_at, NULL::timestamptz AS closed_at,
             0 AS rework_count, 0 AS escalation_count, r.version, false AS is_synthetic
      FROM r CROSS JOIN LATERAL ({covering}) g
      ORDER BY r.ord
    ), i AS MATERIALIZED (
      SELECT x.*, 'AJ' || to_char(x.day, 'YYYYMMDD')
               || CASE WHEN x.serial < 1000000 THEN lpad(x.serial::text, 6, '0') ELSE x.serial::text END AS code
      FROM x
    ), ins AS (
      INSERT INTO incident (id, code, category_code, severity, source, status, level, title, description,
        address, geom, grid_id, grid_code, reporter_id, reported_at, version)
      SELECT id, code, category_code, severity, source, status, level, title, description, address, geom,
             grid_id, grid_code, reporter_id, reported_at, version
      FROM i
    ), ev AS (
      INSERT INTO incident_event (incident_id, seq, action, from_status, to_status, actor_id, at, note)
      SELECT i.id, i.seq, i.action, NULL, i.to_status, i.reporter_id, i.reported_at, i.note FROM i
    ), answer AS MATERIALIZED (
      SELECT i.ord, i.id, i.caller, i.key, i.version, i.code, i.action, i.status, i.level, i.grid_code,
             ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, {feature} AS body
      FROM i JOIN category c ON c.code = i.category_code
      CROSS JOIN LATERAL (
        SELECT coalesce(json_agg(json_build_object('id', o.id, 'code', o.code, 'status', o.status,
                 'category', o.category_code, 'reported_at', o.reported_at, 'grid_code', o.grid_code,
                 'distance_m', round(o.distance::numeric, 1)) ORDER BY o.distance, o.reported_at DESC, o.id),
               '[]'::json) AS duplicates
        FROM (
          SELECT o.*, ST_Distance(o.geom::geography, i.geom::geography) AS distance
          FROM (
            SELECT e.id, e.code, e.status, e.category_code, e.reported_at, e.grid_code, e.geom
            FROM (SELECT * FROM incident e WHERE e.geom && ST_Expand(i.geom,
                    least(:radius / (111000 * greatest(cos(radians(ST_Y(i.geom))), 1e-6)) * 1.05, 360.0),
                    :radius / 110000.0 * 1.05)
                  AND e.status NOT IN ('closed', 'rejected')
                  OFFSET 0) e
            UNION ALL
            SELECT s.id, s.code, s.status, s.category_code, s.reported_at, s.grid_code, s.geom FROM i AS s
          ) o
          WHERE o.id <> i.id AND o.category_code = i.category_code AND o.status = ANY(:open)
            AND o.reported_at >= i.reported_at - :window AND o.reported_at <= i.reported_at + :window
            AND ST_DWithin(o.geom::geography, i.geom::geography, :radius)
          ORDER BY distance, o.reported_at DESC, o.id
          LIMIT :max) o
      ) d
    ), stored AS (
      UPDATE idempotency_key k SET status_code = 201, response = a.body::jsonb
      FROM answer a WHERE a.key IS NOT NULL AND k.caller = a.caller AND k.key = a.key
    )
    SELECT a.ord, a.id, a.version, a.body::text,
           pg_notify(:channel, json_build_object('id', a.id, 'code', a.code, 'action', a.action,
             'status', a.status, 'level', a.level, 'grid_code', a.grid_code, 'lon', a.lon, 'lat', a.lat)::text)
    FROM answer a
    """.replace("{covering}", covering_grid_sql("ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)", "r.reported_at"))
    .replace("{feature}", inc.FEATURE_JSON.replace("/*members*/", ", 'duplicates', d.duplicates"))
)


def _pyformat(sql: str) -> str:
    """A statement for psycopg: :name → %(name)s, whitespace collapsed (short queries are cached).

    No `--` comments in such SQL: collapsed to one line they would swallow the rest."""
    if "--" in sql:
        raise ValueError("hot SQL must not contain -- comments")
    return re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", " ".join(sql.split()))


CLAIM_KEYS_PG = _pyformat(CLAIM_KEYS_SQL.text)
REPORT_PG = _pyformat(REPORT_SQL.text)


def _hot(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a hot statement on the session's own connection (same transaction) straight through
    psycopg, as a prepared statement: SQLAlchemy's per-statement work is most of a batch's cost."""
    driver = session.connection().connection.driver_connection
    return driver.execute(sql, params, prepare=True).fetchall()  # type: ignore[union-attr]


@dataclass(frozen=True)
class ReportRequest:
    """One report as a client sent it; `body` is what the idempotency hash is taken over."""

    category: str
    source: str
    lon: float
    lat: float
    crs: str | None = None
    severity: int = 2
    title: str | None = None
    description: str | None = None
    address: str | None = None
    reported_at: dt.datetime | None = None
    reporter_id: int | None = None
    key: str | None = None  # Idempotency-Key
    caller: str = ANONYMOUS  # the calling system: keys are scoped per caller
    body: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Answer:
    """A report's answer: the JSON text sent to the client (and kept under its key)."""

    status: int
    text: str
    id: int
    version: int
    replayed: bool = False  # True when this is the stored answer to an earlier request with the key

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.text)


Outcome = Answer | GridmapError


def request_hash(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_key(req: ReportRequest) -> None:
    if not req.key or len(req.key) > MAX_KEY_LENGTH or not req.key.isprintable():
        raise InvalidInput(
            f"Invalid value for header Idempotency-Key: 1 to {MAX_KEY_LENGTH} printable characters"
        )
    if not req.caller or len(req.caller) > MAX_KEY_LENGTH or not req.caller.isprintable():
        raise InvalidInput(
            f"Invalid value for header X-Client-Id: 1 to {MAX_KEY_LENGTH} printable characters"
        )


def _prepare(session: Session, ord_: int, req: ReportRequest, now: dt.datetime) -> dict[str, Any]:
    """Check one report and turn it into the row REPORT_SQL takes; raises InvalidInput."""
    if req.key is not None:
        _check_key(req)
    cat = inc._category(session, req.category)
    if not cat["active"]:
        raise InvalidInput(
            f"Category {cat['code']!r} ({cat['name_zh']}) is no longer in use; choose another"
        )
    inc._severity(req.severity)
    inc._choice("source", req.source, vocab.INCIDENT_SOURCES)
    lon, lat = inc.point_to_wgs84(req.lon, req.lat, req.crs)
    when = inc._aware("reported_at", req.reported_at) or now
    if when > now + REPORT_FUTURE_SKEW:
        raise InvalidInput("Invalid value for parameter reported_at: lies in the future")
    if when < EARLIEST_REPORT:
        raise InvalidInput("Invalid value for parameter reported_at: earlier than 2000-01-01")
    if req.reporter_id is not None:
        inc._id("reporter", req.reporter_id)
    step = workflow.apply(None, "report", at=when, actor_id=req.reporter_id, note="上报 reported")
    return {
        "ord": ord_, "category": cat["code"], "severity": req.severity, "source": req.source,
        "status": step.state.status, "level": step.state.level, "title": inc._text("title", req.title),
        "description": inc._text("description", req.description), "address": inc._text("address", req.address),
        "lon": lon, "lat": lat, "reporter_id": req.reporter_id, "reported_at": when.isoformat(),
        "day": when.astimezone(calendar().tz).date().isoformat(), "version": step.state.version,
        "seq": step.event.seq, "action": step.event.action, "to_status": step.event.to_status,
        "note": step.event.note, "caller": req.caller if req.key is not None else None, "key": req.key,
    }  # fmt: skip


def _outside_every_grid(session: Session, lon: float, lat: float, at: dt.datetime) -> InvalidInput:
    near = session.execute(NEAREST_GRID_SQL, {"lon": lon, "lat": lat, "at": at}).first()
    where = f"The point ({lon:.6f}, {lat:.6f}) lies outside every grid in force"
    if near is None:
        return InvalidInput(f"{where}: no grid is in force at {at.isoformat()}")
    dist = round(float(near.distance_m))
    return InvalidInput(
        f"{where}; the nearest grid is {near.code} ({near.name}), {dist:,} m away",
        nearest_grid=near.code, distance_m=dist,
    )  # fmt: skip


def _unknown_reporters(session: Session, rows: list[dict[str, Any]]) -> set[int]:
    ids = {r["reporter_id"] for r in rows if r["reporter_id"] is not None}
    if not ids:
        return set()
    known = session.execute(
        text("SELECT id FROM staff WHERE id = ANY(:ids)"), {"ids": sorted(ids)}
    ).scalars()
    return ids - set(known)


def _replay(req: ReportRequest, digest: str, stored: Any) -> Outcome:
    if stored is None:  # released by a transaction that failed after we waited: cannot happen twice
        return Conflict(
            f"A request with Idempotency-Key {req.key!r} is still being processed; retry shortly"
        )
    if stored.request_hash != digest:
        return InvalidInput(
            f"Idempotency-Key {req.key!r} was already used with a different request body; "
            "send a new key for a new request"
        )
    if stored.status_code is None:  # cannot be seen once committed; defensive
        return Conflict(
            f"A request with Idempotency-Key {req.key!r} is still being processed; retry shortly"
        )
    body = json.loads(stored.response)
    return Answer(int(stored.status_code), stored.response, int(body["id"]), int(body["properties"]["version"]), replayed=True)


def create_incidents(
    session: Session, requests: Sequence[ReportRequest], *, now: dt.datetime | None = None
) -> list[Outcome]:
    """Report incidents, set-based, in the caller's transaction; one outcome per request, in order.

    An outcome is the answer (201 and the incident as a GeoJSON Feature with `duplicates`, or
    the stored answer when the Idempotency-Key was seen with the same body) or the error for
    that request alone; a bad report never stops the others. Each incident stores the grid
    responsible at its report time. Failed reports leave nothing behind, not even their key.
    """
    now = now or dt.datetime.now(dt.UTC)
    out: list[Outcome | None] = [None] * len(requests)
    rows: dict[int, dict[str, Any]] = {}
    for i, req in enumerate(requests):
        try:
            rows[i] = _prepare(session, i, req, now)
        except GridmapError as exc:
            out[i] = exc
    unknown = _unknown_reporters(session, list(rows.values()))
    for i in [i for i, r in rows.items() if r["reporter_id"] in unknown]:
        out[i] = InvalidInput(
            f"Unknown actor: no staff member with id {rows.pop(i)['reporter_id']}"
        )

    # a key repeated inside the batch: the later requests are answered after the first
    digests = {i: request_hash(requests[i].body or {}) for i in rows if requests[i].key is not None}
    first: dict[tuple[str, str], int] = {}
    later: list[int] = []
    for i in sorted(digests):
        slot = (requests[i].caller, str(requests[i].key))
        if slot in first:
            later.append(i)
            rows.pop(i)
        else:
            first[slot] = i
    if first:
        claim = [{"caller": c, "key": k, "hash": digests[i]} for (c, k), i in first.items()]
        params = {"items": json.dumps(claim), "ttl": IDEMPOTENCY_TTL.total_seconds()}
        claimed = {(c, k) for c, k in _hot(session, CLAIM_KEYS_PG, params)}
        seen = [{"caller": c, "key": k} for (c, k) in first if (c, k) not in claimed]
        if seen:
            stored = {
                (s.caller, s.key): s
                for s in session.execute(STORED_SQL, {"items": json.dumps(seen)})
            }
            for slot in map(lambda s: (s["caller"], s["key"]), seen):
                i = first.pop(slot)
                rows.pop(i)
                out[i] = _replay(requests[i], digests[i], stored.get(slot))

    written: set[int] = set()
    if rows:
        params = {"items": json.dumps(list(rows.values()), ensure_ascii=False), "channel": inc.NOTIFY_CHANNEL,
                  "now": now, "open": list(vocab.OPEN_STATUSES), "window": DUPLICATE_WINDOW,
                  "radius": DUPLICATE_RADIUS_M, "max": MAX_DUPLICATES}  # fmt: skip
        for o, incident_id, version, body, _ in _hot(session, REPORT_PG, params):
            out[o] = Answer(201, body, int(incident_id), int(version))
            written.add(o)
    outside = [i for i in rows if i not in written]
    for i in outside:
        r = rows[i]
        out[i] = _outside_every_grid(session, r["lon"], r["lat"], dt.datetime.fromisoformat(r["reported_at"]))
    release = [{"caller": requests[i].caller, "key": requests[i].key} for i in outside if requests[i].key is not None]
    if release:
        session.execute(RELEASE_KEYS_SQL, {"items": json.dumps(release)})

    if later:  # their keys are now claimed (and answered) in this transaction, or free again
        for i, outcome in zip(
            later, create_incidents(session, [requests[i] for i in later], now=now), strict=True
        ):
            out[i] = outcome
    return [o if o is not None else Conflict("The report was not processed; retry") for o in out]


def create_incident(session: Session, **report: Any) -> dict[str, Any]:
    """Report one incident (keyword arguments as in ReportRequest); raises its error."""
    now = report.pop("now", None)
    outcome = create_incidents(session, [ReportRequest(**report)], now=now)[0]
    if isinstance(outcome, GridmapError):
        raise outcome
    return outcome.body


class ReportWriter:
    """`create_incidents` for gridmap.batching: each batch in a transaction of its own, on a
    connection each writer thread keeps (no pool checkout and ping per batch).

    A connection the server closed is dropped and the batch tried once more on a new one when
    the failure came before the commit (nothing was written); a failure in the commit itself
    is not retried (it may have been written) and reaches the callers.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._open: set[Connection] = set()
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._local.conn = self.engine.connect()
            with self._lock:
                self._open.add(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def __call__(self, requests: Sequence[ReportRequest]) -> list[Outcome]:
        for attempt in (1, 2):
            conn = self._connection()
            before_commit = True
            try:
                with conn.begin():
                    with Session(bind=conn, expire_on_commit=False) as session:
                        outcomes = create_incidents(session, requests)
                    before_commit = False
                return outcomes
            except DBAPIError as exc:
                self._drop(conn)
                if not (attempt == 1 and before_commit and exc.connection_invalidated):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()
