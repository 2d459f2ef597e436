"""Settings from the environment (prefix GRIDMAP_), one small class per concern."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def default_home() -> Path:
    """Keep state beside a source checkout; elsewhere in the user's data folder."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / ".gridmap"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "gridmap"


class DatabaseSettings(BaseSettings):
    """Where the database is: an explicit URL, or gridmap's own PostGIS cluster."""

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", extra="ignore")

    database_url: str | None = None
    home: Path = Field(default_factory=default_home)
    pg_port: int | None = None  # fixed port for the own cluster; a free one is picked otherwise
    pg_os_user: str = "postgres"  # the unprivileged account that runs the cluster under root
    pg_shared_buffers: str = "512MB"
    statement_timeout_ms: int = 30_000
    pool_size: int = 10


DEV_SECRET = "dev-only-secret-change-me-outside-development"


class ApiSettings(BaseSettings):
    """How the API is served and what it refuses."""

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", extra="ignore")

    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str = DEV_SECRET  # signs bearer tokens; every API process of a deployment shares it
    token_ttl_minutes: int = Field(60, ge=1, le=24 * 60)  # bearer tokens of people expire after this
    auth_cache_seconds: float = Field(5.0, ge=0, le=60)  # callers of recent credentials kept this long (cleared on change)
    tile_cache_mb: int = Field(256, ge=0, le=65536)  # encoded vector tiles kept per API process (0: none)
    case_count_seconds: float = Field(60.0, ge=0, le=3600)  # full recount of per-grid case counts (0: not kept)
    plan_check_seconds: float = Field(30.0, ge=0, le=3600)  # how often each API process applies due scheduled plans (0: never; cron instead)
    basemap_url: str | None = None  # an XYZ base-map template for the map, e.g. an in-house tile server; none: offline
    # keys the pseudonyms of exports (HMAC); kept outside the database. Default: derived from secret_key
    pseudonym_key: str | None = None
    max_body_bytes: int = 20 * 1024 * 1024
    # incident reports are written in batches (gridmap.batching): concurrent transactions per
    # API process, and the most reports one transaction takes
    report_writers: int = Field(1, ge=1, le=32)
    report_batch: int = Field(64, ge=1, le=1000)

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> ApiSettings:
        if self.env != "development" and self.secret_key == DEV_SECRET:
            raise ValueError("GRIDMAP_SECRET_KEY must be set outside development")
        if len(self.secret_key.encode()) < 32:
            raise ValueError("GRIDMAP_SECRET_KEY must be at least 32 bytes (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return self


@lru_cache
def db_settings() -> DatabaseSettings:
    return DatabaseSettings()


@lru_cache
def api_settings() -> ApiSettings:
    return ApiSettings()
