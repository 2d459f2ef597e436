"""Generate the demo city and load it into PostGIS with COPY, in one transaction.

Secondary indexes are dropped before the bulk load and rebuilt after it (faster than updating
them row by row); constraints stay on, so the database still checks every row it receives.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import shapely
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, text

from gridmap.crs import metric_epsg_for, transformer
from gridmap.db import copy_in
from gridmap.demo import activity, people
from gridmap.demo.city import SCALES, City, generate
from gridmap.errors import InvalidInput, SetupError
from gridmap.workcal import WorkCalendar

CENTRE = (117.27, 31.86)  # a real-world location in China (Hefei area); the city itself is fictional
TZ = ZoneInfo("Asia/Shanghai")
DATA_TABLES = [
    "audit_log", "patrol_ping", "patrol_track", "incident_event", "incident", "duty_roster", "staff_scope",
    "resident", "household", "building", "camera", "service_point", "road", "plan_grid", "grid", "plan",
    "staff", "admin_area", "demo_info",
]  # fmt: skip
STEPS = ["generate city", "people", "incidents", "patrols", "assets", "load", "indexes"]


@dataclass
class DemoResult:
    scale: str
    seed: int
    counts: dict[str, int]
    seconds: float


def _to_4326(geoms: np.ndarray, epsg: int) -> np.ndarray:
    tr = transformer(epsg, 4326)
    out = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return shapely.set_srid(out, 4326)


def _multi(polys: np.ndarray) -> np.ndarray:
    parts, idx = shapely.get_parts(polys, return_index=True)
    return shapely.multipolygons(parts, indices=idx)


def _ewkb(geoms: np.ndarray) -> np.ndarray:
    return shapely.to_wkb(shapely.set_srid(geoms, 4326), hex=True, include_srid=True)


def _copy(raw, table: str, frame: pd.DataFrame, chunk: int = 250_000) -> None:  # type: ignore[no-untyped-def]
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    for start in range(0, len(frame), chunk):
        buf = io.StringIO()
        frame.iloc[start : start + chunk].to_csv(buf, index=False, header=False, na_rep="")
        buf.seek(0)
        copy_in(raw, f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)


def generate_frames(seed: int, scale_name: str, until: dt.datetime, categories: pd.DataFrame,
                    advance: Callable[[str], None] = lambda _: None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Everything the demo loads, as DataFrames in table order (ids assigned here)."""
    scale = SCALES[scale_name]
    epsg = metric_epsg_for(CENTRE[0])
    city: City = generate(seed, scale, CENTRE, epsg)
    advance("generate city")
    to_ll = transformer(epsg, 4326).transform
    rng = np.random.default_rng([seed, 2])
    d, s, c, g, b = city.districts, city.streets, city.communities, city.grids, city.buildings
    n_d, n_s, n_c = len(d["code"]), len(s["code"]), len(c["code"])
    admin = pd.DataFrame({
        "id": np.arange(1, n_d + n_s + n_c + 1),
        "code": np.concatenate([d["code"], s["code"], c["code"]]),
        "level": ["district"] * n_d + ["street"] * n_s + ["community"] * n_c,
        "name": np.concatenate([d["name"], s["name"], c["name"]]),
        "name_en": np.concatenate([d["name_en"], s["name_en"], c["name_en"]]),
        "parent_id": pd.array(np.concatenate([np.full(n_d, -1), s["district"] + 1, c["street"] + n_d + 1]), dtype="Int64"),
        "geom": _ewkb(_multi(_to_4326(np.concatenate([d["geom"], s["geom"], c["geom"]]), epsg))),
    })  # fmt: skip
    admin.loc[admin["parent_id"] < 0, "parent_id"] = pd.NA
    valid_from = (until - dt.timedelta(days=365)).astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    grid_ids = np.arange(1, len(g["code"]) + 1)
    grids = pd.DataFrame({
        "id": grid_ids, "code": g["code"], "name": g["name"], "kind": g["kind"],
        "community_id": g["community"] + n_d + n_s + 1, "valid_from": valid_from,
        "geom": _ewkb(_multi(_to_4326(g["geom"], epsg))),
    })  # fmt: skip
    roads = pd.DataFrame({
        "id": np.arange(1, len(city.roads["geom"]) + 1), "name": city.roads["name"], "kind": city.roads["kind"],
        "width_m": city.roads["width"], "geom": _ewkb(_to_4326(city.roads["geom"], epsg)),
    })  # fmt: skip
    bldg_ids = np.arange(1, len(b["geom"]) + 1)
    order = np.argsort(b["grid"], kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = people.ranks_within(b["grid"][order])
    bgrid_code = g["code"][b["grid"]]
    comm_name = c["name"][g["community"][b["grid"]]]
    suffix = np.where(np.isin(b["use"], ["residential", "mixed"]), "号楼", "号")
    buildings = pd.DataFrame({
        "id": bldg_ids,
        "code": np.char.add(np.char.add(bgrid_code.astype(str), "-"), np.char.zfill((rank + 1).astype(str), 4)),
        "use": b["use"], "floors": b["floors"], "households": b["households"], "grid_code": bgrid_code,
        "geom": _ewkb(_multi(_to_4326(b["geom"], epsg))),
    })  # fmt: skip
    buildings.insert(2, "address", [f"{a}{r + 1}{sx}" for a, r, sx in zip(comm_name, rank, suffix, strict=True)])
    today = until.astimezone(TZ).date()
    hh = people.households(rng, city, bldg_ids)
    district_of_grid = d["code"][s["district"][c["street"][g["community"]]]]
    res = people.residents(rng, city, hh, bldg_ids, district_of_grid, today)
    staff_df, scope_df, roster_df = people.staff(rng, city)
    advance("people")
    cal = WorkCalendar()
    inc, evs = activity.incidents(rng, city, categories, staff_df, scope_df, grid_ids, until, to_ll, cal)
    advance("incidents")
    tracks, pings = activity.patrols(rng, city, staff_df, scope_df, until, to_ll)
    advance("patrols")
    cams, svc = activity.cameras_and_services(rng, city, to_ll)
    # last known position: the last ping of the day, for staff who patrolled
    last = pings.sort_values("at").groupby("staff_id").tail(1)
    staff_df["last_position"] = staff_df["id"].map(dict(zip(last["staff_id"], last["geom"], strict=True)))
    staff_df["last_position_at"] = staff_df["id"].map(dict(zip(last["staff_id"], last["at"], strict=True)))
    advance("assets")
    return {
        "admin_area": admin, "grid": grids, "road": roads, "building": buildings,
        "household": hh.drop(columns="_bidx"), "resident": res, "staff": staff_df, "staff_scope": scope_df,
        "duty_roster": roster_df, "incident": inc, "incident_event": evs, "patrol_track": tracks,
        "patrol_ping": pings, "camera": cams, "service_point": svc,
    }  # fmt: skip


def _secondary_indexes(conn, tables: list[str]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        text(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = 'public' AND i.tablename = ANY(:tables)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
            """
        ),
        {"tables": tables},
    )
    return [(r[0], r[1]) for r in rows]


def load_demo(engine: Engine, *, seed: int, scale: str, until: dt.datetime | None = None,
              force: bool = False, progress: bool = True) -> DemoResult:  # fmt: skip
    """Replace the data in the database with a generated demo city."""
    if scale not in SCALES:
        raise InvalidInput(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    started = time.monotonic()
    until = until or dt.datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        has_demo = conn.execute(text("SELECT count(*) FROM demo_info")).scalar_one()
        real = conn.execute(text("SELECT (SELECT count(*) FROM grid) + (SELECT count(*) FROM building)")).scalar_one()
        cats = pd.read_sql(text("SELECT code, name_zh, time_limit, time_unit FROM category"), conn)
    if real and not has_demo and not force:
        raise SetupError(
            "this database holds grids or buildings that are not a demo; loading the demo would replace them",
            hint="use another database, or pass --force to replace them",
        )
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()]
    with Progress(*cols, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"demo {scale} (seed {seed})", total=len(STEPS) + 16)

        def advance(what: str) -> None:
            bar.update(task, advance=1, description=f"demo {scale}: {what}")

        frames = generate_frames(seed, scale, until, cats, advance)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
            idx = _secondary_indexes(conn, list(frames))
            for name, _ in idx:
                conn.execute(text(f'DROP INDEX "{name}"'))
            raw = conn.connection.dbapi_connection
            for table, frame in frames.items():
                bar.update(task, description=f"demo {scale}: load {table} ({len(frame):,})")
                _copy(raw, table, frame)
                advance(f"loaded {table}")
            bar.update(task, description=f"demo {scale}: rebuild indexes")
            for _, ddl in idx:
                conn.execute(text(ddl))
            for table, frame in frames.items():
                if "id" in frame:  # later inserts continue after the generated ids
                    conn.execute(
                        text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :next, false)"),
                        {"t": table, "next": int(frame["id"].max() or 0) + 1},
                    )
            conn.execute(text("SELECT gridmap_sync_case_sequences()"))  # new reports continue the numbers
            counts = {t: int(len(f)) for t, f in frames.items()}
            conn.execute(
                text("INSERT INTO demo_info (scale, seed, counts) VALUES (:s, :seed, CAST(:c AS jsonb))"),
                {"s": scale, "seed": seed, "c": pd.Series(counts).to_json()},
            )
            advance("indexes")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
        bar.update(task, completed=len(STEPS) + 16, description=f"demo {scale}: done")
    return DemoResult(scale, seed, counts, time.monotonic() - started)


def open_demo_accounts(engine: Engine, password: str) -> list[tuple[str, str, str]]:
    """Let the first demo account of each role sign in with `password` (demo data only):
    (username, role, scope) of each, in role order."""
    from gridmap import auth, vocab

    if len(password) < auth.MIN_PASSWORD:
        raise InvalidInput(f"the demo password needs at least {auth.MIN_PASSWORD} characters")
    hashed = auth.hash_password(password)
    rows = []
    with engine.begin() as conn:
        for role in vocab.STAFF_ROLES:
            found = conn.execute(text(
                "UPDATE staff SET password_hash = :h, token_version = token_version + 1, failed_sign_ins = 0, locked_until = NULL "
                "WHERE id = (SELECT min(id) FROM staff WHERE role = :r AND is_synthetic AND active) "
                "RETURNING username, (SELECT string_agg(CASE WHEN code = '' THEN level ELSE level || ':' || code END, ' ') "
                "FROM staff_scope WHERE staff_id = staff.id)"),
                {"h": hashed, "r": role}).first()  # fmt: skip
            if found is not None:
                rows.append((str(found[0]), role, str(found[1] or "")))
    return rows
