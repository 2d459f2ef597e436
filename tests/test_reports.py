"""Reporting in batches (gridmap.services.reports): each report of a batch gets its own
outcome, keys repeated inside a batch behave as if sent one after the other, failed reports
leave nothing behind, and reports of one batch see each other as duplicates."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.errors import InvalidInput
from gridmap.services import reports
from tests.test_workflow import GRID_A1, GRID_A2, GRID_B2, IN_A1, T0, City, build_city

OUTSIDE = (116.90, 31.005)  # 0.1° west of grid A1


@pytest.fixture
def city(db: Session) -> City:
    return build_city(db)


def req(point: tuple[float, float] = IN_A1, **kw: object) -> reports.ReportRequest:
    fields = {"category": "0102", "source": "hotline", "lon": point[0], "lat": point[1], "reported_at": T0, **kw}
    body = {k: v for k, v in fields.items() if k not in ("key", "caller", "reporter_id")}
    return reports.ReportRequest(**fields, body=body)  # type: ignore[arg-type]


def test_a_mixed_batch_answers_each_report_on_its_own(db: Session, city: City) -> None:
    batch = [
        req(key="k1", caller="hotline", title="first"),  # 0: written
        req(category="9999"),  # 1: unknown category
        req(OUTSIDE, key="k2", caller="hotline"),  # 2: outside every grid; its key is released
        req(key="k1", caller="hotline", title="first"),  # 3: same key, same body → the answer of 0
        req(key="k1", caller="hotline", title="other"),  # 4: same key, other body → 422
        req(reporter_id=999_999),  # 5: unknown reporter
        req((117.015, 31.015), severity=3),  # 6: grid B2
        req((117.01, 31.005)),  # 7: on the edge shared by A1 and A2 → the lower code, A1
        req(key="k1", caller="camera", title="first"),  # 8: the same key of another caller: its own
    ]
    out = reports.create_incidents(db, batch, now=T0)
    assert len(out) == len(batch)
    written = {i: o for i, o in enumerate(out) if isinstance(o, reports.Answer) and not o.replayed}
    assert sorted(written) == [0, 6, 7, 8]
    assert [written[i].body["properties"]["grid_code"] for i in (0, 6, 7)] == [GRID_A1, GRID_B2, GRID_A1]
    assert written[6].body["properties"]["severity"] == 3 and written[0].status == 201
    assert isinstance(out[1], InvalidInput) and out[1].detail == "Unknown category '9999'"
    assert isinstance(out[2], InvalidInput) and out[2].extra["nearest_grid"] == GRID_A1
    assert "outside every grid" in out[2].detail and "9,5" in out[2].detail  # ~9.5 km west
    assert isinstance(out[3], reports.Answer) and out[3].replayed and out[3].body == written[0].body
    assert isinstance(out[4], InvalidInput) and "already used with a different request body" in out[4].detail
    assert isinstance(out[5], InvalidInput) and out[5].detail == "Unknown actor: no staff member with id 999999"

    codes = [written[i].body["properties"]["code"] for i in sorted(written)]
    day = T0.strftime("%Y%m%d")
    assert all(c.startswith(f"AJ{day}") and len(c) == 16 for c in codes) and len(set(codes)) == 4
    ids = [written[i].body["id"] for i in sorted(written)]
    events = db.execute(text("SELECT incident_id, seq, action, to_status FROM incident_event WHERE incident_id = ANY(:ids)"),
                        {"ids": ids}).all()  # fmt: skip
    assert sorted(events) == sorted((i, 1, "report", "reported") for i in ids)
    keys = db.execute(text("SELECT caller, key, status_code FROM idempotency_key ORDER BY caller, key")).all()
    assert keys == [("camera", "k1", 201), ("hotline", "k1", 201)]  # k2 was released


def test_reports_of_one_batch_see_each_other_as_duplicates(db: Session, city: City) -> None:
    a, b = (117.0155, 31.0055), (117.0156, 31.0055)  # about 10 m apart in grid A2
    out = reports.create_incidents(db, [req(a, category="0504"), req(b, category="0504"), req(b, category="0505")], now=T0)
    assert all(isinstance(o, reports.Answer) for o in out)
    fa, fb, fc = (o.body for o in out)  # type: ignore[union-attr]
    assert fa["properties"]["grid_code"] == GRID_A2
    assert [d["id"] for d in fa["duplicates"]] == [fb["id"]] and [d["id"] for d in fb["duplicates"]] == [fa["id"]]
    assert 8 < fa["duplicates"][0]["distance_m"] < 12 and fc["duplicates"] == []


def test_a_report_takes_the_grid_in_force_at_its_report_time(db: Session, city: City) -> None:
    # grid A1 is replaced at T0 by a new grid 003 of community A with the same boundary
    new_code = GRID_A1[:12] + "003"
    db.execute(text("UPDATE grid SET valid_to = :t WHERE code = :c"), {"t": T0, "c": GRID_A1})
    db.execute(
        text("INSERT INTO grid (code, name, community_id, geom, valid_from) SELECT :n, 'new', community_id, "
             "ST_GeomFromText('MULTIPOLYGON(((117 31,117.01 31,117.01 31.01,117 31.01,117 31)))', 4326), :t "
             "FROM grid WHERE code = :c"),
        {"n": new_code, "t": T0, "c": GRID_A1},
    )  # fmt: skip
    before, after = reports.create_incidents(db, [req(reported_at=T0 - dt.timedelta(minutes=1)), req()], now=T0)
    assert before.body["properties"]["grid_code"] == GRID_A1  # type: ignore[union-attr]
    assert after.body["properties"]["grid_code"] == new_code  # type: ignore[union-attr]
