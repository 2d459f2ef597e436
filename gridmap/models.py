"""The data model of design.md as SQLAlchemy 2 + GeoAlchemy2 models.

Geometries are stored in EPSG:4326 with typmod columns (type and SRID enforced by PostGIS),
and CHECK constraints refuse invalid, empty or out-of-range geometry. Every geometry has a GiST
index. The migrations in ``migrations/versions`` are the source of truth for the schema; these
models must match them (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, ExcludeConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gridmap import vocab

SRID = 4326


class Base(DeclarativeBase):
    pass


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def geom_col(kind: str, nullable: bool = False) -> Any:
    return mapped_column(Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable)


def geom_rules(table: str, column: str = "geom", *, valid: bool = True) -> tuple[Any, ...]:
    """Refuse invalid (unless not `valid`), empty and out-of-range geometry, and index it with GiST."""
    return (
        *([CheckConstraint(f"ST_IsValid({column})", name=f"{table}_{column}_valid")] if valid else []),
        CheckConstraint(f"NOT ST_IsEmpty({column})", name=f"{table}_{column}_not_empty"),
        CheckConstraint(
            f"ST_XMin({column}) >= -180 AND ST_XMax({column}) <= 180 "
            f"AND ST_YMin({column}) >= -90 AND ST_YMax({column}) <= 90",
            name=f"{table}_{column}_lonlat",
        ),
        Index(f"ix_{table}_{column}", column, postgresql_using="gist"),
    )


def now_col() -> Mapped[dt.datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class AdminArea(Base):
    """District (区县, 6 digits), street/township (街道/乡镇, 9), community/village (社区/村, 12)."""

    __tablename__ = "admin_area"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    level: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("admin_area.id", ondelete="RESTRICT"), index=True)
    geom: Mapped[Any] = geom_col("MULTIPOLYGON")
    created_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        CheckConstraint(_in("level", vocab.ADMIN_LEVELS), name="admin_area_level"),
        CheckConstraint(
            "code ~ '^[0-9]+$' AND length(code) = CASE level WHEN 'district' THEN 6 "
            "WHEN 'street' THEN 9 ELSE 12 END",
            name="admin_area_code_form",
        ),
        *geom_rules("admin_area"),
    )


class Plan(Base):
    """A proposed redraw of grid boundaries: draft → validated → applied / discarded."""

    __tablename__ = "plan"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    scope_level: Mapped[str] = mapped_column(String(12))
    scope_code: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12), server_default="draft")
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = now_col()
    validated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    effective_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rollback_of: Mapped[int | None] = mapped_column(ForeignKey("plan.id", ondelete="SET NULL"))
    findings: Mapped[Any | None] = mapped_column(JSONB)
    impact: Mapped[Any | None] = mapped_column(JSONB)
    # the grids in force in the scope when the plan was made (0018): applying over a change is refused
    base_grid_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    report: Mapped[Any | None] = mapped_column(JSONB)  # what the apply did
    updated_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        Index("ix_plan_scope_code", "scope_code"),
        Index("ix_plan_due", "effective_at", postgresql_where=text("status = 'scheduled'")),  # 0019
        CheckConstraint(_in("status", vocab.PLAN_STATUSES), name="plan_status"),
        CheckConstraint(_in("scope_level", ("community", "street", "district")), name="plan_scope_level"),
    )


class PlanGrid(Base):
    """A grid polygon proposed by a plan (code assigned on apply when new)."""

    __tablename__ = "plan_grid"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"), index=True)
    code: Mapped[str | None] = mapped_column(String(15))
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20), server_default="general")
    community_code: Mapped[str | None] = mapped_column(String(12))
    source_grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    geom: Mapped[Any] = geom_col("MULTIPOLYGON")
    # a draft may hold invalid polygons: validation reports them with the reason (0018)
    __table_args__ = (*geom_rules("plan_grid", valid=False),)


class Grid(Base):
    """A version of a unit grid. Code = 12-digit community code + 3-digit serial.

    ``valid_from`` is inclusive, ``valid_to`` exclusive, NULL means in force; two versions of
    one code never overlap in time (exclusion constraint), so history is never rewritten.
    """

    __tablename__ = "grid"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(15))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20), server_default="general")
    community_id: Mapped[int] = mapped_column(ForeignKey("admin_area.id", ondelete="RESTRICT"), index=True)
    geom: Mapped[Any] = geom_col("MULTIPOLYGON")
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plan.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = now_col()
    # on the ellipsoid, written with the boundary (migration 0017)
    area_m2: Mapped[float] = mapped_column(Float, Computed("ST_Area(geom::geography)", persisted=True))
    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{15}$'", name="grid_code_form"),
        CheckConstraint(_in("kind", vocab.GRID_KINDS), name="grid_kind"),
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="grid_valid_range"),
        ExcludeConstraint(
            ("code", "="),
            (text("tstzrange(valid_from, valid_to, '[)')"), "&&"),
            name="grid_versions_no_overlap",
            using="gist",
        ),
        Index("ux_grid_code_in_force", "code", unique=True, postgresql_where=text("valid_to IS NULL")),
        *geom_rules("grid"),
    )


class Road(Base):
    __tablename__ = "road"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(12), server_default="local")
    width_m: Mapped[float | None] = mapped_column(Numeric(5, 1))
    geom: Mapped[Any] = geom_col("LINESTRING")
    __table_args__ = (CheckConstraint(_in("kind", vocab.ROAD_KINDS), name="road_kind"), *geom_rules("road"))


class Building(Base):
    """A building footprint; its grid is derived from its location (``grid_code``)."""

    __tablename__ = "building"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str | None] = mapped_column(Text, unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    use: Mapped[str] = mapped_column(String(16), server_default="residential")
    floors: Mapped[int | None] = mapped_column(SmallInteger)
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    grid_code: Mapped[str | None] = mapped_column(String(15))
    geom: Mapped[Any] = geom_col("MULTIPOLYGON")
    created_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        Index("ix_building_grid_code_id", "grid_code", "id"),  # pages by grid, then id (0012)
        CheckConstraint(_in("use", vocab.BUILDING_USES), name="building_use"),
        CheckConstraint("floors IS NULL OR floors BETWEEN 1 AND 200", name="building_floors"),
        CheckConstraint("households >= 0", name="building_households"),
        *geom_rules("building"),
    )


class Household(Base):
    __tablename__ = "household"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("building.id", ondelete="SET NULL"), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(15))
    unit_no: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    created_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (Index("ix_household_grid_code_id", "grid_code", "id"),)


class Resident(Base):
    """Personal data. Sensitive: see design.md, Access."""

    __tablename__ = "resident"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("household.id", ondelete="SET NULL"), index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("building.id", ondelete="SET NULL"), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(15))
    name: Mapped[str] = mapped_column(Text)
    id_number: Mapped[str | None] = mapped_column(String(18))  # unique among reviewed residents (0009)
    gender: Mapped[str | None] = mapped_column(String(1))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(20))
    relation: Mapped[str | None] = mapped_column(String(12))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    review: Mapped[str | None] = mapped_column(String(24))  # 'duplicate_id_number': registered twice
    is_synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[dt.datetime] = now_col()
    updated_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        CheckConstraint("gender IN ('M', 'F')", name="resident_gender"),
        CheckConstraint("id_number ~ '^[0-9]{17}[0-9X]$'", name="resident_id_number_form"),
        CheckConstraint("review IS NULL OR review IN ('duplicate_id_number')", name="resident_review"),
        Index("ix_resident_grid_code_id", "grid_code", "id"),  # pages by grid, then id; the RLS range (0012)
        Index("ix_resident_tags", "tags", postgresql_using="gin"),
        Index("uq_resident_id_number", "id_number", unique=True, postgresql_where=text("review IS NULL")),
    )


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20))
    duty_status: Mapped[str] = mapped_column(String(10), server_default="off_duty")
    last_position: Mapped[Any | None] = geom_col("POINT", nullable=True)
    last_position_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    password_hash: Mapped[str | None] = mapped_column(Text)
    token_version: Mapped[int] = mapped_column(Integer, server_default="0")  # raised → older tokens end
    failed_sign_ins: Mapped[int] = mapped_column(Integer, server_default="0")  # in a row (migration 0010)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    is_synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        CheckConstraint(_in("role", vocab.STAFF_ROLES), name="staff_role"),
        CheckConstraint(_in("duty_status", vocab.DUTY_STATUSES), name="staff_duty_status"),
        *geom_rules("staff", "last_position"),
    )


class ApiKey(Base):
    """A machine's credential (hotline, camera systems): only the SHA-256 of the key is kept."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    scope_level: Mapped[str] = mapped_column(String(10), server_default="city")
    scope_code: Mapped[str | None] = mapped_column(String(15))
    created_at: Mapped[dt.datetime] = now_col()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(_in("role", vocab.STAFF_ROLES), name="api_key_role"),
        CheckConstraint(_in("scope_level", vocab.SCOPE_LEVELS), name="api_key_scope_level"),
        UniqueConstraint("prefix", name="uq_api_key_prefix"),
    )


class StaffScope(Base):
    """What a staff member is responsible for: grid / community / street / district codes."""

    __tablename__ = "staff_scope"
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[str] = mapped_column(String(10), primary_key=True)
    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    __table_args__ = (
        CheckConstraint(_in("level", vocab.SCOPE_LEVELS), name="staff_scope_level"),
        Index("ix_staff_scope_code", "level", "code"),
    )


class DutyRoster(Base):
    """Weekly duty pattern: weekday 0 = Monday, local time (Asia/Shanghai)."""

    __tablename__ = "duty_roster"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)
    starts: Mapped[dt.time] = mapped_column(Time)
    ends: Mapped[dt.time] = mapped_column(Time)
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="duty_roster_weekday"),
        CheckConstraint("ends > starts", name="duty_roster_span"),
    )


class Category(Base):
    """Incident category taxonomy with the default time limit for a normal-severity case."""

    __tablename__ = "category"
    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("category.code", ondelete="RESTRICT"))
    name_zh: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(SmallInteger)
    time_limit: Mapped[float] = mapped_column(Numeric(6, 1))
    time_unit: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    __table_args__ = (
        CheckConstraint(_in("time_unit", vocab.TIME_UNITS), name="category_time_unit"),
        CheckConstraint("time_limit > 0", name="category_time_limit"),
        CheckConstraint("level IN (1, 2)", name="category_level"),
    )


class Incident(Base):
    """A case (案件). ``grid_id`` is the grid version responsible at report time."""

    __tablename__ = "incident"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("category.code", ondelete="RESTRICT"), index=True)
    severity: Mapped[int] = mapped_column(SmallInteger, server_default="2")
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), server_default="reported")
    level: Mapped[str] = mapped_column(String(10), server_default="grid")
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = geom_col("POINT")
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="RESTRICT"), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(15))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rework_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    escalation_count: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    is_synthetic: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[dt.datetime] = now_col()
    updated_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (
        CheckConstraint(_in("status", vocab.INCIDENT_STATUSES), name="incident_status"),
        CheckConstraint(_in("level", vocab.ESCALATION_LEVELS), name="incident_level"),
        CheckConstraint(_in("source", vocab.INCIDENT_SOURCES), name="incident_source"),
        CheckConstraint("severity BETWEEN 1 AND 4", name="incident_severity"),
        Index("ix_incident_grid_code_reported", "grid_code", "reported_at"),
        Index("ix_incident_reported_at", "reported_at"),
        Index(
            "ix_incident_open", "status", "deadline_at",
            postgresql_where=text("status NOT IN ('closed', 'rejected')"),
        ),  # fmt: skip
        Index(  # the duplicate check of every report (migration 0006)
            "ix_incident_open_geom", "geom", postgresql_using="gist",
            postgresql_where=text("status NOT IN ('closed', 'rejected')"),
        ),  # fmt: skip
        Index(  # open and overdue counts per grid in the grids tiles (migration 0014)
            "ix_incident_open_grid", "grid_code", postgresql_where=text("status NOT IN ('closed', 'rejected')"),
        ),  # fmt: skip
        *geom_rules("incident"),
    )


class IncidentEvent(Base):
    """Append-only log of an incident: every transition with actor, time and note."""

    __tablename__ = "incident_event"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="RESTRICT"))
    seq: Mapped[int] = mapped_column(SmallInteger)
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any | None] = mapped_column(JSONB)
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_incident_event_seq"),)


class PatrolPing(Base):
    __tablename__ = "patrol_ping"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = geom_col("POINT")
    accuracy_m: Mapped[float | None] = mapped_column(Numeric(6, 1))
    __table_args__ = (
        Index("ix_patrol_ping_staff_at", "staff_id", "at"),
        Index("ix_patrol_ping_at", "at", postgresql_using="brin"),
        *geom_rules("patrol_ping"),
    )


class PatrolTrack(Base):
    __tablename__ = "patrol_track"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ping_count: Mapped[int] = mapped_column(Integer, server_default="0")
    length_m: Mapped[float | None] = mapped_column(Numeric(10, 1))
    geom: Mapped[Any] = geom_col("LINESTRING")
    __table_args__ = (
        CheckConstraint("ended_at >= started_at", name="patrol_track_span"),
        Index("ix_patrol_track_staff_started", "staff_id", "started_at"),
        *geom_rules("patrol_track"),
    )


class Camera(Base):
    __tablename__ = "camera"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(20))
    online: Mapped[bool] = mapped_column(Boolean, server_default="true")
    grid_code: Mapped[str | None] = mapped_column(String(15), index=True)
    geom: Mapped[Any] = geom_col("POINT")
    __table_args__ = (CheckConstraint(_in("kind", vocab.CAMERA_KINDS), name="camera_kind"), *geom_rules("camera"))


class ServicePoint(Base):
    __tablename__ = "service_point"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(24))
    address: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20))
    grid_code: Mapped[str | None] = mapped_column(String(15), index=True)
    geom: Mapped[Any] = geom_col("POINT")
    __table_args__ = (
        CheckConstraint(_in("kind", vocab.SERVICE_POINT_KINDS), name="service_point_kind"),
        *geom_rules("service_point"),
    )



class CoverageSnapshot(Base):
    """Patrol coverage per grid computed ahead (migration 0015, `gridmap stats refresh-coverage`)."""

    __tablename__ = "coverage_snapshot"
    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    since: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    buffer_m: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[dt.datetime] = now_col()
    tracks: Mapped[int] = mapped_column(Integer)
    covered_share: Mapped[float] = mapped_column(Float)
    road_covered_share: Mapped[float | None] = mapped_column(Float)
    uncovered: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=True)
    __table_args__ = (Index("ix_coverage_snapshot_uncovered", "uncovered", postgresql_using="gist"),)


class GridCaseCount(Base):
    """Per grid in force: open, overdue and recent cases, kept ahead for the grids tiles (0016),
    with what else its tile shows: version, name, kind, area, boundary in Web Mercator (0020)."""

    __tablename__ = "grid_case_count"
    grid_code: Mapped[str] = mapped_column(String(15), primary_key=True)
    open: Mapped[int] = mapped_column(Integer)
    overdue: Mapped[int] = mapped_column(Integer)
    cases: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(20))
    area_km2: Mapped[float | None] = mapped_column(Float)
    geom_m: Mapped[Any | None] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=False), nullable=True)
    __table_args__ = (Index("ix_grid_case_count_geom_m", "geom_m", postgresql_using="gist"),)


class CaseCountRefresh(Base):
    """One row: when the per-grid case counts were last recounted in full, over which window."""

    __tablename__ = "case_count_refresh"
    id: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=true())
    window_days: Mapped[int] = mapped_column(Integer)
    refreshed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("id", name="case_count_refresh_one_row"),)

class AuditLog(Base):
    """Append-only: who read or changed what, when, from where."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = now_col()
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(Text)
    grid_code: Mapped[str | None] = mapped_column(String(15))
    client_addr: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any | None] = mapped_column(JSONB)
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_actor_at", "actor_id", "at"))


class IdempotencyKey(Base):
    """The answer given to a POST with an Idempotency-Key, per caller."""

    __tablename__ = "idempotency_key"
    caller: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = now_col()
    __table_args__ = (Index("ix_idempotency_key_created_at", "created_at"),)


class DemoInfo(Base):
    """What the demo generator loaded (scale, seed, counts), so commands can report it."""

    __tablename__ = "demo_info"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scale: Mapped[str] = mapped_column(String(12))
    seed: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[dt.datetime] = now_col()
    counts: Mapped[Any] = mapped_column(JSONB)
