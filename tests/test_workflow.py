"""The case workflow: the state machine as data, the incident service on PostGIS, deadlines on the
working calendar, the SLA tick and the KPIs."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import workflow
from gridmap.errors import Conflict, InvalidInput, PreconditionFailed
from gridmap.services import incidents as svc
from gridmap.services import reports
from gridmap.services.kpis import kpis
from gridmap.workcal import CalendarSettings, WorkCalendar, calendar

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 20, 17, 0, tzinfo=TZ)  # a Friday, one working hour before the weekend

# ---------------------------------------------------------------------------------------------
# a small hand-built city: one district, one street, two communities of two 0.01° square grids
# ---------------------------------------------------------------------------------------------

DISTRICT, STREET = "349902", "349902001"
COMMUNITY_A, COMMUNITY_B = "349902001001", "349902001002"
GRID_A1, GRID_A2 = COMMUNITY_A + "001", COMMUNITY_A + "002"
GRID_B1, GRID_B2 = COMMUNITY_B + "001", COMMUNITY_B + "002"
# lon/lat of the south-west corner of each grid
CORNERS = {GRID_A1: (117.00, 31.00), GRID_A2: (117.01, 31.00), GRID_B1: (117.00, 31.01), GRID_B2: (117.01, 31.01)}
IN_A1 = (117.005, 31.005)


def square(x: float, y: float, w: float = 0.01, h: float = 0.01) -> str:
    return f"MULTIPOLYGON((({x} {y},{x + w} {y},{x + w} {y + h},{x} {y + h},{x} {y})))"


@dataclass
class City:
    grid_ids: dict[str, int] = field(default_factory=dict)
    workers: list[int] = field(default_factory=list)
    dispatcher: int = 0
    inactive: int = 0


def build_city(session: Session, tag: str = "t") -> City:
    """Admin areas, four grids in force since 2020, and staff; in the session's transaction."""
    city = City()
    ids: dict[str, int] = {}
    areas = [(DISTRICT, "district", None, square(117.0, 31.0, 0.02, 0.02)),
             (STREET, "street", DISTRICT, square(117.0, 31.0, 0.02, 0.02)),
             (COMMUNITY_A, "community", STREET, square(117.0, 31.0, 0.02)),
             (COMMUNITY_B, "community", STREET, square(117.0, 31.01, 0.02))]  # fmt: skip
    for code, level, parent, geom in areas:
        ids[code] = session.execute(
            text("INSERT INTO admin_area (code, level, name, parent_id, geom) "
                 "VALUES (:c, :l, :n, :p, ST_GeomFromText(:g, 4326)) RETURNING id"),
            {"c": code, "l": level, "n": f"区域{code[-3:]}", "p": ids.get(parent or ""), "g": geom},
        ).scalar_one()  # fmt: skip
    for code, (x, y) in CORNERS.items():
        city.grid_ids[code] = session.execute(
            text("INSERT INTO grid (code, name, community_id, geom, valid_from) "
                 "VALUES (:c, :n, :cm, ST_GeomFromText(:g, 4326), '2020-01-01T00:00:00+08:00') RETURNING id"),
            {"c": code, "n": f"第{code[-3:]}网格", "cm": ids[code[:12]], "g": square(x, y)},
        ).scalar_one()  # fmt: skip

    def staff(name: str, role: str, active: bool = True) -> int:
        return session.execute(
            text("INSERT INTO staff (username, name, role, active) VALUES (:u, :n, :r, :a) RETURNING id"),
            {"u": f"{tag}-{name}", "n": name, "r": role, "a": active},
        ).scalar_one()

    city.workers = [staff("worker-a", "grid_worker"), staff("worker-b", "grid_worker")]
    city.dispatcher = staff("dispatcher", "dispatcher")
    city.inactive = staff("retired", "grid_worker", active=False)
    return city


@pytest.fixture
def city(db: Session) -> City:
    return build_city(db)


def report(db: Session, *, at: dt.datetime = T0, category: str = "0102", severity: int = 2,
           point: tuple[float, float] = IN_A1, **kw: object) -> dict:  # fmt: skip
    return reports.create_incident(db, category=category, source="hotline", lon=point[0], lat=point[1],
                                   severity=severity, reported_at=at, now=at, **kw)  # type: ignore[arg-type]  # fmt: skip


def act(db: Session, incident: dict, action: str, *, at: dt.datetime, **kw: object) -> dict:
    version = incident["properties"]["version"]
    return svc.transition(db, ref=incident["id"], action=action, version=version, now=at, **kw)  # type: ignore[arg-type]


def row_state(db: Session, incident_id: int) -> workflow.CaseState:
    row = db.execute(text(svc.STATE_SQL + " WHERE i.id = :id"), {"id": incident_id}).mappings().one()
    return workflow.CaseState.from_row(row)


def logged_events(db: Session, incident_id: int) -> list[dict]:
    rows = db.execute(
        text("SELECT seq, action, from_status, to_status, actor_id, at, note, data FROM incident_event "
             "WHERE incident_id = :id ORDER BY seq"), {"id": incident_id},
    ).mappings()  # fmt: skip
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# the state machine, pure
# ---------------------------------------------------------------------------------------------

# the design table (design.md, "States and transitions"), transcribed independently of the code
DESIGN = {
    ("reported", "register"): "registered", ("reported", "reject"): "rejected",
    ("registered", "dispatch"): "dispatched", ("registered", "escalate"): "registered",
    ("dispatched", "start"): "in_progress", ("dispatched", "escalate"): "registered",
    ("dispatched", "dispatch"): "dispatched",
    ("in_progress", "resolve"): "resolved", ("in_progress", "escalate"): "registered",
    ("resolved", "verify"): "verified", ("resolved", "reopen"): "dispatched",
    ("verified", "close"): "closed", ("closed", "reopen"): "dispatched",
}  # fmt: skip
NEEDS_NOTE = {"reject", "resolve", "reopen"}
TAKES_ASSIGNEE = {"dispatch", "reopen"}
STATUSES = ["reported", "registered", "rejected", "dispatched", "in_progress", "resolved", "verified", "closed"]
ACTIONS = ["register", "reject", "dispatch", "start", "resolve", "verify", "close", "escalate", "reopen"]
LIMIT = workflow.TimeLimit(4, "working_hours")


def test_the_table_is_the_design_table() -> None:
    as_code = {(s, a): t for s, acts in workflow.TRANSITIONS.items() for a, t in acts.items()}
    assert as_code == DESIGN
    assert set(workflow.TRANSITIONS) == set(STATUSES)
    assert list(workflow.TRANSITION_ACTIONS) == ACTIONS


def state_in(status: str, **kw: object) -> workflow.CaseState:
    base: dict = {"status": status, "reported_at": T0, "assignee_id": 7, "version": 3}
    if status in ("closed", "rejected"):
        base["closed_at"] = T0
    return workflow.CaseState(**{**base, **kw})  # type: ignore[arg-type]


def inputs_for(action: str) -> dict:
    return {"note": "理由 reason" if action in NEEDS_NOTE else None, "assignee": 8 if action == "dispatch" else None}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_every_transition_is_allowed_or_refused_as_designed(status: str, action: str) -> None:
    state = state_in(status)
    if (status, action) in DESIGN:
        step = workflow.apply(state, action, at=T0 + dt.timedelta(hours=1), limit=LIMIT, **inputs_for(action))
        assert step.state.status == DESIGN[(status, action)]
        assert step.state.version == 4 and step.event.seq == 4
        assert (step.event.action, step.event.from_status, step.event.to_status) == (action, status, step.state.status)
    else:
        allowed = ", ".join(a for (s, a) in DESIGN if s == status) or "none"
        with pytest.raises(Conflict) as exc:
            workflow.apply(state, action, at=T0 + dt.timedelta(hours=1), **inputs_for(action))
        assert exc.value.detail == f"Cannot {action} an incident that is {status}; allowed actions: {allowed}"


def test_the_example_message_of_the_issue() -> None:
    with pytest.raises(Conflict) as exc:
        workflow.apply(state_in("dispatched"), "close", at=T0)
    assert exc.value.detail == "Cannot close an incident that is dispatched; allowed actions: start, escalate, dispatch"


@pytest.mark.parametrize(
    ("status", "action", "kw", "error", "detail"),
    [
        ("reported", "reject", {}, InvalidInput, "A reason is required to reject an incident: give it in note"),
        ("reported", "reject", {"note": "   "}, InvalidInput, "A reason is required to reject an incident: give it in note"),
        ("in_progress", "resolve", {}, InvalidInput, "A feedback is required to resolve an incident: give it in note"),
        ("resolved", "reopen", {}, InvalidInput, "A reason is required to reopen an incident: give it in note"),
        ("registered", "dispatch", {}, InvalidInput, "An assignee is required to dispatch an incident: give the staff id in assignee"),
        ("dispatched", "start", {"assignee": 3}, InvalidInput,
         "Invalid value for parameter assignee: start takes no assignee; only dispatch and reopen do"),
        ("registered", "fly", {}, InvalidInput,
         "Invalid value for parameter action: unknown action 'fly'; use one of "
         "register, reject, dispatch, start, resolve, verify, close, escalate, reopen"),
        ("registered", "report", {}, Conflict, "Cannot report an incident that is registered: it was reported already"),
        ("registered", "escalate", {"level": "district"}, Conflict,
         "Cannot escalate an incident at district level, the top level; allowed actions: dispatch"),
        ("closed", "reopen", {"note": "again", "closed_at": T0 - dt.timedelta(days=8)}, Conflict,
         "Cannot reopen an incident closed more than 7 days ago (closed at 2026-11-12T17:00:00+08:00); allowed actions: none"),
    ],
)  # fmt: skip
def test_requirements_and_limits(status: str, action: str, kw: dict, error: type, detail: str) -> None:
    fields = {k: kw.pop(k) for k in ("level", "closed_at") if k in kw}
    with pytest.raises(error) as exc:
        workflow.apply(state_in(status, **fields), action, at=T0, rules=workflow.Rules(), **kw)
    assert exc.value.detail == detail


def test_escalation_climbs_one_level_at_a_time_and_clears_the_assignment() -> None:
    state = state_in("in_progress", deadline_at=T0, level="grid")
    seen = []
    for _ in range(3):
        state = workflow.apply(state, "escalate", at=T0).state
        seen.append(state.level)
        assert (state.status, state.assignee_id, state.deadline_at) == ("registered", None, None)
        state = workflow.apply(state, "dispatch", at=T0, assignee=5, limit=LIMIT).state
    assert seen == ["community", "street", "district"]
    assert state.escalation_count == 3
    assert "escalate" not in workflow.allowed_actions(state)


def test_reopen_within_the_window_counts_rework_and_restarts_the_clock() -> None:
    closed = state_in("closed", closed_at=T0, resolved_at=T0, deadline_at=T0)
    at = T0 + dt.timedelta(days=6, hours=23)
    step = workflow.apply(closed, "reopen", at=at, note="市民反映未处理 citizen says not fixed", limit=LIMIT)
    assert step.state.status == "dispatched" and step.state.rework_count == 1
    assert step.state.closed_at is None and step.state.resolved_at is None and step.state.assignee_id == 7
    assert step.state.deadline_at == calendar().deadline(at, 4, "working_hours")
    assert step.event.data == {"assignee": 7, "deadline_at": step.state.deadline_at.isoformat()}
    longer = workflow.Rules(reopen_window=dt.timedelta(days=30))
    assert workflow.apply(closed, "reopen", at=T0 + dt.timedelta(days=20), note="x", rules=longer).state.status == "dispatched"


def test_reassignment_keeps_the_deadline() -> None:
    first = workflow.apply(state_in("registered"), "dispatch", at=T0, assignee=5, limit=LIMIT).state
    again = workflow.apply(first, "dispatch", at=T0 + dt.timedelta(days=1), assignee=6, limit=LIMIT).state
    assert again.assignee_id == 6
    assert (again.dispatched_at, again.deadline_at) == (first.dispatched_at, first.deadline_at)


def test_deadline_on_a_working_calendar_with_a_holiday() -> None:
    cal = WorkCalendar(CalendarSettings(holidays="2026-11-23"))  # the Monday is a day off
    step = workflow.apply(state_in("registered"), "dispatch", at=T0, assignee=5, limit=LIMIT, cal=cal)
    # Friday 17:00-18:00 is one hour; Tuesday 09:00-12:00 gives the other three
    assert step.state.deadline_at == dt.datetime(2026, 11, 24, 12, 0, tzinfo=TZ)


@pytest.mark.parametrize(
    ("limit", "unit", "severity", "deadline"),
    [
        (4, "working_hours", 2, dt.datetime(2026, 11, 23, 12, 0, tzinfo=TZ)),  # Fri 17-18 + Mon 9-12
        (4, "working_hours", 3, dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)),  # half: 2 h
        (4, "working_hours", 4, dt.datetime(2026, 11, 20, 18, 0, tzinfo=TZ)),  # quarter: 1 h, same day
        (4, "working_hours", 1, dt.datetime(2026, 11, 23, 15, 0, tzinfo=TZ)),  # 6 h, lunch skipped
        (1, "working_days", 2, dt.datetime(2026, 11, 23, 17, 0, tzinfo=TZ)),  # 8 working hours
        (2, "calendar_hours", 2, dt.datetime(2026, 11, 20, 19, 0, tzinfo=TZ)),
    ],
)
def test_time_limits_by_category_and_severity(limit: float, unit: str, severity: int, deadline: dt.datetime) -> None:
    tl = workflow.time_limit(limit, unit, severity)
    step = workflow.apply(state_in("registered"), "dispatch", at=T0, assignee=5, limit=tl, cal=WorkCalendar(CalendarSettings()))
    assert step.state.deadline_at == deadline


class CaseMachine(RuleBasedStateMachine):
    """Random action sequences: illegal ones are refused, the rest follow the design table, and the
    event log always replays to the current state."""

    def __init__(self) -> None:
        super().__init__()
        self.t = T0
        step = workflow.apply(None, "report", at=self.t)
        self.state, self.events = step.state, [step.event]
        self.level, self.closed_at = "grid", None

    def expected(self, action: str, note: str | None, assignee: int | None) -> str | int:
        """The design's answer, independent of gridmap.workflow: a status, or 409 / 422."""
        s = self.state
        if action not in ACTIONS:
            return 422
        if (s.status, action) not in DESIGN:
            return 409
        if action == "escalate" and self.level == "district":
            return 409
        if action == "reopen" and s.status == "closed" and self.closed_at and self.t - self.closed_at > dt.timedelta(days=7):
            return 409
        if action in NEEDS_NOTE and not (note and note.strip()):
            return 422
        if assignee is not None and action not in TAKES_ASSIGNEE:
            return 422
        if action == "dispatch" and assignee is None:
            return 422
        if action == "reopen" and assignee is None and s.assignee_id is None:
            return 422
        return DESIGN[(s.status, action)]

    @rule(
        action=st.sampled_from([*ACTIONS, "report", "approve"]),
        note=st.one_of(st.none(), st.just(""), st.text(max_size=4)),
        assignee=st.one_of(st.none(), st.integers(1, 5)),
        advance=st.integers(0, 10 * 86400),
    )
    def act(self, action: str, note: str | None, assignee: int | None, advance: int) -> None:
        self.t += dt.timedelta(seconds=advance)
        want = self.expected(action, note, assignee) if action != "report" else 409
        try:
            step = workflow.apply(self.state, action, at=self.t, note=note, assignee=assignee, limit=LIMIT,
                                  rules=workflow.Rules())  # fmt: skip
        except Conflict:
            assert want == 409
            return
        except InvalidInput:
            assert want == 422
            return
        assert step.state.status == want
        if action == "escalate":
            self.level = workflow.LEVELS[workflow.LEVELS.index(self.level) + 1]
        if action in ("close", "reject"):
            self.closed_at = self.t
        if action == "reopen":
            self.closed_at = None
        self.state = step.state
        self.events.append(step.event)

    @invariant()
    def log_replays_to_the_state(self) -> None:
        assert workflow.replay(self.events) == self.state
        assert [e.seq for e in self.events] == list(range(1, len(self.events) + 1)) and self.state.version == len(self.events)

    @invariant()
    def state_is_legal(self) -> None:
        s = self.state
        assert s.status in STATUSES and s.level == self.level
        assert (s.closed_at is not None) == (s.status in ("closed", "rejected"))
        assert (s.resolved_at is not None) == (s.status in ("resolved", "verified", "closed"))
        if s.status in ("dispatched", "in_progress"):
            assert s.assignee_id is not None and s.deadline_at is not None and s.dispatched_at is not None
        if s.status in ("reported", "registered", "rejected"):
            assert s.deadline_at is None
        assert s.escalation_count == workflow.LEVELS.index(s.level)


TestCaseMachine = CaseMachine.TestCase
TestCaseMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_replay_refuses_an_illegal_log() -> None:
    events = [{"action": "report", "to_status": "reported", "at": T0, "data": None},
              {"action": "close", "to_status": "closed", "at": T0, "data": None}]  # fmt: skip
    with pytest.raises(workflow.CorruptLog, match="event 2 is not a legal step: Cannot close an incident that is reported"):
        workflow.replay(events)
    with pytest.raises(workflow.CorruptLog, match="records 'closed', the workflow gives 'registered'"):
        workflow.replay([events[0], {"action": "register", "to_status": "closed", "at": T0, "data": None}])


def _demo_rows_and_logs(demo_engine) -> tuple[list, dict[int, list[dict]]]:  # type: ignore[no-untyped-def]
    with Session(demo_engine) as s:
        rows = s.execute(text(svc.STATE_SQL + " ORDER BY i.id")).mappings().all()
        logs: dict[int, list[dict]] = {}
        sql = "SELECT incident_id, action, to_status, at, data FROM incident_event ORDER BY incident_id, seq"
        for e in s.execute(text(sql)).mappings():
            logs.setdefault(e["incident_id"], []).append(dict(e))
    assert rows
    return list(rows), logs


def test_demo_logs_replay_to_their_rows(demo_engine) -> None:  # type: ignore[no-untyped-def]
    """The demo generator and the workflow agree on every synthetic case."""
    rows, logs = _demo_rows_and_logs(demo_engine)
    fields = ("status", "level", "rework_count", "escalation_count", "version")
    for row in rows:
        replayed = workflow.replay(logs[row["id"]])
        assert {f: getattr(replayed, f) for f in fields} == {f: row[f] for f in fields}, row["code"]


def test_demo_rows_are_exactly_their_replayed_log(demo_engine) -> None:  # type: ignore[no-untyped-def]
    """The demo builds cases with workflow.apply, so every column the workflow owns replays."""
    rows, logs = _demo_rows_and_logs(demo_engine)
    fields = [f for f in workflow.CaseState.__dataclass_fields__ if f in rows[0]]
    bad = [r["code"] for r in rows
           if {f: getattr(workflow.replay(logs[r["id"]]), f) for f in fields} != {f: r[f] for f in fields}]  # fmt: skip
    assert bad == []


# ---------------------------------------------------------------------------------------------
# the service on PostGIS
# ---------------------------------------------------------------------------------------------


def test_report_stores_the_grid_and_the_first_event(db: Session, city: City) -> None:
    f = report(db, title="垃圾暴露", reporter_id=city.workers[0])
    p = f["properties"]
    assert p["grid_code"] == GRID_A1 and p["grid_version"] == city.grid_ids[GRID_A1]
    assert (p["community"], p["street"], p["district"]) == (COMMUNITY_A, STREET, DISTRICT)
    assert re.fullmatch(r"AJ20261120\d{6}", p["code"]) and p["status"] == "reported" and p["version"] == 1
    assert f["geometry"] == {"type": "Point", "coordinates": [117.005, 31.005]}
    assert f["duplicates"] == []
    assert int(report(db)["properties"]["code"][10:]) == int(p["code"][10:]) + 1  # the day's next serial
    # the case number follows the local day (Asia/Shanghai), not UTC
    assert report(db, at=dt.datetime(2026, 11, 20, 16, 30, tzinfo=dt.UTC))["properties"]["code"].startswith("AJ20261121")
    got = svc.get_incident(db, ref=p["code"], now=T0)
    assert got["id"] == f["id"] and [e["action"] for e in got["events"]] == ["report"]
    assert got["events"][0]["actor_id"] == city.workers[0] and got["allowed_actions"] == ["register", "reject"]


def test_the_grid_responsible_at_report_time_is_kept(db: Session, city: City) -> None:
    """A boundary change later does not move a case reported before it."""
    db.execute(text("UPDATE grid SET valid_to = '2026-06-01T00:00:00+08:00' WHERE code = :c"), {"c": GRID_A1})
    new_id = db.execute(
        text("INSERT INTO grid (code, name, community_id, geom, valid_from) SELECT code, name || '（调整）', community_id, "
             "geom, '2026-06-01T00:00:00+08:00' FROM grid WHERE code = :c RETURNING id"), {"c": GRID_A1},
    ).scalar_one()  # fmt: skip
    before = report(db, at=dt.datetime(2026, 5, 1, 10, tzinfo=TZ))
    after = report(db, at=T0)
    assert before["properties"]["grid_version"] == city.grid_ids[GRID_A1]
    assert after["properties"]["grid_version"] == new_id


def test_duplicates_are_open_same_category_within_50_m_and_24_h(db: Session, city: City) -> None:
    first = report(db)
    near = (IN_A1[0] + 0.0003, IN_A1[1])  # ≈ 29 m east
    far = (IN_A1[0] - 0.0007, IN_A1[1])  # ≈ 67 m west of the first, 95 m from the second
    second = report(db, point=near, at=T0 + dt.timedelta(hours=23))
    assert [d["code"] for d in second["duplicates"]] == [first["properties"]["code"]]
    assert 25 < second["duplicates"][0]["distance_m"] < 35
    assert report(db, point=far)["duplicates"] == []
    assert report(db, point=near, category="0104")["duplicates"] == []
    # 25 h after the first, 2 h after the second: only the second is within the window
    third = report(db, point=near, at=T0 + dt.timedelta(hours=25))
    assert [d["code"] for d in third["duplicates"]] == [second["properties"]["code"]]
    closed = act(db, third, "reject", at=T0, note="重复 duplicate")
    assert closed["properties"]["status"] == "rejected"
    assert report(db, point=near, at=T0 + dt.timedelta(hours=50))["duplicates"] == []  # rejected is not open


def test_outside_every_grid_names_the_nearest_grid(db: Session, city: City) -> None:
    with pytest.raises(InvalidInput) as exc:
        report(db, point=(117.03, 31.005))  # ≈ 955 m east of the A2 grid
    assert exc.value.detail == (
        "The point (117.030000, 31.005000) lies outside every grid in force; the nearest grid is "
        f"{GRID_A2} (第002网格), 955 m away"
    )
    assert exc.value.extra == {"nearest_grid": GRID_A2, "distance_m": 955}


def test_full_lifecycle_and_the_log_replays(db: Session, city: City) -> None:
    worker, dispatcher = city.workers[0], city.dispatcher
    f = report(db)
    t = T0
    for action, kw in [("register", {}), ("dispatch", {"assignee": worker}), ("start", {}),
                       ("resolve", {"note": "已清理 cleaned"}), ("reopen", {"note": "核查未通过 not clean"}),
                       ("start", {}), ("resolve", {"note": "再次清理 cleaned again"}), ("verify", {}), ("close", {})]:  # fmt: skip
        t += dt.timedelta(minutes=30)
        f = act(db, f, action, at=t, actor_id=dispatcher, **kw)
        assert f["events"][-1]["action"] == action
    p = f["properties"]
    assert (p["status"], p["rework_count"], p["version"], p["assignee_id"]) == ("closed", 1, 10, worker)
    assert f["allowed_actions"] == ["reopen"]
    assert [e["seq"] for e in f["events"]] == list(range(1, 11))
    assert workflow.replay(logged_events(db, f["id"])) == row_state(db, f["id"])


def test_dispatch_sets_the_deadline_on_the_working_calendar(db: Session, city: City) -> None:
    f = report(db, severity=3)  # 0102 exposed rubbish: 4 working hours; severe: half
    f = act(db, f, "register", at=T0)
    f = act(db, f, "dispatch", at=T0, assignee=city.workers[0])
    deadline = dt.datetime.fromisoformat(f["properties"]["deadline_at"])
    assert deadline == dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)  # Friday 17-18, Monday 9-10
    data = f["events"][-1]["data"]
    assert data["assignee"] == city.workers[0] and dt.datetime.fromisoformat(data["deadline_at"]) == deadline


def test_transition_checks_staff_and_version(db: Session, city: City) -> None:
    f = act(db, report(db), "register", at=T0)
    with pytest.raises(InvalidInput) as exc:
        act(db, f, "dispatch", at=T0, assignee=city.inactive)
    assert exc.value.detail == f"Invalid value for parameter assignee: no active staff member with id {city.inactive}"
    with pytest.raises(PreconditionFailed) as stale:
        svc.transition(db, ref=f["id"], action="dispatch", version=1, assignee=city.workers[0], now=T0)
    assert stale.value.detail == (
        "The incident has changed since you read it: you sent version 1, it is now at version 2; GET it again and retry"
    )
    assert row_state(db, f["id"]).version == 2


def test_unknown_actor_is_refused(db: Session, city: City) -> None:
    f = act(db, report(db), "register", at=T0)
    with pytest.raises(InvalidInput) as exc:
        act(db, f, "dispatch", at=T0, assignee=city.workers[0], actor_id=987654)
    assert exc.value.detail == "Unknown actor: no staff member with id 987654"


def test_sla_tick_escalates_once(db: Session, city: City) -> None:
    f = act(db, act(db, report(db), "register", at=T0), "dispatch", at=T0, assignee=city.workers[0])
    deadline = dt.datetime.fromisoformat(f["properties"]["deadline_at"])
    assert svc.sla_tick(db, now=deadline) == []  # due, not yet over
    late = deadline + dt.timedelta(seconds=1)
    assert svc.sla_tick(db, now=late) == [f["id"]]
    assert svc.sla_tick(db, now=late + dt.timedelta(days=3)) == []  # escalation cleared the deadline
    got = svc.get_incident(db, ref=f["id"], now=late)
    p, last = got["properties"], got["events"][-1]
    assert (p["status"], p["level"], p["escalation_count"], p["assignee_id"], p["deadline_at"]) == (
        "registered", "community", 1, None, None)  # fmt: skip
    assert (last["action"], last["actor_id"], last["note"]) == ("escalate", None, "超期自动升级 overdue: escalated to community")
    assert last["data"]["from"] == "grid" and last["data"]["to"] == "community" and last["data"]["reason"] == "overdue"
    assert workflow.replay(logged_events(db, f["id"])) == row_state(db, f["id"])
    # the community dispatches again; overdue again → street
    f = act(db, got, "dispatch", at=late, assignee=city.workers[1])
    later = dt.datetime.fromisoformat(f["properties"]["deadline_at"]) + dt.timedelta(minutes=1)
    assert svc.sla_tick(db, now=later) == [f["id"]]
    assert svc.get_incident(db, ref=f["id"])["properties"]["level"] == "street"


def test_sla_tick_leaves_district_cases_overdue(db: Session, city: City) -> None:
    f = act(db, act(db, report(db), "register", at=T0), "dispatch", at=T0, assignee=city.workers[0])
    db.execute(text("UPDATE incident SET level = 'district' WHERE id = :id"), {"id": f["id"]})
    far = T0 + dt.timedelta(days=30)
    assert svc.sla_tick(db, now=far) == []
    listed = svc.list_incidents(db, overdue=True, now=far)
    assert [x["id"] for x in listed["features"]] == [f["id"]] and listed["features"][0]["properties"]["overdue"]


steps = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from([None, "备注 note"]), st.sampled_from([None, 0, 1])),
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_random_sequences_on_the_database_replay(db: Session, city: City, sequence: list) -> None:
    """Through the service and PostgreSQL: refused actions change nothing, and the stored log
    always replays to the stored row."""
    nested = db.begin_nested()
    try:
        f = report(db)
        t = T0
        for action, note, who in sequence:
            t += dt.timedelta(hours=3)
            before = row_state(db, f["id"])
            assignee = city.workers[who] if who is not None else None
            try:
                f = act(db, f, action, at=t, note=note, assignee=assignee)
            except (Conflict, InvalidInput):
                assert row_state(db, f["id"]) == before
            assert workflow.replay(logged_events(db, f["id"])) == row_state(db, f["id"])
    finally:
        nested.rollback()


# ---------------------------------------------------------------------------------------------
# KPIs on a hand-built set with known answers
# ---------------------------------------------------------------------------------------------


def put(db: Session, grid_id: int, grid_code: str, code: str, *, status: str, reported: str, deadline: str | None = None,
        resolved: str | None = None, closed: str | None = None, rework: int = 0, escalations: int = 0,
        assignee: int | None = None) -> None:  # fmt: skip
    db.execute(
        text("INSERT INTO incident (code, category_code, source, status, geom, grid_id, grid_code, assignee_id, "
             "reported_at, deadline_at, resolved_at, closed_at, rework_count, escalation_count) VALUES (:code, '0102', "
             "'hotline', :status, ST_SetSRID(ST_MakePoint(117.005, 31.005), 4326), :gid, :gcode, :a, :r, :d, :res, :c, "
             ":rw, :es)"),
        {"code": code, "status": status, "gid": grid_id, "gcode": grid_code, "a": assignee, "r": reported,
         "d": deadline, "res": resolved, "c": closed, "rw": rework, "es": escalations},
    )  # fmt: skip


def test_kpis_on_known_cases(db: Session, city: City) -> None:
    a1, a2, b1 = city.grid_ids[GRID_A1], city.grid_ids[GRID_A2], city.grid_ids[GRID_B1]
    w1, w2 = city.workers
    # grid A2 was redrawn on 11-10: cases before count for the old version, after for the new
    db.execute(text("UPDATE grid SET valid_to = '2026-11-10T00:00:00+08:00' WHERE id = :id"), {"id": a2})
    a2_new = db.execute(
        text("INSERT INTO grid (code, name, community_id, geom, valid_from) SELECT code, name, community_id, geom, "
             "'2026-11-10T00:00:00+08:00' FROM grid WHERE id = :id RETURNING id"), {"id": a2},
    ).scalar_one()  # fmt: skip
    day = "2026-11-0{}T{}:00:00+08:00".format
    put(db, a1, GRID_A1, "K1", status="closed", reported=day(2, 10), deadline=day(2, 15), resolved=day(2, 13),
        closed=day(2, 14), assignee=w1)  # 4 h, on time
    put(db, a1, GRID_A1, "K2", status="closed", reported=day(3, 10), deadline=day(3, 15), resolved=day(3, 16),
        closed=day(3, 20), rework=1, assignee=w1)  # 10 h, late, reworked
    put(db, a1, GRID_A1, "K3", status="rejected", reported=day(4, 10), closed=day(4, 11))
    put(db, a1, GRID_A1, "K4", status="in_progress", reported=day(5, 10), deadline=day(5, 12), escalations=1,
        assignee=w2)  # overdue
    put(db, a2, GRID_A2, "K5", status="closed", reported=day(6, 10), deadline=day(6, 18), resolved=day(6, 11),
        closed=day(6, 12), assignee=w2)  # 2 h, on time
    put(db, a2_new, GRID_A2, "K6", status="dispatched", reported="2026-11-12T10:00:00+08:00",
        deadline="2026-11-30T10:00:00+08:00", assignee=w2)
    put(db, b1, GRID_B1, "K7", status="closed", reported="2026-10-01T10:00:00+08:00", deadline=day(1, 1),
        resolved=day(1, 1), closed=day(1, 1))  # reported before the period
    period = {"reported_from": dt.datetime(2026, 11, 1, tzinfo=TZ), "reported_to": dt.datetime(2026, 12, 1, tzinfo=TZ),
              "now": dt.datetime(2026, 11, 20, tzinfo=TZ)}  # fmt: skip

    grid = {(r["code"], r["grid_version"]): r for r in kpis(db, level="grid", **period)["items"]}
    assert set(grid) == {(GRID_A1, a1), (GRID_A2, a2), (GRID_A2, a2_new)}
    g = grid[(GRID_A1, a1)]
    assert {k: g[k] for k in ("reported", "rejected", "cases", "closed", "closed_on_time", "reworked", "escalated", "overdue_open")} == {
        "reported": 4, "rejected": 1, "cases": 3, "closed": 2, "closed_on_time": 1, "reworked": 1, "escalated": 1, "overdue_open": 1}  # fmt: skip
    assert (g["closure_rate"], g["on_time_closure_rate"], g["rework_rate"], g["avg_handling_hours"]) == (0.6667, 0.3333, 0.3333, 7.0)
    assert grid[(GRID_A2, a2)]["on_time_closure_rate"] == 1.0 and grid[(GRID_A2, a2_new)]["closure_rate"] == 0.0

    community = kpis(db, level="community", **period)["items"]
    assert [(r["code"], r["cases"], r["closed"], r["closed_on_time"]) for r in community] == [(COMMUNITY_A, 5, 3, 2)]
    assert community[0]["avg_handling_hours"] == round((4 + 10 + 2) / 3, 2) and community[0]["name"] == "区域001"
    street = kpis(db, level="street", **period)["items"]
    assert [(r["code"], r["reported"], r["rework_rate"]) for r in street] == [(STREET, 6, 0.2)]
    staff = {r["staff_id"]: r for r in kpis(db, level="staff", **period)["items"]}
    assert (staff[w1]["cases"], staff[w1]["on_time_closure_rate"]) == (2, 0.5)
    assert (staff[w2]["cases"], staff[w2]["closed"], staff[w2]["overdue_open"]) == (3, 1, 1)
    assert kpis(db, level="grid", area=COMMUNITY_B, **period)["items"] == []


@pytest.mark.parametrize(
    ("kw", "detail"),
    [
        ({"level": "city"}, "Invalid value for parameter level: 'city' is not one of grid, community, street, staff"),
        ({"level": "grid", "reported_from": dt.datetime(2026, 1, 1)}, "Invalid value for parameter from: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ({"level": "grid", "reported_from": T0, "reported_to": T0}, "Invalid value for parameter to: must be later than from"),
        ({"level": "grid", "area": "12"}, "Invalid value for parameter area: a 6-, 9-, 12- or 15-digit district, street, community or grid code"),
    ],
)  # fmt: skip
def test_kpi_inputs(db: Session, kw: dict, detail: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        kpis(db, **kw)
    assert exc.value.detail == detail
