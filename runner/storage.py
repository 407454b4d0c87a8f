"""Object storage for job inputs and outputs: a local folder, or any S3-compatible bucket.

Why both: a laptop or a single box keeps files in a folder (the embedded default); a fleet
keeps them in a bucket every API replica and worker reaches (AWS S3, MinIO, R2, SeaweedFS),
through boto3 with ``endpoint_url`` and the standard AWS credential chain (environment,
config files, instance roles), so no secret is ever passed on a command line.

Keys are deterministic per job (``job_key``): a retried or redelivered attempt writes the
same key again instead of leaving a second copy behind.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlparse

#: Files up to this size are written with one PUT and read with one GET (boto3's multipart threshold is 8 MiB).
SINGLE_PUT_BYTES = 8 * 1024 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
#: Reads of one object before it is given up (a body that broke off mid-way is read again).
GET_TRIES = 3


class StorageError(RuntimeError):
    """The store cannot be used as asked: one line naming the store and what to check."""


def job_key(job_id: str, kind: str, name: str) -> str:
    """``jobs/<job id>/<kind>/<file name>``: one place per job, the same on every retry."""
    for part, label in ((job_id, "job id"), (kind, "kind"), (name, "file name")):
        if not part or "/" in part or part in {".", ".."}:
            raise StorageError(f"storage key: {label} {part!r} must be a plain name without '/'")
    return f"jobs/{job_id}/{kind}/{name}"


class ObjectStore(Protocol):
    """What the API and the workers need of a store."""

    description: str

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def get_file(self, key: str, dest: Path) -> Path: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None: ...

    def url(self, key: str, expires_s: int = 3600) -> str: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str = "") -> Iterator[tuple[str, float]]: ...

    def ping(self) -> None: ...


def gc(store: ObjectStore, older_than_s: float, prefix: str = "jobs/", now: float | None = None) -> int:
    """Delete objects under ``prefix`` last written more than ``older_than_s`` ago (``sonic-runner gc``)."""
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    for key, modified in list(store.keys(prefix)):
        if modified < cutoff:
            store.delete(key)
            removed += 1
    return removed


class LocalStore:
    """A folder: keys are relative paths under it. Writes are atomic (temp file + rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.description = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage folder {self.root}: cannot create it ({exc.strerror})") from None

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise StorageError(f"storage key {key!r} must be a relative path inside the store")
        return self.root.joinpath(*parts)

    def _write(self, key: str, writer) -> None:
        dest = self._path(key)
        tmp = dest.with_name(f".{dest.name}.partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            writer(tmp)
            tmp.replace(dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"storage folder {self.root}: cannot write {key} ({exc.strerror})") from None

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._write(key, lambda tmp: tmp.write_bytes(data))

    def get_file(self, key: str, dest: Path) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"storage folder {self.root}: no object {key}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        """Bytes of the object, or None when there is none (checked before a download)."""
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def url(self, key: str, expires_s: int = 3600) -> str:
        return self._path(key).as_uri()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key, path.stat().st_mtime

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"storage folder {self.root} is gone")


class S3Store:
    """A bucket on any S3-compatible server, through boto3."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        client=None,
        region: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.description = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        # A session of its own: boto3's default session caches the first credentials it found.
        self._s3 = client or boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1", config=config
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            why = "no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile"
        elif isinstance(exc, EndpointConnectionError):
            why = "unreachable: check --s3-endpoint and that the server is up"
        elif isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "error")
            why = {
                "NoSuchBucket": "no such bucket: create it first",
                "SignatureDoesNotMatch": "credentials refused (secret key does not match)",
                "InvalidAccessKeyId": "credentials refused (unknown access key)",
                "AccessDenied": "access denied for these credentials",
                "NoSuchKey": "no such object",
                "404": "no such object",
            }.get(code, code)
        else:
            why = f"{type(exc).__name__}: {exc}"
        return StorageError(f"{self.description}: cannot {action} {key} ({why})")

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        """One PUT for a file under the multipart threshold (an API upload, a short clip): boto3's
        ``upload_file`` starts a transfer manager and its threads per call, which cost more CPU
        than the upload itself on a busy API replica. Larger files go multipart, in parallel."""
        extra = {"ContentType": content_type} if content_type else None
        try:
            if path.stat().st_size <= SINGLE_PUT_BYTES:
                with path.open("rb") as body:
                    self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **(extra or {}))
            else:
                self._s3.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra)
        except Exception as exc:  # noqa: BLE001 - mapped to one line
            raise self._fail("write", key, getattr(exc, "last_exception", None) or exc) from None

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except Exception as exc:  # noqa: BLE001
            raise self._fail("write", key, exc) from None

    def get_file(self, key: str, dest: Path) -> Path:
        """One streamed GET for an object under the multipart threshold (a worker's portrait and
        speech clip): ``download_file`` starts a transfer manager and its threads per call, 5.5 ms
        of CPU for a 60 kB object against 2.5 ms this way. Larger objects go through it, in parallel
        ranges. The object lands under a temporary name first: a failed read leaves no truncated
        ``dest`` (botocore raises when a body ends short of its Content-Length)."""
        from botocore.exceptions import ClientError

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        attempt = 1
        while True:
            try:
                self._get_to(key, tmp)
                tmp.replace(dest)
                return dest
            except Exception as exc:  # noqa: BLE001
                tmp.unlink(missing_ok=True)
                # The request itself is retried by botocore; a body that broke off is read again
                # here (download_file did). An answer (no such object, access denied) is final.
                if isinstance(exc, ClientError) or attempt == GET_TRIES:
                    raise self._fail("read", key, exc) from None
                time.sleep(0.2 * attempt)
                attempt += 1

    def _get_to(self, key: str, path: Path) -> None:
        got = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
        body = got["Body"]
        if int(got.get("ContentLength") or 0) > SINGLE_PUT_BYTES:
            body.close()
            self._s3.download_file(self.bucket, self._key(key), str(path))
            return
        with body, path.open("wb") as out:
            shutil.copyfileobj(body, out, COPY_CHUNK_BYTES)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        """Bytes of the object (a HEAD request), or None when there is none."""
        from botocore.exceptions import ClientError

        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return int(head.get("ContentLength", 0))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise self._fail("check", key, exc) from None
        except Exception as exc:  # noqa: BLE001
            raise self._fail("check", key, exc) from None

    def url(self, key: str, expires_s: int = 3600) -> str:
        """A presigned GET URL: the client downloads straight from the bucket, no credentials."""
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=int(expires_s)
        )

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001
            raise self._fail("delete", key, exc) from None

    def keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :], obj["LastModified"].timestamp()
        except Exception as exc:  # noqa: BLE001
            raise self._fail("list", prefix or "/", exc) from None

    def ping(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket", "NotFound"}:
                raise StorageError(f"{self.description}: no such bucket: create it first") from None
            raise self._fail("reach", "the bucket", exc) from None
        except Exception as exc:  # noqa: BLE001
            raise self._fail("reach", "the bucket", exc) from None


def open_store(
    spec: str | None, *, s3_endpoint: str | None = None, default: Path | str = "sonic-data"
) -> ObjectStore:
    """``s3://bucket[/prefix]`` -> S3Store; a path (or nothing: ``default``) -> LocalStore."""
    if spec and spec.startswith("s3://"):
        parsed = urlparse(spec)
        if not parsed.netloc:
            raise StorageError(f"--bucket {spec!r}: name the bucket, e.g. s3://renders or s3://renders/sonic")
        return S3Store(parsed.netloc, prefix=parsed.path, endpoint_url=s3_endpoint)
    if spec and "://" in spec:
        raise StorageError(f"--bucket {spec!r}: use s3://BUCKET[/PREFIX] or a local folder")
    return LocalStore(spec or default)
