"""The case workflow (案件流程) as data: states, actions, the rules between them, and replay.

reported → registered (or rejected) → dispatched → in_progress → resolved → verified → closed,
plus escalate (grid → community → street → district) and reopen. `apply` is the one place where
a case changes state; the service calls it before writing a row and an event, and `replay`
rebuilds a case from its event log with the same code, so no rule is written twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol

from pydantic_settings import BaseSettings, SettingsConfigDict

from gridmap import vocab
from gridmap.errors import Conflict, InvalidInput
from gridmap.workcal import WorkCalendar, calendar

LEVELS: tuple[str, ...] = vocab.ESCALATION_LEVELS  # grid → community → street → district
TOP_LEVEL = LEVELS[-1]

# from-status → {action: to-status}, in the order of the design table (the order shown to users)
TRANSITIONS: dict[str, dict[str, str]] = {
    "reported": {"register": "registered", "reject": "rejected"},
    "registered": {"dispatch": "dispatched", "escalate": "registered"},
    "dispatched": {"start": "in_progress", "escalate": "registered", "dispatch": "dispatched"},
    "in_progress": {"resolve": "resolved", "escalate": "registered"},
    "resolved": {"verify": "verified", "reopen": "dispatched"},
    "verified": {"close": "closed"},
    "closed": {"reopen": "dispatched"},
    "rejected": {},
}

# statuses in which a case is being handled against a deadline (overdue is possible only here)
CLOCK_RUNNING = ("dispatched", "in_progress")
FINAL = ("closed", "rejected")

# severity 1 (low) … 4 (critical) scales the category's time limit for a normal case
SEVERITY_FACTOR: dict[int, float] = {1: 1.5, 2: 1.0, 3: 0.5, 4: 0.25}


@dataclass(frozen=True)
class ActionSpec:
    """What an action needs and does besides changing the status."""

    zh: str
    en: str
    note: str | None = None  # the note is required and is called this ("reason", "feedback")
    assignee: str = "no"  # "required", "optional" (keeps the current one) or "no"
    starts_clock: bool = False  # sets dispatched_at and a new deadline


ACTIONS: dict[str, ActionSpec] = {
    "report": ActionSpec("上报", "report"),
    "register": ActionSpec("立案", "register"),
    "reject": ActionSpec("不予立案", "reject", note="reason"),
    "dispatch": ActionSpec("派遣", "dispatch", assignee="required", starts_clock=True),
    "start": ActionSpec("开始处置", "start"),
    "resolve": ActionSpec("处置反馈", "resolve", note="feedback"),
    "verify": ActionSpec("核查", "verify"),
    "close": ActionSpec("结案", "close"),
    "escalate": ActionSpec("升级", "escalate"),
    "reopen": ActionSpec("返工/重办", "reopen", note="reason", assignee="optional", starts_clock=True),
}
TRANSITION_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a != "report")


class WorkflowSettings(BaseSettings):
    """Workflow rules a city may configure (environment, prefix GRIDMAP_WORKFLOW_)."""

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_WORKFLOW_", extra="ignore")

    reopen_window_days: float = 7.0  # a closed case may be reopened within this many days


@dataclass(frozen=True)
class Rules:
    reopen_window: dt.timedelta = dt.timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: WorkflowSettings | None = None) -> Rules:
        s = settings or WorkflowSettings()
        return cls(reopen_window=dt.timedelta(days=s.reopen_window_days))


@lru_cache
def default_rules() -> Rules:
    """The rules configured in the environment (read once per process)."""
    return Rules.from_settings()


@dataclass(frozen=True)
class TimeLimit:
    """A time limit for handling a case: an amount in working hours, working days or calendar hours."""

    amount: float
    unit: str


def time_limit(category_limit: float, unit: str, severity: int) -> TimeLimit:
    """The category's time limit scaled by the severity factor."""
    return TimeLimit(float(category_limit) * SEVERITY_FACTOR[severity], unit)


@dataclass(frozen=True)
class CaseState:
    """The part of an incident row that the workflow owns."""

    status: str
    reported_at: dt.datetime
    level: str = "grid"
    assignee_id: int | None = None
    registered_at: dt.datetime | None = None
    dispatched_at: dt.datetime | None = None
    deadline_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    rework_count: int = 0
    escalation_count: int = 0
    version: int = 1  # = the number of events = the seq of the last event

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> CaseState:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Event:
    """One entry of the append-only log."""

    seq: int
    action: str
    from_status: str | None
    to_status: str
    at: dt.datetime
    actor_id: int | None = None
    note: str | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Step:
    state: CaseState
    event: Event


class EventLike(Protocol):
    action: str
    to_status: str
    at: dt.datetime
    data: Any


@dataclass
class _Inputs:
    at: dt.datetime
    actor_id: int | None = None
    note: str | None = None
    assignee: int | None = None
    deadline: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)


def next_level(level: str) -> str | None:
    """The level above `level`, or None at the top."""
    k = LEVELS.index(level)
    return LEVELS[k + 1] if k + 1 < len(LEVELS) else None


def starts_clock(state: CaseState | None, action: str) -> bool:
    """Whether `action` sets a new deadline: dispatch and reopen do, but not a reassignment
    (dispatch while dispatched), so that handing a case on cannot reset its deadline."""
    if state is None or not ACTIONS[action].starts_clock:
        return False
    return not (action == "dispatch" and state.status == "dispatched")


def _reopen_expired(state: CaseState, at: dt.datetime, rules: Rules) -> bool:
    return state.status == "closed" and state.closed_at is not None and at - state.closed_at > rules.reopen_window


def allowed_actions(state: CaseState, *, at: dt.datetime | None = None, rules: Rules | None = None) -> list[str]:
    """The actions a case in `state` accepts (at `at`, for the reopen window), in table order."""
    rules = rules or default_rules()
    out = []
    for action in TRANSITIONS[state.status]:
        if action == "escalate" and next_level(state.level) is None:
            continue
        if action == "reopen" and at is not None and _reopen_expired(state, at, rules):
            continue
        out.append(action)
    return out


def _allowed_text(state: CaseState, at: dt.datetime, rules: Rules) -> str:
    allowed = allowed_actions(state, at=at, rules=rules)
    return ", ".join(allowed) if allowed else "none"


def _refuse(state: CaseState | None, action: str, at: dt.datetime, rules: Rules) -> None:
    """Raise 422 for an unknown action and 409 for one the state does not accept."""
    if action not in ACTIONS:
        raise InvalidInput(
            f"Invalid value for parameter action: unknown action {action[:32]!r}; use one of {', '.join(TRANSITION_ACTIONS)}"
        )
    if state is None:
        if action != "report":
            raise Conflict(f"Cannot {action} an incident that has not been reported")
        return
    if action == "report":
        raise Conflict(f"Cannot report an incident that is {state.status}: it was reported already")
    if action not in TRANSITIONS[state.status]:
        raise Conflict(
            f"Cannot {action} an incident that is {state.status}; allowed actions: {_allowed_text(state, at, rules)}",
            incident_status=state.status, action=action,
        )  # fmt: skip
    if action == "escalate" and next_level(state.level) is None:
        raise Conflict(
            f"Cannot escalate an incident at {state.level} level, the top level; "
            f"allowed actions: {_allowed_text(state, at, rules)}",
            incident_status=state.status, action=action,
        )  # fmt: skip
    if action == "reopen" and _reopen_expired(state, at, rules):
        assert state.closed_at is not None
        days = rules.reopen_window.total_seconds() / 86400
        raise Conflict(
            f"Cannot reopen an incident closed more than {days:g} days ago "
            f"(closed at {state.closed_at.isoformat()}); allowed actions: none",
            incident_status=state.status, action=action,
        )  # fmt: skip


def _advance(state: CaseState | None, action: str, x: _Inputs) -> Step:
    """The state after `action` and its event; the caller has checked that the action is allowed."""
    at = x.at
    data: dict[str, Any] = dict(x.data)
    if state is None:  # report
        new = CaseState(status="reported", reported_at=at, version=0)
        from_status = None
    else:
        from_status = state.status
        to = TRANSITIONS[state.status][action]
        new = replace(state, status=to)
        if action == "register":
            new = replace(new, registered_at=at)
        elif action == "reject":
            new = replace(new, closed_at=at)
        elif action == "dispatch":
            if starts_clock(state, action):
                new = replace(new, assignee_id=x.assignee, dispatched_at=at, deadline_at=x.deadline)
            else:
                new = replace(new, assignee_id=x.assignee)
            data["assignee"] = x.assignee
        elif action == "resolve":
            new = replace(new, resolved_at=at)
        elif action == "close":
            new = replace(new, closed_at=at)
        elif action == "escalate":
            up = next_level(state.level)
            assert up is not None
            new = replace(new, level=up, assignee_id=None, deadline_at=None, escalation_count=state.escalation_count + 1)
            data |= {"from": state.level, "to": up}
        elif action == "reopen":
            assignee = x.assignee if x.assignee is not None else state.assignee_id
            new = replace(new, assignee_id=assignee, dispatched_at=at, deadline_at=x.deadline, resolved_at=None,
                          closed_at=None, rework_count=state.rework_count + 1)  # fmt: skip
            data["assignee"] = assignee
        if starts_clock(state, action):
            data["deadline_at"] = x.deadline.isoformat() if x.deadline else None
    new = replace(new, version=new.version + 1)
    event = Event(seq=new.version, action=action, from_status=from_status, to_status=new.status, at=at,
                  actor_id=x.actor_id, note=x.note, data=data or None)  # fmt: skip
    return Step(new, event)


def apply(
    state: CaseState | None,
    action: str,
    *,
    at: dt.datetime,
    actor_id: int | None = None,
    note: str | None = None,
    assignee: int | None = None,
    limit: TimeLimit | None = None,
    data: Mapping[str, Any] | None = None,
    rules: Rules | None = None,
    cal: WorkCalendar | None = None,
) -> Step:
    """Apply one action to a case (None = not yet reported), or raise 409 / 422 saying why not.

    `limit` is the case's time limit; actions that start the clock (dispatch, reopen) set the
    deadline from it on the working calendar.
    """
    if at.tzinfo is None:
        raise InvalidInput("Invalid value for parameter at: give a time zone")
    rules = rules or default_rules()
    _refuse(state, action, at, rules)
    spec = ACTIONS[action]
    if note is not None and not note.strip():
        note = None
    if spec.note and note is None:
        raise InvalidInput(f"A {spec.note} is required to {action} an incident: give it in note")
    if spec.assignee == "no" and assignee is not None:
        raise InvalidInput(f"Invalid value for parameter assignee: {action} takes no assignee; only dispatch and reopen do")
    if spec.assignee == "required" and assignee is None:
        raise InvalidInput(f"An assignee is required to {action} an incident: give the staff id in assignee")
    if action == "reopen" and assignee is None and state is not None and state.assignee_id is None:
        raise InvalidInput("An assignee is required to reopen this incident: it has none; give the staff id in assignee")
    deadline = None
    if starts_clock(state, action) and limit is not None:
        deadline = (cal or calendar()).deadline(at, limit.amount, limit.unit)
    return _advance(state, action, _Inputs(at=at, actor_id=actor_id, note=note, assignee=assignee,
                                           deadline=deadline, data=dict(data or {})))  # fmt: skip


class CorruptLog(Conflict):
    """The event log does not describe a legal history."""


def _get(event: EventLike | Mapping[str, Any], name: str) -> Any:
    return event[name] if isinstance(event, Mapping) else getattr(event, name)


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def replay(events: Iterable[EventLike | Mapping[str, Any]]) -> CaseState:
    """Rebuild a case from its event log, refusing a log that breaks the state machine.

    The rules of the day (required notes, reopen window) judged the requests when they were
    made; replay checks only that each step is a legal transition, and takes the facts that
    were decided then (assignee, deadline) from the events' data.
    """
    state: CaseState | None = None
    lenient = Rules(reopen_window=dt.timedelta.max)
    for k, e in enumerate(events, start=1):
        action = str(_get(e, "action"))
        at = _get(e, "at")
        try:
            _refuse(state, action, at, lenient)
        except (Conflict, InvalidInput) as exc:
            raise CorruptLog(f"event {k} is not a legal step: {exc.detail}") from None
        data = dict(_get(e, "data") or {})
        step = _advance(state, action, _Inputs(
            at=at, assignee=data.get("assignee"), deadline=_parse_time(data.get("deadline_at")),
            data={},
        ))  # fmt: skip
        state = step.state
        if state.status != _get(e, "to_status"):
            raise CorruptLog(f"event {k} ({action}) records {_get(e, 'to_status')!r}, the workflow gives {state.status!r}")
    if state is None:
        raise CorruptLog("an incident's event log cannot be empty")
    return state


def describe() -> dict[str, Any]:
    """The workflow as JSON-ready data, with Chinese and English labels (for UIs and docs)."""
    return {
        "statuses": {s: {"zh": zh, "en": en} for s, (zh, en) in vocab.INCIDENT_STATUSES.items()},
        "actions": {
            a: {"zh": s.zh, "en": s.en, "note_required": s.note, "assignee": s.assignee, "starts_clock": s.starts_clock}
            for a, s in ACTIONS.items()
        },
        "transitions": [{"from": f, "action": a, "to": t} for f, acts in TRANSITIONS.items() for a, t in acts.items()],
        "levels": list(LEVELS),
        "severity_factor": {str(k): v for k, v in SEVERITY_FACTOR.items()},
        "reopen_window_days": default_rules().reopen_window.total_seconds() / 86400,
    }
