"""What happens in the synthetic city: incidents with full lifecycles, patrols, cameras, services.

Incidents cluster around markets, nightlife and transit stops, with daily and weekly rhythms and
category mixes of their own; most close on time, some run over, a few are escalated or reopened.
Patrol tracks are walks along the streets of each worker's grid; diligence differs between
workers, so coverage differs between grids and leaves real gaps.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import shapely

from gridmap import workflow
from gridmap.demo.city import City, U
from gridmap.workcal import WorkCalendar

TZ = ZoneInfo("Asia/Shanghai")
RATE_PER_GRID_DAY = 0.18  # ≈ 1 million cases a year over 15,000 grids

CONTEXT_CATEGORIES = {
    "market": {"0501": 25, "0502": 25, "0102": 15, "0104": 10, "0201": 10, "0504": 10, "1104": 5},
    "nightlife": {"0505": 30, "0506": 30, "0503": 10, "1101": 10, "1103": 5, "0102": 15},
    "transit": {"0504": 35, "0503": 30, "0204": 10, "0104": 10, "1101": 5, "0406": 6, "0401": 4},
    "residential": {"1001": 12, "1004": 10, "1302": 10, "1301": 7, "1401": 8, "1402": 4, "1404": 8,
                    "0101": 8, "0103": 6, "0106": 5, "1102": 4, "0402": 3, "0404": 4, "1002": 4,
                    "1501": 3, "0107": 4, "1502": 1},
    "industrial": {"1202": 25, "1201": 15, "0302": 20, "0301": 10, "1003": 15, "1204": 5, "1304": 5, "0303": 5},
}  # fmt: skip
CONTEXTS = list(CONTEXT_CATEGORIES)
DAY_HOURS = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 3, 6, 9, 10, 8, 5, 6, 9, 9, 8, 7, 5, 4, 3, 2.5, 2, 1.5])
NIGHT_HOURS = np.array([6, 4, 2, 1, 0.5, 0.3, 0.3, 0.3, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1.5, 2, 4, 7, 9, 10, 10, 8])


class _Cut(Exception):
    """The simulated story has reached the present (or ended early)."""


class _Story:
    """One case's history, built with the same workflow rules the API enforces."""

    def __init__(self, until: dt.datetime, limit: workflow.TimeLimit, cal: WorkCalendar) -> None:
        self.until, self.limit, self.cal = until, limit, cal
        self.state: workflow.CaseState | None = None
        self.events: list[workflow.Event] = []

    def do(self, action: str, at: dt.datetime, actor: int | None, note: str, assignee: int | None = None) -> None:
        if at > self.until:  # what has not happened yet is not in the log
            raise _Cut
        step = workflow.apply(self.state, action, at=at, actor_id=actor, note=note, assignee=assignee,
                              limit=self.limit, cal=self.cal)  # fmt: skip
        self.state, self.events = step.state, [*self.events, step.event]


def _pick(rng: np.random.Generator, table: dict[str, float], n: int) -> np.ndarray:
    keys = np.array(list(table))
    p = np.array(list(table.values()), float)
    return keys[rng.choice(len(keys), size=n, p=p / p.sum())]


def incident_points(rng: np.random.Generator, city: City, n: int, grid_tree: shapely.STRtree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locations (projected), their context and their grid index."""
    cell_xy = shapely.get_coordinates(shapely.centroid(city.cell_poly))
    hot_xy, hot_ctx, hot_w = [], [], []
    for ctx, use, w, frac in [("market", U["commercial"], 3.0, 1.0), ("nightlife", U["mixed"], 2.5, 0.3)]:
        cells = np.flatnonzero(city.cell_use == use)
        cells = cells[rng.random(len(cells)) < frac]
        hot_xy.append(cell_xy[cells])
        hot_ctx += [ctx] * len(cells)
        hot_w += [w] * len(cells)
    # transit stops: corners of dense blocks on arterials
    dense = np.flatnonzero(city.cell_urban > 0.55)
    stops = dense[(city.cell_i[dense] % 8 == 0) & (city.cell_j[dense] % 4 == 0)]
    hot_xy.append(city.node_xy[city.cell_i[stops], city.cell_j[stops]])
    hot_ctx += ["transit"] * len(stops)
    hot_w += [1.5] * len(stops)
    hot_xy_a = np.concatenate(hot_xy) if hot_xy else np.empty((0, 2))
    hot_w_a = np.array(hot_w, float)
    b = city.buildings
    b_xy = shapely.get_coordinates(shapely.centroid(b["geom"]))
    b_w = b["households"] + np.where(np.isin(b["use"], ["industrial", "commercial", "school"]), 20, 0.5)
    xy_out, ctx_out, grid_out = [], [], []
    need = n
    while need > 0:
        m = int(need * 1.3) + 10
        from_hot = (rng.random(m) < 0.5) & (len(hot_w_a) > 0)
        h = rng.choice(len(hot_w_a), size=m, p=hot_w_a / hot_w_a.sum()) if len(hot_w_a) else np.zeros(m, int)
        bb = rng.choice(len(b_w), size=m, p=b_w / b_w.sum())
        xy = np.where(from_hot[:, None], hot_xy_a[h] if len(hot_w_a) else 0, b_xy[bb])
        xy = xy + rng.normal(0, 1, (m, 2)) * np.where(from_hot, 70.0, 18.0)[:, None]
        ctx = np.where(from_hot, np.array(hot_ctx, dtype=object)[h] if hot_ctx else "residential",
                       np.where(b["use"][bb] == "industrial", "industrial", "residential"))  # fmt: skip
        pts = shapely.points(xy)
        pi, gi = grid_tree.query(pts, predicate="within")
        hit = np.full(m, -1)
        hit[pi[::-1]] = gi[::-1]
        ok = np.flatnonzero(hit >= 0)[:need]
        xy_out.append(xy[ok])
        ctx_out.append(ctx[ok])
        grid_out.append(hit[ok])
        need -= len(ok)
    return np.concatenate(xy_out), np.concatenate(ctx_out).astype(str), np.concatenate(grid_out)


def incidents(rng: np.random.Generator, city: City, categories: pd.DataFrame, staff_df: pd.DataFrame,
              scope_df: pd.DataFrame, grid_ids: np.ndarray, until: dt.datetime, to_lonlat,
              cal: WorkCalendar) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Incidents over `scale.incident_days` days before `until`, with their event logs."""
    n_grid = len(city.grids["code"])
    days = city.scale.incident_days
    n = int(rng.poisson(RATE_PER_GRID_DAY * n_grid * days))
    tree = shapely.STRtree(city.grids["geom"])
    xy, ctx, grid = incident_points(rng, city, n, tree)
    cat = np.empty(n, dtype=object)
    for c in CONTEXTS:
        mask = ctx == c
        cat[mask] = _pick(rng, CONTEXT_CATEGORIES[c], int(mask.sum()))
    # time: weekly and daily rhythm, nightlife at night and at weekends
    start_day = (until - dt.timedelta(days=days)).astimezone(TZ).date()
    day_off = rng.integers(0, days, n)
    weekday = np.array([(start_day + dt.timedelta(days=int(d))).weekday() for d in range(days)])[day_off]
    night = ctx == "nightlife"
    keep_p = np.where(weekday >= 5, np.where(night, 1.0, 0.75), np.where(night, 0.65, 1.0))
    redo = rng.random(n) > keep_p
    day_off[redo] = rng.integers(0, days, int(redo.sum()))
    hour = np.where(night, rng.choice(24, size=n, p=NIGHT_HOURS / NIGHT_HOURS.sum()),
                    rng.choice(24, size=n, p=DAY_HOURS / DAY_HOURS.sum()))  # fmt: skip
    minute = rng.integers(0, 60, n)
    second = rng.integers(0, 60, n)
    severity = rng.choice([1, 2, 3, 4], size=n, p=[0.25, 0.6, 0.13, 0.02])
    src = np.where(ctx == "transit", _pick(rng, {"camera": 30, "patrol": 30, "hotline": 25, "citizen_app": 15}, n),
                   _pick(rng, {"patrol": 40, "hotline": 32, "citizen_app": 15, "camera": 10, "department": 3}, n))  # fmt: skip
    lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
    cats = categories.set_index("code")
    workers: dict[str, list[int]] = {}
    staff_by_id = staff_df.set_index("id")
    for sid, level, code in scope_df.itertuples(index=False):
        role = staff_by_id.at[sid, "role"]
        if level == "grid" and role == "grid_worker":
            workers.setdefault(code, []).append(int(sid))
        elif role == "grid_leader":
            workers.setdefault("L" + code, []).append(int(sid))
        elif role == "dispatcher":
            workers.setdefault("P" + code, []).append(int(sid))
    grid_code = city.grids["code"]
    rows, events = [], []
    order = np.lexsort((second, minute, hour, day_off))
    seq_per_day: dict[dt.date, int] = {}
    u = rng.random((n, 13))
    for new_id, k in enumerate(order, start=1):
        day = start_day + dt.timedelta(days=int(day_off[k]))
        t0 = dt.datetime(day.year, day.month, day.day, int(hour[k]), int(minute[k]), int(second[k]), tzinfo=TZ)
        if t0 >= until:
            t0 = until - dt.timedelta(minutes=5 + int(u[k, 0] * 600))
        gcode = str(grid_code[grid[k]])
        code_cat = str(cat[k])
        limit = workflow.time_limit(float(cats.at[code_cat, "time_limit"]), str(cats.at[code_cat, "time_unit"]), int(severity[k]))
        own = workers.get(gcode, [None])
        worker = own[int(u[k, 1] * len(own))]
        reporter = worker if src[k] == "patrol" else None
        desk = workers.get("P" + gcode[:6], [None])
        dispatcher = desk[int(u[k, 12] * len(desk))]  # the district's dispatch desk handles the case
        lead = workers.get("L" + gcode[:12], [worker])[0]
        story = _Story(until, limit, cal)
        try:
            story.do("report", t0, reporter, "上报 reported")
            t = t0 + dt.timedelta(minutes=(2 + 8 * u[k, 2]) if src[k] == "patrol" else (10 + 80 * u[k, 2]))
            if src[k] != "patrol" and u[k, 3] < 0.04:
                story.do("reject", t, dispatcher, "不予立案：重复上报 rejected: duplicate report")
                raise _Cut
            story.do("register", t, dispatcher, "立案 registered")
            t += dt.timedelta(minutes=5 + 55 * u[k, 4])
            story.do("dispatch", t, dispatcher, "派遣至网格员 dispatched to grid worker", assignee=worker)
            dispatched, deadline = t, story.state.deadline_at
            span = deadline - dispatched
            t += dt.timedelta(minutes=10 + 110 * u[k, 5])
            story.do("start", t, worker, "开始处置 work started")
            assignee = worker
            if u[k, 6] < 0.88:  # on time
                t = max(t + dt.timedelta(minutes=5), dispatched + span * (0.15 + 0.75 * u[k, 7]))
            else:
                if u[k, 8] < 0.35:  # overdue cases are escalated one level and re-dispatched
                    story.do("escalate", deadline + dt.timedelta(minutes=1), None, "超期自动升级 overdue: escalated")
                    t = deadline + dt.timedelta(minutes=11 + 50 * u[k, 9])
                    story.do("dispatch", t, dispatcher, "上级重新派遣 re-dispatched after escalation", assignee=lead)
                    assignee, deadline = lead, story.state.deadline_at
                    t += dt.timedelta(minutes=20)
                    story.do("start", t, lead, "开始处置 work started")
                t = deadline + span * (0.1 + 1.4 * u[k, 10]) + dt.timedelta(hours=1)
            story.do("resolve", t, assignee, "已处置 resolved, feedback attached")
            t += dt.timedelta(hours=0.5 + 23.5 * u[k, 11] ** 2)
            if u[k, 9] < 0.05:  # rework: verification fails, the case goes back
                story.do("reopen", t, dispatcher, "核查未通过，返工 verification failed: rework")
                t += dt.timedelta(minutes=30)
                story.do("start", t, assignee, "返工处置 rework started")
                t += dt.timedelta(hours=2 + 10 * u[k, 2])
                story.do("resolve", t, assignee, "返工完成 rework resolved")
                t += dt.timedelta(hours=1 + 5 * u[k, 4])
            story.do("verify", t, dispatcher, "核查通过 verified on site")
            t += dt.timedelta(hours=0.2 + 5.8 * u[k, 5])
            story.do("close", t, dispatcher, "结案 closed")
        except _Cut:
            pass
        st = story.state
        local = t0.astimezone(TZ)
        seq_per_day[local.date()] = seq_per_day.get(local.date(), 0) + 1
        code = f"AJ{local:%Y%m%d}{seq_per_day[local.date()]:06d}"
        name = cats.at[code_cat, "name_zh"]
        rows.append((new_id, code, code_cat, int(severity[k]), str(src[k]), st.status, st.level, f"{name}", f"{name}（{ctx[k]}）",
                     str(city.grids["name"][grid[k]]), f"SRID=4326;POINT({lon[k]:.7f} {lat[k]:.7f})",
                     int(grid_ids[grid[k]]), gcode, st.assignee_id, reporter, t0, st.registered_at, st.dispatched_at,
                     st.deadline_at, st.resolved_at, st.closed_at, st.rework_count, st.escalation_count, st.version, True))  # fmt: skip
        for e in story.events:
            events.append((new_id, e.seq, e.action, e.from_status, e.to_status, e.actor_id, e.at, e.note,
                           json.dumps(e.data, ensure_ascii=False) if e.data else None))  # fmt: skip
    inc = pd.DataFrame(rows, columns=[
        "id", "code", "category_code", "severity", "source", "status", "level", "title", "description", "address",
        "geom", "grid_id", "grid_code", "assignee_id", "reporter_id", "reported_at", "registered_at",
        "dispatched_at", "deadline_at", "resolved_at", "closed_at", "rework_count", "escalation_count",
        "version", "is_synthetic"])  # fmt: skip
    evs = pd.DataFrame(events, columns=["incident_id", "seq", "action", "from_status", "to_status", "actor_id", "at", "note", "data"])
    evs.insert(0, "id", np.arange(1, len(evs) + 1))
    for col in ("assignee_id", "reporter_id", "actor_id"):
        frame = inc if col in inc else evs
        frame[col] = frame[col].astype("Int64")
    return inc, evs


def patrols(rng: np.random.Generator, city: City, staff_df: pd.DataFrame, scope_df: pd.DataFrame,
            until: dt.datetime, to_lonlat) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Patrol tracks (walks on each grid's streets) over `patrol_days`; GPS pings for the last day."""
    n_side = city.node_xy.shape[0]
    g = city.grids
    gw = scope_df.merge(staff_df[["id", "role"]], left_on="staff_id", right_on="id")
    gw = gw[(gw["role"] == "grid_worker") & (gw["level"] == "grid")]
    grid_index = {c: k for k, c in enumerate(g["code"])}
    w_staff = gw["staff_id"].to_numpy()
    w_grid = np.array([grid_index[c] for c in gw["code"]])
    diligence = np.clip(rng.beta(2, 2, len(w_staff)) * 1.25, 0.05, 1.0)
    # states = (grid, node); edges = the sides of the grid's blocks
    cell_grid = np.repeat(np.arange(len(g["code"])), g["end"] - g["start"])
    ci, cj = city.cell_i, city.cell_j
    corners = np.stack([ci * n_side + cj, (ci + 1) * n_side + cj, (ci + 1) * n_side + cj + 1, ci * n_side + cj + 1], 1)
    a = corners.ravel()
    b = np.roll(corners, -1, axis=1).ravel()
    gg = np.repeat(cell_grid, 4).astype(np.int64)
    nn = n_side * n_side
    ku = np.concatenate([gg * nn + a, gg * nn + b])
    kv = np.concatenate([gg * nn + b, gg * nn + a])
    pairs = np.unique(np.stack([ku, kv], 1), axis=0)
    states, first = np.unique(pairs[:, 0], return_index=True)
    offsets = np.r_[first, len(pairs)]
    nbr_state = np.searchsorted(states, pairs[:, 1])
    state_grid = states // nn
    grid_first_state = np.searchsorted(state_grid, np.arange(len(g["code"])))
    grid_n_states = np.searchsorted(state_grid, np.arange(len(g["code"])), side="right") - grid_first_state
    # walkers: one per worker and patrol day
    days = city.scale.patrol_days
    start_day = (until - dt.timedelta(days=days)).astimezone(TZ).date()
    w_idx, w_day = np.meshgrid(np.arange(len(w_staff)), np.arange(days), indexing="ij")
    w_idx, w_day = w_idx.ravel(), w_day.ravel()
    weekday = np.array([(start_day + dt.timedelta(days=int(d))).weekday() for d in range(days)])[w_day]
    go = (weekday < 6) & (rng.random(len(w_idx)) < 0.35 + 0.6 * diligence[w_idx])
    w_idx, w_day = w_idx[go], w_day[go]
    m = len(w_idx)
    steps = (6 + rng.random(m) * 40 * diligence[w_idx]).astype(int)
    grid_of = w_grid[w_idx]
    s = grid_first_state[grid_of] + (rng.random(m) * grid_n_states[grid_of]).astype(int)
    max_steps = int(steps.max()) if m else 0
    path = np.empty((m, max_steps + 1), dtype=np.int64)
    path[:, 0] = s
    for t in range(1, max_steps + 1):
        deg = offsets[s + 1] - offsets[s]
        s = nbr_state[offsets[s] + (rng.random(m) * deg).astype(int)]
        path[:, t] = s
    node = states[path] % nn
    xy = city.node_xy.reshape(-1, 2)[node] + rng.normal(0, 4.0, (m, max_steps + 1, 2))
    valid = np.arange(max_steps + 1)[None, :] <= steps[:, None]
    flat_xy = xy[valid]
    owner = np.repeat(np.arange(m), steps + 1)
    lon, lat = to_lonlat(flat_xy[:, 0], flat_xy[:, 1])
    lines_m = shapely.linestrings(flat_xy, indices=owner)
    lines = shapely.linestrings(np.c_[lon, lat], indices=owner)
    length = shapely.length(lines_m)
    speed = np.where(rng.random(m) < 0.4, 4.0, 1.3)  # e-bike or on foot
    start_hour = np.where(rng.random(m) < 0.6, 9 + 1.5 * rng.random(m), 14 + 2 * rng.random(m))
    base = np.array([dt.datetime.combine(start_day + dt.timedelta(days=int(d)), dt.time(), TZ) for d in range(days)])
    started = base[w_day] + pd.to_timedelta(start_hour, unit="h").to_pytimedelta()
    ended = started + pd.to_timedelta(length / speed, unit="s").to_pytimedelta()
    tracks = pd.DataFrame({
        "id": np.arange(1, m + 1), "staff_id": w_staff[w_idx], "started_at": started, "ended_at": ended,
        "ping_count": 0, "length_m": np.round(length, 1), "geom": shapely.to_wkb(shapely.set_srid(lines, 4326), hex=True, include_srid=True),
    })  # fmt: skip
    keep = tracks["ended_at"] <= until
    # GPS pings every 60 s along the tracks of the last day
    last = np.flatnonzero(keep.to_numpy() & (w_day == days - 1))
    n_p = np.floor(length[last] / (speed[last] * 60)).astype(int) + 1
    tid = np.repeat(last, n_p)
    kk = np.concatenate([np.arange(c) for c in n_p]) if len(n_p) else np.zeros(0, int)
    dist = np.minimum(kk * speed[tid] * 60, length[tid])
    frac = np.where(length[tid] > 0, dist / np.maximum(length[tid], 1e-9), 0)
    pts = shapely.line_interpolate_point(lines[tid], frac, normalized=True)
    at = started[tid] + pd.to_timedelta(kk * 60, unit="s").to_pytimedelta()
    pings = pd.DataFrame({
        "id": np.arange(1, len(tid) + 1), "staff_id": w_staff[w_idx][tid], "at": at,
        "geom": shapely.to_wkb(shapely.set_srid(pts, 4326), hex=True, include_srid=True),
        "accuracy_m": np.round(rng.uniform(3, 15, len(tid)), 1),
    })  # fmt: skip
    counts = np.bincount(tid, minlength=m)
    tracks["ping_count"] = counts
    return tracks[keep.to_numpy()], pings


def cameras_and_services(rng: np.random.Generator, city: City, to_lonlat) -> tuple[pd.DataFrame, pd.DataFrame]:
    g = city.grids
    cell_xy = shapely.get_coordinates(shapely.centroid(city.cell_poly))
    cell_grid = np.repeat(np.arange(len(g["code"])), g["end"] - g["start"])
    # cameras at block corners (intersections), pulled 10 m into the block so each lies in one grid
    p = np.where((city.cell_i % 4 == 0) | (city.cell_j % 4 == 0), 0.2 + 0.7 * city.cell_urban, 0.05 + 0.35 * city.cell_urban)
    p = np.where(city.cell_use == U["commercial"], 1.0, p)
    cam_cells = np.flatnonzero(rng.random(len(p)) < p)
    corner = city.node_xy[city.cell_i[cam_cells], city.cell_j[cam_cells]]
    vec = cell_xy[cam_cells] - corner
    xy = corner + vec / np.linalg.norm(vec, axis=1, keepdims=True) * 10.0
    lon, lat = to_lonlat(xy[:, 0], xy[:, 1])
    kind = np.where(city.cell_use[cam_cells] == U["commercial"], "city_management",
                    np.where(city.cell_urban[cam_cells] > 0.5, rng.choice(["public_security", "traffic"], len(cam_cells)),
                             rng.choice(["public_security", "community"], len(cam_cells))))  # fmt: skip
    grid_code = g["code"][cell_grid[cam_cells]]
    serial = np.arange(1, len(cam_cells) + 1)
    cams = pd.DataFrame({
        "id": serial,
        # GB/T 28181 device code: 8-digit area code, 2-digit industry, 3-digit type (131 = camera), serial
        "code": [f"{gc[:6]}0000131{s:07d}" for gc, s in zip(grid_code, serial, strict=True)],
        "name": [f"{city.grids['name'][cell_grid[c]]}监控{s}" for c, s in zip(cam_cells, serial, strict=True)],
        "kind": kind, "online": rng.random(len(cam_cells)) > 0.04, "grid_code": grid_code,
        "geom": [f"SRID=4326;POINT({x:.7f} {y:.7f})" for x, y in zip(lon, lat, strict=True)],
    })  # fmt: skip
    b = city.buildings
    b_xy = shapely.get_coordinates(shapely.point_on_surface(b["geom"]))
    rows = []
    comm_of_grid = g["community"]
    bgrid = b["grid"]
    street_of_grid = city.communities["street"][comm_of_grid]

    def members(keys: np.ndarray, n: int) -> list[np.ndarray]:
        """Building indices per key 0..n-1, in one sort instead of a scan per key."""
        order = np.argsort(keys, kind="stable")
        bounds = np.searchsorted(keys[order], np.arange(n + 1))
        return [order[bounds[k] : bounds[k + 1]] for k in range(n)]

    for c, in_c in enumerate(members(comm_of_grid[bgrid], len(city.communities["name"]))):
        if len(in_c) == 0:
            continue
        cname = city.communities["name"][c]
        pick = in_c[rng.integers(len(in_c), size=2)]
        rows.append(("party_service_center", f"{cname}党群服务中心", pick[0]))
        if rng.random() < 0.5:
            rows.append(("elderly_care", f"{cname}养老服务站", pick[1]))
    for k, in_g in enumerate(members(bgrid, len(g["name"]))):
        if len(in_g) and g["kind"][k] == "general" and rng.random() < 0.6:
            rows.append(("grid_station", f"{g['name'][k]}工作站", in_g[rng.integers(len(in_g))]))
    for st, in_s in enumerate(members(street_of_grid[bgrid], len(city.streets["name"]))):
        if len(in_s):
            sname = city.streets["name"][st]
            pick = in_s[rng.integers(len(in_s), size=2)]
            rows.append(("police_station", f"{sname}派出所", pick[0]))
            rows.append(("clinic", f"{sname}社区卫生服务中心", pick[1]))
    parks = np.flatnonzero(city.cell_use == U["park"])
    by_cell = members(b["cell"], len(city.cell_use))
    for p_cell in parks[: max(1, len(parks) // 3)]:
        if len(by_cell[p_cell]):
            rows.append(("emergency_shelter", f"{city.grids['name'][cell_grid[p_cell]]}应急避难场所", by_cell[p_cell][0]))
    pts = b_xy[[r[2] for r in rows]] if rows else np.empty((0, 2))
    lon, lat = to_lonlat(pts[:, 0], pts[:, 1])
    svc = pd.DataFrame({
        "id": np.arange(1, len(rows) + 1), "name": [r[1] for r in rows], "kind": [r[0] for r in rows],
        "address": [str(city.grids["name"][bgrid[r[2]]]) for r in rows],
        "phone": [f"0551-{rng.integers(60000000, 69999999)}" for _ in rows],
        "grid_code": [str(g["code"][bgrid[r[2]]]) for r in rows],
        "geom": [f"SRID=4326;POINT({x:.7f} {y:.7f})" for x, y in zip(lon, lat, strict=True)],
    })  # fmt: skip
    return cams, svc
