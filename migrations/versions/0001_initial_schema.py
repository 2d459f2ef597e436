"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Creates the PostGIS and btree_gist extensions, every table of the data model with its
geometry constraints and GiST indexes, and the append-only guards on the event and audit logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = ("incident_event", "audit_log")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")  # code equality in the grid exclusion constraint
    op.create_geospatial_table('admin_area',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('level', sa.String(length=12), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("code ~ '^[0-9]+$' AND length(code) = CASE level WHEN 'district' THEN 6 WHEN 'street' THEN 9 ELSE 12 END", name='admin_area_code_form'),
    sa.CheckConstraint("level IN ('district', 'street', 'community')", name='admin_area_level'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='admin_area_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='admin_area_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='admin_area_geom_lonlat'),
    sa.ForeignKeyConstraint(['parent_id'], ['admin_area.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_geospatial_index('ix_admin_area_geom', 'admin_area', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_admin_area_parent_id'), 'admin_area', ['parent_id'], unique=False)
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.Text(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=True),
    sa.Column('object_id', sa.Text(), nullable=True),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('client_addr', postgresql.INET(), nullable=True),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_log_actor_at', 'audit_log', ['actor_id', 'at'], unique=False)
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_geospatial_table('building',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('use', sa.String(length=16), server_default='residential', nullable=False),
    sa.Column('floors', sa.SmallInteger(), nullable=True),
    sa.Column('households', sa.Integer(), server_default='0', nullable=False),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("use IN ('residential', 'mixed', 'commercial', 'office', 'school', 'hospital', 'industrial', 'public', 'village_house', 'other')", name='building_use'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='building_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='building_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='building_geom_lonlat'),
    sa.CheckConstraint('floors IS NULL OR floors BETWEEN 1 AND 200', name='building_floors'),
    sa.CheckConstraint('households >= 0', name='building_households'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_geospatial_index('ix_building_geom', 'building', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_building_grid_code'), 'building', ['grid_code'], unique=False)
    op.create_geospatial_table('camera',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('online', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint("kind IN ('public_security', 'traffic', 'city_management', 'community')", name='camera_kind'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='camera_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='camera_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='camera_geom_lonlat'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_geospatial_index('ix_camera_geom', 'camera', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_camera_grid_code'), 'camera', ['grid_code'], unique=False)
    op.create_table('category',
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('parent_code', sa.String(length=8), nullable=True),
    sa.Column('name_zh', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('time_limit', sa.Numeric(precision=6, scale=1), nullable=False),
    sa.Column('time_unit', sa.String(length=16), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
    sa.CheckConstraint("time_unit IN ('working_hours', 'working_days', 'calendar_hours')", name='category_time_unit'),
    sa.CheckConstraint('level IN (1, 2)', name='category_level'),
    sa.CheckConstraint('time_limit > 0', name='category_time_limit'),
    sa.ForeignKeyConstraint(['parent_code'], ['category.code'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('demo_info',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scale', sa.String(length=12), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_geospatial_table('road',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=12), server_default='local', nullable=False),
    sa.Column('width_m', sa.Numeric(precision=5, scale=1), nullable=True),
    sa.Column('geom', Geometry(geometry_type='LINESTRING', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint("kind IN ('arterial', 'secondary', 'local')", name='road_kind'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='road_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='road_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='road_geom_lonlat'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_geospatial_index('ix_road_geom', 'road', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('service_point',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint("kind IN ('party_service_center', 'grid_station', 'police_station', 'clinic', 'elderly_care', 'emergency_shelter')", name='service_point_kind'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='service_point_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='service_point_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='service_point_geom_lonlat'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_geospatial_index('ix_service_point_geom', 'service_point', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_service_point_grid_code'), 'service_point', ['grid_code'], unique=False)
    op.create_geospatial_table('staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('duty_status', sa.String(length=10), server_default='off_duty', nullable=False),
    sa.Column('last_position', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('last_position_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('is_synthetic', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("duty_status IN ('on_duty', 'off_duty', 'busy', 'leave')", name='staff_duty_status'),
    sa.CheckConstraint("role IN ('grid_worker', 'grid_leader', 'community_admin', 'street_admin', 'district_admin', 'dispatcher', 'command_center', 'planner', 'analyst', 'auditor', 'admin')", name='staff_role'),
    sa.CheckConstraint('NOT ST_IsEmpty(last_position)', name='staff_last_position_not_empty'),
    sa.CheckConstraint('ST_IsValid(last_position)', name='staff_last_position_valid'),
    sa.CheckConstraint('ST_XMin(last_position) >= -180 AND ST_XMax(last_position) <= 180 AND ST_YMin(last_position) >= -90 AND ST_YMax(last_position) <= 90', name='staff_last_position_lonlat'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_geospatial_index('ix_staff_last_position', 'staff', ['last_position'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('duty_roster',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('starts', sa.Time(), nullable=False),
    sa.Column('ends', sa.Time(), nullable=False),
    sa.CheckConstraint('ends > starts', name='duty_roster_span'),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name='duty_roster_weekday'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_duty_roster_staff_id'), 'duty_roster', ['staff_id'], unique=False)
    op.create_table('household',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('building_id', sa.BigInteger(), nullable=True),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('unit_no', sa.Text(), nullable=True),
    sa.Column('size', sa.SmallInteger(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['building_id'], ['building.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_household_building_id'), 'household', ['building_id'], unique=False)
    op.create_index(op.f('ix_household_grid_code'), 'household', ['grid_code'], unique=False)
    op.create_geospatial_table('patrol_ping',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('accuracy_m', sa.Numeric(precision=6, scale=1), nullable=True),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='patrol_ping_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='patrol_ping_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='patrol_ping_geom_lonlat'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_patrol_ping_at', 'patrol_ping', ['at'], unique=False, postgresql_using='brin')
    op.create_geospatial_index('ix_patrol_ping_geom', 'patrol_ping', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_patrol_ping_staff_at', 'patrol_ping', ['staff_id', 'at'], unique=False)
    op.create_geospatial_table('patrol_track',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ping_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('length_m', sa.Numeric(precision=10, scale=1), nullable=True),
    sa.Column('geom', Geometry(geometry_type='LINESTRING', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='patrol_track_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='patrol_track_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='patrol_track_geom_lonlat'),
    sa.CheckConstraint('ended_at >= started_at', name='patrol_track_span'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_geospatial_index('ix_patrol_track_geom', 'patrol_track', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_patrol_track_staff_started', 'patrol_track', ['staff_id', 'started_at'], unique=False)
    op.create_table('plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('scope_level', sa.String(length=12), nullable=False),
    sa.Column('scope_code', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), server_default='draft', nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('validated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('effective_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rollback_of', sa.Integer(), nullable=True),
    sa.Column('findings', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('impact', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.CheckConstraint("scope_level IN ('community', 'street', 'district')", name='plan_scope_level'),
    sa.CheckConstraint("status IN ('draft', 'validated', 'applied', 'discarded', 'rolled_back')", name='plan_status'),
    sa.ForeignKeyConstraint(['created_by'], ['staff.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rollback_of'], ['plan.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('staff_scope',
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('code', sa.String(length=15), nullable=False),
    sa.CheckConstraint("level IN ('grid', 'community', 'street', 'district', 'city')", name='staff_scope_level'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_id', 'level', 'code')
    )
    op.create_index('ix_staff_scope_code', 'staff_scope', ['level', 'code'], unique=False)
    op.create_geospatial_table('grid',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=15), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=20), server_default='general', nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    postgresql.ExcludeConstraint((sa.column('code'), '='), (sa.text("tstzrange(valid_from, valid_to, '[)')"), '&&'), using='gist', name='grid_versions_no_overlap'),
    sa.CheckConstraint("code ~ '^[0-9]{15}$'", name='grid_code_form'),
    sa.CheckConstraint("kind IN ('general', 'school', 'hospital', 'industrial_park', 'commercial', 'government', 'scenic', 'other')", name='grid_kind'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='grid_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='grid_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='grid_geom_lonlat'),
    sa.CheckConstraint('valid_to IS NULL OR valid_to > valid_from', name='grid_valid_range'),
    sa.ForeignKeyConstraint(['community_id'], ['admin_area.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_grid_community_id'), 'grid', ['community_id'], unique=False)
    op.create_geospatial_index('ix_grid_geom', 'grid', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ux_grid_code_in_force', 'grid', ['code'], unique=True, postgresql_where=sa.text('valid_to IS NULL'))
    op.create_table('resident',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('household_id', sa.BigInteger(), nullable=True),
    sa.Column('building_id', sa.BigInteger(), nullable=True),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=True),
    sa.Column('gender', sa.String(length=1), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('relation', sa.String(length=12), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('is_synthetic', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("gender IN ('M', 'F')", name='resident_gender'),
    sa.CheckConstraint("id_number ~ '^[0-9]{17}[0-9X]$'", name='resident_id_number_form'),
    sa.ForeignKeyConstraint(['building_id'], ['building.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('id_number')
    )
    op.create_index(op.f('ix_resident_building_id'), 'resident', ['building_id'], unique=False)
    op.create_index(op.f('ix_resident_grid_code'), 'resident', ['grid_code'], unique=False)
    op.create_index(op.f('ix_resident_household_id'), 'resident', ['household_id'], unique=False)
    op.create_index('ix_resident_tags', 'resident', ['tags'], unique=False, postgresql_using='gin')
    op.create_geospatial_table('incident',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('category_code', sa.String(length=8), nullable=False),
    sa.Column('severity', sa.SmallInteger(), server_default='2', nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=12), server_default='reported', nullable=False),
    sa.Column('level', sa.String(length=10), server_default='grid', nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('grid_id', sa.BigInteger(), nullable=True),
    sa.Column('grid_code', sa.String(length=15), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('reporter_id', sa.Integer(), nullable=True),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rework_count', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('escalation_count', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('is_synthetic', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("level IN ('grid', 'community', 'street', 'district')", name='incident_level'),
    sa.CheckConstraint("source IN ('hotline', 'citizen_app', 'camera', 'patrol', 'department', 'open311')", name='incident_source'),
    sa.CheckConstraint("status IN ('reported', 'registered', 'rejected', 'dispatched', 'in_progress', 'resolved', 'verified', 'closed')", name='incident_status'),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='incident_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='incident_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='incident_geom_lonlat'),
    sa.CheckConstraint('severity BETWEEN 1 AND 4', name='incident_severity'),
    sa.ForeignKeyConstraint(['assignee_id'], ['staff.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['category_code'], ['category.code'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['grid_id'], ['grid.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reporter_id'], ['staff.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_index(op.f('ix_incident_assignee_id'), 'incident', ['assignee_id'], unique=False)
    op.create_index(op.f('ix_incident_category_code'), 'incident', ['category_code'], unique=False)
    op.create_geospatial_index('ix_incident_geom', 'incident', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_incident_grid_code_reported', 'incident', ['grid_code', 'reported_at'], unique=False)
    op.create_index(op.f('ix_incident_grid_id'), 'incident', ['grid_id'], unique=False)
    op.create_index('ix_incident_open', 'incident', ['status', 'deadline_at'], unique=False, postgresql_where=sa.text("status NOT IN ('closed', 'rejected')"))
    op.create_index('ix_incident_reported_at', 'incident', ['reported_at'], unique=False)
    op.create_geospatial_table('plan_grid',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=15), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=20), server_default='general', nullable=False),
    sa.Column('community_code', sa.String(length=12), nullable=True),
    sa.Column('source_grid_id', sa.BigInteger(), nullable=True),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint('NOT ST_IsEmpty(geom)', name='plan_grid_geom_not_empty'),
    sa.CheckConstraint('ST_IsValid(geom)', name='plan_grid_geom_valid'),
    sa.CheckConstraint('ST_XMin(geom) >= -180 AND ST_XMax(geom) <= 180 AND ST_YMin(geom) >= -90 AND ST_YMax(geom) <= 90', name='plan_grid_geom_lonlat'),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_grid_id'], ['grid.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_geospatial_index('ix_plan_grid_geom', 'plan_grid', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_plan_grid_plan_id'), 'plan_grid', ['plan_id'], unique=False)
    op.create_table('incident_event',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('incident_id', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.SmallInteger(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=12), nullable=True),
    sa.Column('to_status', sa.String(length=12), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['staff.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('incident_id', 'seq', name='uq_incident_event_seq')
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()"
        )


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute("DROP FUNCTION IF EXISTS gridmap_append_only()")
    op.drop_table('incident_event')
    op.drop_index(op.f('ix_plan_grid_plan_id'), table_name='plan_grid')
    op.drop_geospatial_index('ix_plan_grid_geom', table_name='plan_grid', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('plan_grid')
    op.drop_index('ix_incident_reported_at', table_name='incident')
    op.drop_index('ix_incident_open', table_name='incident', postgresql_where=sa.text("status NOT IN ('closed', 'rejected')"))
    op.drop_index(op.f('ix_incident_grid_id'), table_name='incident')
    op.drop_index('ix_incident_grid_code_reported', table_name='incident')
    op.drop_geospatial_index('ix_incident_geom', table_name='incident', postgresql_using='gist', column_name='geom')
    op.drop_index(op.f('ix_incident_category_code'), table_name='incident')
    op.drop_index(op.f('ix_incident_assignee_id'), table_name='incident')
    op.drop_geospatial_table('incident')
    op.drop_index('ix_resident_tags', table_name='resident', postgresql_using='gin')
    op.drop_index(op.f('ix_resident_household_id'), table_name='resident')
    op.drop_index(op.f('ix_resident_grid_code'), table_name='resident')
    op.drop_index(op.f('ix_resident_building_id'), table_name='resident')
    op.drop_table('resident')
    op.drop_index('ux_grid_code_in_force', table_name='grid', postgresql_where=sa.text('valid_to IS NULL'))
    op.drop_geospatial_index('ix_grid_geom', table_name='grid', postgresql_using='gist', column_name='geom')
    op.drop_index(op.f('ix_grid_community_id'), table_name='grid')
    op.drop_geospatial_table('grid')
    op.drop_index('ix_staff_scope_code', table_name='staff_scope')
    op.drop_table('staff_scope')
    op.drop_table('plan')
    op.drop_index('ix_patrol_track_staff_started', table_name='patrol_track')
    op.drop_geospatial_index('ix_patrol_track_geom', table_name='patrol_track', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('patrol_track')
    op.drop_index('ix_patrol_ping_staff_at', table_name='patrol_ping')
    op.drop_geospatial_index('ix_patrol_ping_geom', table_name='patrol_ping', postgresql_using='gist', column_name='geom')
    op.drop_index('ix_patrol_ping_at', table_name='patrol_ping', postgresql_using='brin')
    op.drop_geospatial_table('patrol_ping')
    op.drop_index(op.f('ix_household_grid_code'), table_name='household')
    op.drop_index(op.f('ix_household_building_id'), table_name='household')
    op.drop_table('household')
    op.drop_index(op.f('ix_duty_roster_staff_id'), table_name='duty_roster')
    op.drop_table('duty_roster')
    op.drop_geospatial_index('ix_staff_last_position', table_name='staff', postgresql_using='gist', column_name='last_position')
    op.drop_geospatial_table('staff')
    op.drop_index(op.f('ix_service_point_grid_code'), table_name='service_point')
    op.drop_geospatial_index('ix_service_point_geom', table_name='service_point', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('service_point')
    op.drop_geospatial_index('ix_road_geom', table_name='road', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('road')
    op.drop_table('demo_info')
    op.drop_table('category')
    op.drop_index(op.f('ix_camera_grid_code'), table_name='camera')
    op.drop_geospatial_index('ix_camera_geom', table_name='camera', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('camera')
    op.drop_index(op.f('ix_building_grid_code'), table_name='building')
    op.drop_geospatial_index('ix_building_geom', table_name='building', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('building')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_index('ix_audit_log_actor_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_admin_area_parent_id'), table_name='admin_area')
    op.drop_geospatial_index('ix_admin_area_geom', table_name='admin_area', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('admin_area')
    op.execute("DROP EXTENSION IF EXISTS btree_gist")
    op.execute("DROP EXTENSION IF EXISTS postgis")
