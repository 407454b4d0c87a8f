"""API keys and idempotency keys of the HTTP API, in the job store's database.

A key is shown once, at creation (``sk_<key id>_<secret>``); the database keeps only its
SHA-256, so a copy of the database lets nobody submit jobs. Limits live on the key row, so
every API replica enforces the same ones.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update

from .job_store import JobStore
from .schema import api_keys as keys_t
from .schema import idempotency as idem_t


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    created_at: float
    revoked_at: float | None
    max_queued: int
    per_minute: int
    objects_prefix: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_name(self, object_key: str) -> bool:
        """Whether a JSON submission with this key may name ``object_key`` (no prefix: any object)."""
        return self.objects_prefix is None or object_key.startswith(self.objects_prefix)


def check_objects_prefix(prefix: str) -> str:
    """A folder of the object store, as ``uploads/acme/`` (a trailing "/" is added)."""
    parts = prefix.strip("/").split("/")
    if not prefix.strip("/") or prefix.startswith("/") or ".." in parts or "" in parts or parts[0] == "jobs":
        raise ValueError(
            f"--objects-prefix {prefix!r}: give a folder of the bucket such as uploads/acme/ "
            "(relative, no '..', not jobs/)"
        )
    return "/".join(parts) + "/"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Create, look up and revoke keys; remember Idempotency-Keys."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._engine = store.engine

    def create(
        self, name: str, *, max_queued: int = 100, per_minute: int = 60, objects_prefix: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once; only its hash is stored).

        ``objects_prefix`` (e.g. ``uploads/acme/``) confines the objects its JSON submissions may
        name: a service that gives each of its clients a key and a folder of the bucket keeps one
        client from naming another's uploads. A limit of 0 is no limit (a trusted service of your own).
        """
        for flag, value in (("--max-queued", max_queued), ("--per-minute", per_minute)):
            if int(value) < 0:
                raise ValueError(f"{flag} {value}: give a number of jobs, or 0 for no limit")
        if objects_prefix is not None:
            objects_prefix = check_objects_prefix(objects_prefix)
        key_id = secrets.token_hex(6)
        secret = f"sk_{key_id}_{secrets.token_urlsafe(24)}"
        row = {
            "key_id": key_id,
            "name": name,
            "secret_hash": _hash(secret),
            "created_at": time.time(),
            "revoked_at": None,
            "max_queued": int(max_queued),
            "per_minute": int(per_minute),
            "objects_prefix": objects_prefix,
        }
        with self._engine.begin() as conn:
            conn.execute(keys_t.insert().values(**row))
        row.pop("secret_hash")
        return ApiKey(**row), secret

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None (unknown or revoked)."""
        stmt = select(keys_t).where(keys_t.c.secret_hash == _hash(secret), keys_t.c.revoked_at.is_(None))
        with self._store.reading() as conn:
            row = conn.execute(stmt).first()
        return self._key(row) if row else None

    def list(self) -> list[ApiKey]:
        with self._store.reading() as conn:
            return [self._key(r) for r in conn.execute(select(keys_t).order_by(keys_t.c.created_at))]

    def revoke(self, key_id: str) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                update(keys_t)
                .where(keys_t.c.key_id == key_id, keys_t.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return result.rowcount == 1

    @staticmethod
    def _key(row) -> ApiKey:
        data = dict(row._mapping)
        data.pop("secret_hash", None)
        return ApiKey(**data)

    # ------------------------------------------------------------------ idempotency
    def claim_idempotency(self, owner: str, key: str, job_id: str) -> str:
        """Bind ``key`` to ``job_id`` unless it is bound already; returns the job id it is bound to.

        The insert is the arbiter: of many concurrent requests with one key (on any replica)
        exactly one insert wins, and every other request gets the winner's job id.
        """
        stmt = (
            self._store.dialect.insert(idem_t)
            .values(owner=owner, key=key, job_id=job_id, created_at=time.time())
            .on_conflict_do_nothing(index_elements=["owner", "key"])
            .returning(idem_t.c.job_id)
        )
        with self._engine.begin() as conn:
            won = conn.execute(stmt).scalar_one_or_none()  # the usual case: no second statement
            return won if won is not None else self._bound(conn, owner, key)

    def binding(self, owner: str, key: str) -> tuple[str, float] | None:
        """(job id, when it was bound) of ``key`` for ``owner``, if it is bound."""
        with self._store.reading() as conn:
            return self._binding(conn, owner, key)

    @staticmethod
    def _binding(conn, owner: str, key: str) -> tuple[str, float] | None:
        row = conn.execute(
            select(idem_t.c.job_id, idem_t.c.created_at).where(idem_t.c.owner == owner, idem_t.c.key == key)
        ).first()
        return (row[0], float(row[1])) if row else None

    @staticmethod
    def _bound(conn, owner: str, key: str) -> str | None:
        found = ApiKeys._binding(conn, owner, key)
        return found[0] if found else None

    @staticmethod
    def _move(conn, owner: str, key: str, bound_to: str, job_id: str) -> bool:
        """Bind ``key`` to ``job_id``, as of now, if it is still bound to ``bound_to``."""
        moved = conn.execute(
            idem_t.update()
            .where(idem_t.c.owner == owner, idem_t.c.key == key, idem_t.c.job_id == bound_to)
            .values(job_id=job_id, created_at=time.time())
        ).rowcount
        return moved == 1

    def rebind_idempotency(self, owner: str, key: str, stale: str, job_id: str) -> str:
        """Move ``key`` from ``stale`` (a job its request never stored) to ``job_id``, unless
        another request moved it first; returns the job id it is bound to now."""
        with self._engine.begin() as conn:
            bound = job_id if self._move(conn, owner, key, stale, job_id) else self._bound(conn, owner, key)
        # (No binding at all: its request failed and let the key go; claim it like a first request.)
        return bound if bound is not None else self.claim_idempotency(owner, key, job_id)

    def touch_idempotency(self, owner: str, key: str, job_id: str) -> bool:
        """Renew the binding of ``key`` to ``job_id`` just before its job is stored; False when a
        retry took the key over meanwhile (this request outlived its time to store the job)."""
        with self._engine.begin() as conn:
            return self._move(conn, owner, key, job_id, job_id)

    def release_idempotency(self, owner: str, key: str, job_id: str) -> None:
        """Forget a binding whose job was never made (its request failed validation later)."""
        with self._engine.begin() as conn:
            conn.execute(
                idem_t.delete().where(idem_t.c.owner == owner, idem_t.c.key == key, idem_t.c.job_id == job_id)
            )
