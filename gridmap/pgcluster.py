"""gridmap's own PostGIS cluster: initdb into a project folder, a free port, run unprivileged.

The cluster lives in ``$GRIDMAP_HOME/pg``: ``data/`` (the cluster), ``run/`` (its unix socket),
``server.log`` and ``cluster.json`` (port and the generated password, mode 0600). PostgreSQL
refuses to run as root, so under root the server runs as ``GRIDMAP_PG_OS_USER`` (``postgres``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gridmap.errors import SetupError
from gridmap.settings import DatabaseSettings, db_settings

PG_ROOT = Path("/usr/lib/postgresql")
PG_SHARE = Path("/usr/share/postgresql")
DB_NAME = "gridmap"
DB_USER = "gridmap"
SOCKET_MAX = 100  # unix socket paths are limited to 107 bytes; leave room for ".s.PGSQL.NNNNN"


@dataclass
class ClusterState:
    port: int
    password: str
    version: int
    data_dir: str
    socket_dir: str
    port_fixed: bool = False

    def url(self, database: str = DB_NAME, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{database}"


def install_hint(version: int | None = None) -> str:
    ver = version or 15
    return f"sudo apt-get install -y postgresql postgresql-{ver}-postgis-3"


def find_postgres() -> tuple[int, Path]:
    """Return the newest PostgreSQL major version that has PostGIS, and its bin folder."""
    versions = sorted(
        (int(p.name) for p in PG_ROOT.glob("*") if p.name.isdigit() and (p / "bin/initdb").exists()),
        reverse=True,
    )
    if not versions:
        raise SetupError(
            "PostgreSQL server is not installed",
            hint=f"install it with: {install_hint()}  (or set GRIDMAP_DATABASE_URL)",
        )
    for ver in versions:
        if (PG_SHARE / str(ver) / "extension/postgis.control").exists():
            return ver, PG_ROOT / str(ver) / "bin"
    raise SetupError(
        f"PostGIS is not installed for PostgreSQL {versions[0]}",
        hint=f"install it with: {install_hint(versions[0])}  (or set GRIDMAP_DATABASE_URL)",
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_free_port(start: int = 54320) -> int:
    for port in range(start, start + 200):
        if port_is_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Create, start, stop and describe the project-local PostGIS cluster."""

    def __init__(self, settings: DatabaseSettings | None = None) -> None:
        self.settings = settings or db_settings()
        self.base = self.settings.home.resolve() / "pg"
        self.state_file = self.base / "cluster.json"

    # -- where things live -------------------------------------------------------------
    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def _server_user(self) -> pwd.struct_passwd | None:
        if not self.as_root:
            return None
        name = self.settings.pg_os_user
        try:
            return pwd.getpwnam(name)
        except KeyError:
            if shutil.which("useradd") is None:
                raise SetupError(
                    f"user {name!r} to run PostgreSQL does not exist",
                    hint="create it, or set GRIDMAP_PG_OS_USER to an unprivileged user",
                ) from None
            subprocess.run(
                ["useradd", "--system", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(name)

    def _server_can_reach(self, path: Path, user: pwd.struct_passwd) -> bool:
        """Check that the server account can traverse every parent of `path`."""
        res = subprocess.run(
            ["test", "-x", str(path)], user=user.pw_uid, group=user.pw_gid, capture_output=True
        )
        return res.returncode == 0

    def _layout(self) -> tuple[Path, Path]:
        """Choose the data and socket folders (outside the project if it is unreachable)."""
        data, run = self.base / "data", self.base / "run"
        user = self._server_user()
        self.base.mkdir(parents=True, exist_ok=True)
        if user is not None and not self._server_can_reach(self.base, user):
            digest = hashlib.sha1(str(self.base).encode()).hexdigest()[:10]
            alt = Path("/var/tmp") / f"gridmap-{digest}"
            data, run = alt / "data", alt / "run"
        if len(str(run)) > SOCKET_MAX:
            digest = hashlib.sha1(str(self.base).encode()).hexdigest()[:10]
            run = Path(tempfile.gettempdir()) / f"gridmap-{digest}"
        return data, run

    def state(self) -> ClusterState | None:
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _save(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        self.state_file.chmod(0o600)

    # -- running commands as the server account ----------------------------------------
    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._server_user()
        kwargs: dict = {"capture_output": True, "text": True}
        if user is not None:
            kwargs |= {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            kwargs["env"] = {**os.environ, "HOME": "/tmp", "USER": user.pw_name}
            kwargs["cwd"] = "/"
        res = subprocess.run(args, **kwargs)
        if check and res.returncode != 0:
            last = (res.stderr or res.stdout).strip().splitlines()
            raise SetupError(f"{Path(args[0]).name} failed: {last[-1] if last else 'no output'}")
        return res

    def _own(self, *paths: Path) -> None:
        user = self._server_user()
        for p in paths:
            p.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(p, user.pw_uid, user.pw_gid)
        for p in paths:
            p.chmod(0o700)

    # -- lifecycle -----------------------------------------------------------------------
    def init(self) -> ClusterState:
        """Create the cluster if it does not exist yet."""
        version, bindir = find_postgres()
        state = self.state()
        if state and (Path(state.data_dir) / "PG_VERSION").exists():
            return state
        data, run = self._layout()
        if data.exists() and any(data.iterdir()):
            shutil.rmtree(data)  # a half-made cluster from an interrupted init
        self._own(data.parent, data, run)
        password = secrets.token_urlsafe(18)
        fixed = self.settings.pg_port is not None
        port = self.settings.pg_port or pick_free_port()
        with tempfile.NamedTemporaryFile("w", delete=False, dir="/tmp", prefix="gridmap-pw-") as f:
            f.write(password + "\n")
            pwfile = f.name
        user = self._server_user()
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                    "-E", "UTF8", "--locale=C.UTF-8",
                ]
            )  # fmt: skip
        finally:
            os.unlink(pwfile)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{run}'",
            "shared_buffers": f"'{self.settings.pg_shared_buffers}'",
            "work_mem": "'32MB'",
            "maintenance_work_mem": "'512MB'",
            "max_connections": "200",
            "max_wal_size": "'4GB'",
            "checkpoint_timeout": "'15min'",
            "wal_level": "'minimal'",
            "max_wal_senders": "0",
            "jit": "off",  # JIT costs more than it saves on short OLTP and tile queries
            "logging_collector": "off",
        }
        with open(data / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        state = ClusterState(
            port=port, password=password, version=version,
            data_dir=str(data), socket_dir=str(run), port_fixed=fixed,
        )  # fmt: skip
        self._save(state)
        return state

    def is_running(self, state: ClusterState | None = None) -> bool:
        state = state or self.state()
        if state is None or not Path(state.data_dir, "PG_VERSION").exists():
            return False
        _, bindir = find_postgres()
        res = self._run([str(bindir / "pg_ctl"), "-D", state.data_dir, "status"], check=False)
        return res.returncode == 0

    def up(self) -> ClusterState:
        """Create (if needed) and start the cluster, then make sure the database exists."""
        state = self.init()
        _, bindir = find_postgres()
        if not self.is_running(state):
            if not port_is_free(state.port):
                if state.port_fixed:
                    raise SetupError(
                        f"port {state.port} on 127.0.0.1 is busy",
                        hint="stop what uses it, or set GRIDMAP_PG_PORT to another port",
                    )
                state.port = pick_free_port(state.port + 1)
                with open(Path(state.data_dir) / "postgresql.auto.conf", "a") as f:
                    f.write(f"port = {state.port}\n")
                self._save(state)
            Path(state.socket_dir).mkdir(parents=True, exist_ok=True)
            self._own(Path(state.socket_dir))
            log = Path(state.data_dir).parent / "server.log"
            if self.as_root and not log.exists():
                log.touch()
                user = self._server_user()
                assert user is not None
                os.chown(log, user.pw_uid, user.pw_gid)
            res = self._run(
                [str(bindir / "pg_ctl"), "-D", state.data_dir, "-l", str(log), "-w", "-t", "60", "start"],
                check=False,
            )
            if res.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise SetupError(
                    f"PostgreSQL did not start: {tail[0] if tail else res.stderr.strip()}",
                    hint=f"see {log}",
                )
        self._ensure_database(state)
        return state

    def _ensure_database(self, state: ClusterState) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(
                    host="127.0.0.1", port=state.port, user=DB_USER, password=state.password,
                    dbname="postgres", autocommit=True, connect_timeout=5,
                )  # fmt: skip
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise SetupError(f"PostgreSQL on port {state.port} does not accept connections") from None
                time.sleep(0.3)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def down(self) -> bool:
        state = self.state()
        if state is None or not self.is_running(state):
            return False
        _, bindir = find_postgres()
        self._run([str(bindir / "pg_ctl"), "-D", state.data_dir, "-m", "fast", "-w", "stop"])
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster and all its data."""
        state = self.state()
        self.down()
        if state:
            data = Path(state.data_dir)
            # a fallback location outside the project goes entirely; inside it, data and socket dirs
            outside = data.parent.name.startswith("gridmap-") and data.parent != self.base
            shutil.rmtree(data.parent if outside else data, ignore_errors=True)
            if Path(state.socket_dir).name.startswith("gridmap-"):
                shutil.rmtree(state.socket_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)


def database_url(database: str | None = None, driver: str = "psycopg") -> str:
    """The URL every command uses: GRIDMAP_DATABASE_URL, or the own cluster's.

    gridmap talks to PostgreSQL through psycopg 3 (server-side prepared statements for the
    hot paths); a URL written for libpq (postgresql://, postgres://) or for psycopg2 is read
    as the same server through psycopg 3.
    """
    settings = db_settings()
    if settings.database_url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        raw = settings.database_url
        if raw.startswith("postgres://"):
            raw = "postgresql://" + raw.removeprefix("postgres://")
        try:
            url = make_url(raw)
        except ArgumentError:
            raise SetupError(f"GRIDMAP_DATABASE_URL is not a database URL: {raw[:60]!r}",
                             hint="e.g. postgresql://user:password@host:5432/gridmap") from None  # fmt: skip
        if url.drivername in ("postgresql", "postgresql+psycopg2"):
            url = url.set(drivername=f"postgresql+{driver}")
        if database:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)
    state = Cluster(settings).state()
    if state is None:
        raise SetupError(
            "gridmap has no database yet", hint="run `gridmap db up`, or set GRIDMAP_DATABASE_URL"
        )
    return state.url(database or DB_NAME, driver)
