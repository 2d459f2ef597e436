"""per-day case-number sequences

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Case numbers are AJ + local date + a serial that restarts each day. Taking the serial from the
day's last case number needs a lock held until commit, which serialises every report of a day;
a sequence per day hands out serials without any lock (a report that rolls back leaves a gap).
``gridmap_case_serial(day)`` creates the day's sequence on first use;
``gridmap_ensure_case_sequences(first, days)`` creates them ahead of time (API start-up and
``gridmap sla tick`` call it) so that two first reports of a day do not race to create it; a new
sequence starts after the day's existing numbers, and ``gridmap_sync_case_sequences()`` moves
every day's sequence past its cases after a bulk load (the demo loader calls it).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION gridmap_ensure_case_sequences(first date, days int) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          name text;
          taken bigint;
        BEGIN
          FOR k IN 0 .. days - 1 LOOP
            name := 'incident_case_' || to_char(first + k, 'YYYYMMDD');
            IF to_regclass(name) IS NULL THEN
              BEGIN
                EXECUTE format('CREATE SEQUENCE %I', name);
              EXCEPTION WHEN duplicate_table OR unique_violation THEN CONTINUE;  -- created concurrently
              END;
              -- start after the numbers the day already has (bulk loads, the former numbering)
              SELECT max(substr(code, 11)::bigint) INTO taken FROM incident
              WHERE code LIKE 'AJ' || to_char(first + k, 'YYYYMMDD') || '%' AND substr(code, 11) ~ '^[0-9]+$';
              IF taken IS NOT NULL THEN PERFORM setval(name, taken); END IF;
            END IF;
          END LOOP;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_sync_case_sequences() RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
          r record;
        BEGIN  -- after a bulk load: every day with cases gets a sequence past its last number
          FOR r IN SELECT substr(code, 3, 8) AS day, max(substr(code, 11)::bigint) AS taken FROM incident
                   WHERE code ~ '^AJ[0-9]{8}[0-9]+$' GROUP BY 1 LOOP
            EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', 'incident_case_' || r.day);
            PERFORM setval('incident_case_' || r.day, greatest(r.taken,
              (SELECT last_value FROM pg_sequences WHERE sequencename = 'incident_case_' || r.day)));
          END LOOP;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_case_serial(day date) RETURNS bigint
        LANGUAGE plpgsql AS $$
        DECLARE
          name text := 'incident_case_' || to_char(day, 'YYYYMMDD');
        BEGIN
          IF to_regclass(name) IS NULL THEN
            PERFORM gridmap_ensure_case_sequences(day, 1);
          END IF;
          RETURN nextval(name::regclass);
        END $$
        """
    )
    op.execute("SELECT gridmap_sync_case_sequences()")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gridmap_case_serial(date)")
    op.execute("DROP FUNCTION IF EXISTS gridmap_sync_case_sequences()")
    op.execute("DROP FUNCTION IF EXISTS gridmap_ensure_case_sequences(date, int)")
    op.execute(
        """
        DO $$ DECLARE r record; BEGIN
          FOR r IN SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE 'incident\\_case\\_%' LOOP
            EXECUTE format('DROP SEQUENCE %I', r.relname);
          END LOOP;
        END $$
        """
    )
