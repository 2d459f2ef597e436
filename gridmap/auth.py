"""Who is calling: staff sign in with a password and get a signed, expiring bearer token;
machines use API keys. Both resolve to a `Principal` (role and scopes read from the database
on every request, so a new role, scope or a disable takes effect at once).

* Passwords: argon2id (argon2-cffi's defaults, re-hashed on sign-in when they change).
* Tokens: JWT, HS256 with ``GRIDMAP_SECRET_KEY``, ``exp`` after ``GRIDMAP_TOKEN_TTL_MINUTES``;
  they carry the staff id and ``staff.token_version``, so raising the version (disable, new
  role or scope, new password) ends every token issued before.
* API keys: ``gmk_<prefix>_<secret>`` with 256 random bits; only SHA-256(key) is stored.

Every refusal is the same 401 for "no such user" and "wrong password", and a password check
runs even for unknown users, so that neither the answer nor its timing tells which it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gridmap import vocab
from gridmap.errors import InvalidInput, NotFound, Unauthorized
from gridmap.settings import api_settings

ALGORITHM = "HS256"
ISSUER = "gridmap"
MIN_PASSWORD = 10
KEY_PREFIX = "gmk"
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anybody")


@dataclass(frozen=True)
class Principal:
    """The caller: a staff member (kind "user") or a machine (kind "key")."""

    kind: str
    id: int
    name: str
    role: str
    scopes: tuple[tuple[str, str], ...] = field(default=())  # (level, code); level "city" has code ""

    def as_dict(self) -> dict[str, Any]:
        zh, en = vocab.STAFF_ROLES[self.role]
        return {"kind": self.kind, "id": self.id, "name": self.name, "role": self.role, "role_name": zh,
                "role_name_en": en, "scopes": [{"level": lv, "code": c} for lv, c in self.scopes]}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# passwords and accounts
# ---------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"Invalid password: at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InvalidInput("Invalid password: at most 1024 characters")
    return _HASHER.hash(password)


def _role(role: str) -> str:
    if role not in vocab.STAFF_ROLES:
        raise InvalidInput(f"Unknown role {role[:40]!r}: use one of {', '.join(vocab.STAFF_ROLES)}")
    return role


def parse_scope(value: str) -> tuple[str, str]:
    """'grid:349902001001001', 'community:349902001001', … or 'city' → (level, code)."""
    level, _, code = value.partition(":")
    if level == "city" and not code:
        return "city", ""
    lengths = {"grid": 15, "community": 12, "street": 9, "district": 6}
    if level not in lengths:
        raise InvalidInput(f"Invalid scope {value[:40]!r}: write level:code, e.g. grid:349902001001001, or city")
    if not (len(code) == lengths[level] and code.isascii() and code.isdigit()):
        raise InvalidInput(f"Invalid scope {value[:40]!r}: a {level} code has {lengths[level]} digits")
    return level, code


# which scope levels fit which role: a grid worker is responsible for grids, never for a city
SCOPE_LEVELS_BY_ROLE = {
    "grid_worker": ("grid",), "grid_leader": ("grid", "community"), "community_admin": ("community",),
    "street_admin": ("street",), "district_admin": ("district",),
}  # fmt: skip
OTHER_ROLE_LEVELS = ("district", "street", "city")  # dispatcher, command center, planner, … work above grids


def check_scopes(role: str, scopes: list[tuple[str, str]]) -> None:
    allowed = SCOPE_LEVELS_BY_ROLE.get(role, OTHER_ROLE_LEVELS)
    for level, code in scopes:
        if level not in allowed:
            shown = f"{level}:{code}" if code else level
            raise InvalidInput(f"A {role} cannot have the scope {shown}: use {' or '.join(allowed)} scopes")


def _staff_id(session: Session, username: str) -> int:
    found = session.execute(text("SELECT id FROM staff WHERE username = :u"), {"u": username}).scalar()
    if found is None:
        raise NotFound(f"No staff member with username {username[:64]!r}")
    return int(found)


def add_user(session: Session, *, username: str, name: str, role: str, password: str,
             scopes: list[tuple[str, str]] | None = None, phone: str | None = None) -> int:  # fmt: skip
    """A staff member who can sign in; returns the id. Usernames are unique."""
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise InvalidInput("Invalid username: 1 to 64 printable characters without spaces")
    if session.execute(text("SELECT 1 FROM staff WHERE username = :u"), {"u": username}).first():
        raise InvalidInput(f"Username {username!r} is taken")
    staff_id = session.execute(
        text("INSERT INTO staff (username, name, role, phone, password_hash) VALUES (:u, :n, :r, :p, :h) RETURNING id"),
        {"u": username, "n": name, "r": _role(role), "p": phone, "h": hash_password(password)},
    ).scalar_one()  # fmt: skip
    set_scopes(session, username=username, scopes=scopes or [])
    return int(staff_id)


def set_role(session: Session, *, username: str, role: str, scopes: list[tuple[str, str]] | None = None) -> None:
    """A new role, with new scopes when given; the scopes must fit the role (a promotion from
    grid worker to community admin changes both at once)."""
    staff_id = _staff_id(session, username)
    if scopes is None:
        rows = session.execute(text("SELECT level, code FROM staff_scope WHERE staff_id = :id"), {"id": staff_id}).all()
        check_scopes(_role(role), [(str(lv), str(c)) for lv, c in rows])
    session.execute(text("UPDATE staff SET role = :r, token_version = token_version + 1 WHERE id = :id"),
                    {"r": _role(role), "id": staff_id})  # fmt: skip
    if scopes is not None:
        set_scopes(session, username=username, scopes=scopes)


def set_scopes(session: Session, *, username: str, scopes: list[tuple[str, str]]) -> None:
    """Replace a staff member's scopes (and end the tokens issued under the old ones)."""
    staff_id = _staff_id(session, username)
    role = session.execute(text("SELECT role FROM staff WHERE id = :id"), {"id": staff_id}).scalar_one()
    check_scopes(role, scopes)
    session.execute(text("DELETE FROM staff_scope WHERE staff_id = :id"), {"id": staff_id})
    for level, code in scopes:
        session.execute(text("INSERT INTO staff_scope (staff_id, level, code) VALUES (:id, :l, :c)"),
                        {"id": staff_id, "l": level, "c": code})  # fmt: skip
    session.execute(text("UPDATE staff SET token_version = token_version + 1 WHERE id = :id"), {"id": staff_id})


def set_password(session: Session, *, username: str, password: str) -> None:
    session.execute(text("UPDATE staff SET password_hash = :h, token_version = token_version + 1, failed_sign_ins = 0, "
                         "locked_until = NULL WHERE id = :id"),
                    {"h": hash_password(password), "id": _staff_id(session, username)})  # fmt: skip


def disable(session: Session, *, username: str) -> None:
    """The account can no longer sign in, and its tokens stop working now."""
    session.execute(text("UPDATE staff SET active = false, token_version = token_version + 1 WHERE id = :id"),
                    {"id": _staff_id(session, username)})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------------

DENIED = "Wrong username or password"


LOCKOUT_AFTER = 5  # failed sign-ins in a row
LOCKOUT_MINUTES = 15


def authenticate(session: Session, *, username: str, password: str) -> Principal:
    """The staff member with this username and password, or Unauthorized (one message for all).

    Failed attempts are counted per account in a transaction of their own (the request's rolls
    back); after LOCKOUT_AFTER in a row the account refuses every password, the right one
    included, for LOCKOUT_MINUTES — with the same message.
    """
    row = session.execute(
        text("SELECT id, password_hash, active, locked_until > now() AS locked FROM staff WHERE username = :u"),
        {"u": username[:64]},
    ).first()  # fmt: skip
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
        ok = row is not None and bool(row.password_hash) and row.active and not row.locked
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        if row is not None and not row.locked:
            _count_failure(session, int(row.id))
        raise Unauthorized(DENIED)
    session.execute(text("UPDATE staff SET failed_sign_ins = 0, locked_until = NULL WHERE id = :id AND failed_sign_ins > 0"),
                    {"id": row.id})  # fmt: skip
    if _HASHER.check_needs_rehash(stored):
        session.execute(text("UPDATE staff SET password_hash = :h WHERE id = :id"), {"h": _HASHER.hash(password), "id": row.id})
    return _user(session, int(row.id))


def _count_failure(session: Session, staff_id: int) -> None:
    with session.get_bind().engine.connect() as conn, conn.begin():
        conn.execute(
            text("UPDATE staff SET failed_sign_ins = failed_sign_ins + 1, locked_until = CASE "
                 "WHEN failed_sign_ins + 1 >= :n THEN now() + make_interval(mins => :m) END WHERE id = :id"),
            {"n": LOCKOUT_AFTER, "m": LOCKOUT_MINUTES, "id": staff_id},
        )  # fmt: skip


def issue_token(session: Session, principal: Principal, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """A signed bearer token for a staff member, OAuth2 style."""
    now = now or dt.datetime.now(dt.UTC)
    ttl = dt.timedelta(minutes=api_settings().token_ttl_minutes)
    version = session.execute(text("SELECT token_version FROM staff WHERE id = :id"), {"id": principal.id}).scalar_one()
    claims = {"iss": ISSUER, "sub": str(principal.id), "ver": int(version), "iat": int(now.timestamp()),
              "exp": int((now + ttl).timestamp()), "jti": secrets.token_hex(8)}  # fmt: skip
    token = jwt.encode(claims, api_settings().secret_key, algorithm=ALGORITHM)
    return {"access_token": token, "token_type": "bearer", "expires_in": int(ttl.total_seconds())}


def _user(session: Session, staff_id: int, version: int | None = None) -> Principal:
    row = session.execute(
        text("SELECT id, name, role, active, token_version FROM staff WHERE id = :id"), {"id": staff_id}
    ).first()  # fmt: skip
    if row is None or not row.active or (version is not None and version != row.token_version):
        raise Unauthorized("The token is no longer valid: sign in again")
    scopes = session.execute(
        text("SELECT level, code FROM staff_scope WHERE staff_id = :id ORDER BY level, code"), {"id": staff_id}
    ).all()  # fmt: skip
    return Principal("user", int(row.id), str(row.name), str(row.role), tuple((str(lv), str(c)) for lv, c in scopes))


def _claims(token: str) -> tuple[int, int, float]:
    """(staff id, token version, expiry as a Unix time) of a bearer token, or Unauthorized."""
    try:
        claims = jwt.decode(token, api_settings().secret_key, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "sub", "ver", "iss"]})  # fmt: skip
        return int(claims["sub"]), int(claims["ver"]), float(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired: sign in again") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise Unauthorized("The token is not valid") from None


def from_token(session: Session, token: str) -> Principal:
    """The staff member a bearer token names, or Unauthorized (expired, forged, revoked, disabled)."""
    staff_id, version, _ = _claims(token)
    return _user(session, staff_id, version)


# ---------------------------------------------------------------------------------------------
# API keys
# ---------------------------------------------------------------------------------------------


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_api_key(session: Session, *, name: str, role: str, scope: tuple[str, str] = ("city", "")) -> str:
    """A new API key; the only time the key itself is shown. Store it like a password."""
    check_scopes(_role(role), [scope])
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.execute(
        text("INSERT INTO api_key (name, prefix, key_hash, role, scope_level, scope_code) VALUES (:n, :p, :h, :r, :l, :c)"),
        {"n": name, "p": prefix, "h": _key_hash(key), "r": _role(role), "l": scope[0], "c": scope[1] or None},
    )  # fmt: skip
    return key


def revoke_api_key(session: Session, *, prefix: str) -> None:
    done = session.execute(text("UPDATE api_key SET revoked_at = now() WHERE prefix = :p AND revoked_at IS NULL RETURNING id"),
                           {"p": prefix}).first()  # fmt: skip
    if done is None:
        raise NotFound(f"No active API key with prefix {prefix[:12]!r}")


def from_api_key(session: Session, key: str) -> Principal:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(key) > 200:
        raise Unauthorized("The API key is not valid")
    row = session.execute(
        text("SELECT id, name, key_hash, role, scope_level, scope_code, revoked_at FROM api_key WHERE prefix = :p"),
        {"p": parts[1]},
    ).first()  # fmt: skip
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, _key_hash(key)):
        raise Unauthorized("The API key is not valid")
    session.execute(text("UPDATE api_key SET last_used_at = now() WHERE id = :id AND "
                         "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"), {"id": row.id})  # fmt: skip
    return Principal("key", int(row.id), str(row.name), str(row.role), ((str(row.scope_level), str(row.scope_code or "")),))


# ---------------------------------------------------------------------------------------------
# the per-process cache of callers
# ---------------------------------------------------------------------------------------------


class PrincipalCache:
    """Callers of recently seen credentials, for at most `ttl` seconds (and never past a token's
    expiry), so that a hot endpoint does not read staff and scopes on every request.

    The API clears it when PostgreSQL notifies a change to an account, its scopes or an API key
    (migration 0011, heard by the listener of `gridmap.services.locate`), so a disable, a new
    role or a revoked key take effect within milliseconds; `ttl` bounds the delay should a
    notification be lost. Only successes are cached; a failure is checked again every time.
    """

    def __init__(self, ttl: float, max_size: int = 10_000) -> None:
        self.ttl, self.max_size = ttl, max_size
        self._items: dict[str, tuple[Principal, float]] = {}

    def get(self, credential: str) -> Principal | None:
        hit = self._items.get(credential)
        if hit is None:
            return None
        if hit[1] < time.monotonic():
            self._items.pop(credential, None)
            return None
        return hit[0]

    def put(self, credential: str, principal: Principal, expires_at: float | None = None) -> None:
        until = time.monotonic() + self.ttl
        if expires_at is not None:
            until = min(until, time.monotonic() + (expires_at - time.time()))
        if len(self._items) >= self.max_size:
            self._items.clear()  # rare: more distinct callers than the cache holds within a few seconds
        self._items[credential] = (principal, until)

    def clear(self) -> None:
        self._items.clear()


def resolve(engine: Engine, *, token: str | None = None, api_key: str | None = None,
            cache: PrincipalCache | None = None) -> Principal:  # fmt: skip
    """The caller of a bearer token or an API key, through `cache` when given; Unauthorized otherwise."""
    credential = token if token is not None else api_key
    if credential is None:
        raise Unauthorized(AUTH_REQUIRED)
    if cache is not None and (hit := cache.get(credential)) is not None:
        return hit
    expires_at = None
    with Session(engine) as session, session.begin():
        if token is not None:
            staff_id, version, expires_at = _claims(token)
            principal = _user(session, staff_id, version)
        else:
            principal = from_api_key(session, credential)
    if cache is not None:
        cache.put(credential, principal, expires_at)
    return principal


AUTH_REQUIRED = ("Authentication required: send Authorization: Bearer <token> from POST /v1/auth/token, "
                 "or an X-API-Key")  # fmt: skip


class SignInThrottle:
    """Failed sign-ins per client address within a sliding window, per process: more than
    `limit` in `window` seconds → refused (429) until the oldest ages out. This slows guessing
    across many accounts from one address; the per-account lockout (migration 0010) slows
    guessing one account from many addresses. Successes are not counted."""

    def __init__(self, limit: int = 30, window: float = 300.0, max_addresses: int = 100_000) -> None:
        self.limit, self.window, self.max_addresses = limit, window, max_addresses
        self._failures: dict[str, list[float]] = {}

    def check(self, address: str) -> None:
        from gridmap.errors import TooManyRequests

        recent = self._recent(address)
        if len(recent) >= self.limit:
            wait = max(1, int(recent[0] + self.window - time.monotonic()) + 1)
            raise TooManyRequests(f"Too many failed sign-ins from this address: try again in {wait} s", retry_after=wait)

    def failed(self, address: str) -> None:
        if len(self._failures) >= self.max_addresses:
            self._failures.clear()  # under a flood from many addresses, start over rather than grow
        self._recent(address).append(time.monotonic())

    def _recent(self, address: str) -> list[float]:
        horizon = time.monotonic() - self.window
        kept = [t for t in self._failures.get(address, []) if t > horizon]
        self._failures[address] = kept
        return kept
