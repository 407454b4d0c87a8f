"""Batch manifests: one row per job (image, audio or text, optional id and priority, any parameters).

CSV (a header row, then one job per row) or JSON lines (one object per line).
Rows are read lazily, so a 10,000-row manifest never sits in memory as a list.
A row that cannot become a job does not stop the batch: it is yielded with
"error" set (one line naming the row and the column) and the batch records it
dead while the other rows go on. Problems with the file itself (missing, no
image/audio column) raise ManifestError, since no row could run.

Each yielded row is a dict:
    {"row": 1-based data row, "line": line in the file, "id": str | None,
     "priority": 0..2 (P0 highest, default P1), "image": absolute path,
     "audio": absolute path, "params": {column: value}, "error": str | None}
A text job (a ``text`` column instead of ``audio``, for the sonic_*_text_* templates) has
"audio": None and "text": the words to speak; ``voice`` and any other TTS input are
parameter columns like the rest.
Parameter values keep what the file holds (strings from CSV; JSON types from
JSON lines); workflow.apply_params converts them to the template's types.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .jobs import parse_priority

RESERVED = {"image", "audio", "text", "id", "priority"}
_ALIASES = {"job_id": "id"}  # other spellings of the reserved columns
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


class ManifestError(ValueError):
    """The manifest file as a whole cannot be used (one line: the file and what to do)."""


def read_manifest(path: str | Path) -> Iterator[dict]:
    """Rows of a CSV or JSON-lines manifest, paths resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path}: file not found; give a CSV or JSON-lines file")
    files = _FileResolver(path.parent)
    if _is_json_lines(path):
        return _read_json_lines(path, files)
    return _read_csv(path, files)


class _FileResolver:
    """Row paths -> absolute paths, and whether each file exists, cheaply for 10,000 rows.

    The manifest's folder is resolved once (symlinks included); each row's path is then
    joined and normalised with os.path string operations (no per-row Path.resolve, which
    costs a system call per path component), and the existence check is cached per path,
    since manifests reuse one portrait or one clip across many rows.
    """

    def __init__(self, folder: Path) -> None:
        self.base = str(Path(folder).resolve())
        self._exists: dict[str, bool] = {}

    def absolute(self, value: str) -> str:
        if value.startswith("~"):
            value = os.path.expanduser(value)
        return os.path.normpath(os.path.join(self.base, value))

    def is_file(self, absolute: str) -> bool:
        found = self._exists.get(absolute)
        if found is None:
            found = self._exists[absolute] = os.path.isfile(absolute)
        return found


def _is_json_lines(path: Path) -> bool:
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return True
    if path.suffix.lower() == ".csv":
        return False
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        head = f.read(4096).lstrip()
    return head.startswith("{")


def _read_csv(path: Path, files: _FileResolver) -> Iterator[dict]:
    # The header is checked before the first row is asked for, so a wrong file fails at once.
    f = path.open(newline="", encoding="utf-8-sig")  # utf-8-sig: Excel writes a BOM
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise ManifestError(
            f"manifest {path}: the file is empty; add a header row with image,audio"
        ) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        f.close()
        raise ManifestError(
            f"manifest {path}: cannot read the header ({exc}); save it as UTF-8 CSV"
        ) from None
    columns = [_column_name(h) for h in header]
    missing = [c for c in ("image", "audio") if c not in columns and not (c == "audio" and "text" in columns)]
    if missing:
        f.close()
        raise ManifestError(
            f"manifest {path}: no {' or '.join(repr(m) for m in missing)} column; "
            f"the header has {', '.join(repr(h) for h in header)}"
            + ("; a text job has a 'text' column instead of 'audio'" if "audio" in missing else "")
        )
    return _csv_rows(path, f, reader, columns, files)


def _csv_rows(path: Path, f, reader, columns: list[str], files: _FileResolver) -> Iterator[dict]:
    seen: set[str] = set()
    with f:
        row = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                row += 1
                yield _bad_row(
                    row, reader.line_num, f"manifest {path} row {row} (line {reader.line_num}): {exc}"
                )
                return  # the reader cannot resynchronise after a broken record
            if not any(c.strip() for c in cells):
                continue  # blank line
            row += 1
            where = f"manifest {path} row {row} (line {reader.line_num})"
            if len(cells) > len(columns):
                yield _bad_row(
                    row,
                    reader.line_num,
                    f"{where}: {len(cells)} cells but the header has {len(columns)} columns",
                )
                continue
            values = {
                col: cell.strip() for col, cell in zip(columns, cells, strict=False) if cell.strip() != ""
            }
            yield _make_row(row, reader.line_num, where, values, seen, files)


def _read_json_lines(path: Path, files: _FileResolver) -> Iterator[dict]:
    seen: set[str] = set()
    row = 0
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row += 1
            where = f"manifest {path} row {row} (line {lineno})"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _bad_row(row, lineno, f"{where}: not valid JSON ({exc.msg}); one object per line")
                continue
            if not isinstance(obj, dict):
                yield _bad_row(row, lineno, f"{where}: expected a JSON object with image and audio")
                continue
            values: dict[str, Any] = {}
            nested = obj.pop("params", None)
            if isinstance(nested, dict):
                obj = {**nested, **obj}
            for key, value in obj.items():
                if value is not None and value != "":
                    values[_column_name(key)] = value
            yield _make_row(row, lineno, where, values, seen, files)


def _column_name(name: str) -> str:
    stripped = str(name).strip()
    lowered = stripped.lower()
    lowered = _ALIASES.get(lowered, lowered)
    return lowered if lowered in RESERVED else stripped


def _bad_row(row: int, line: int, error: str) -> dict:
    return {
        "row": row,
        "line": line,
        "id": None,
        "priority": 1,
        "image": None,
        "audio": None,
        "params": {},
        "error": error,
    }


def _make_row(row: int, line: int, where: str, values: dict, seen: set[str], files: _FileResolver) -> dict:
    result = _bad_row(row, line, None)
    result["params"] = {k: v for k, v in values.items() if k not in RESERVED}
    try:
        result["priority"] = parse_priority(values.get("priority"))
    except ValueError:
        result["error"] = f"{where}, column 'priority': {values['priority']!r} is not P0, P1 or P2"
        return result
    job_id = values.get("id")
    if job_id is not None:
        job_id = str(job_id)
        if job_id in seen:
            result["error"] = (
                f"{where}, column 'id': {job_id!r} is used by an earlier row; give each row its own id"
            )
            return result
        seen.add(job_id)
        result["id"] = job_id
    text = values.get("text")
    if text is not None:
        if values.get("audio") is not None:
            result["error"] = (
                f"{where}: both 'audio' and 'text' are set; give one (a clip, or the words to speak)"
            )
            return result
        if not isinstance(text, str) or not text.strip():
            result["error"] = f"{where}, column 'text': {text!r} is not text; give the words to speak"
            return result
        result["text"] = text
    for column, what in (("image", "the portrait"), ("audio", "the speech clip")):
        if column == "audio" and text is not None:
            continue
        value = values.get(column)
        if value is None:
            also = " (or the words to speak in 'text')" if column == "audio" else ""
            result["error"] = f"{where}, column {column!r}: empty; give the path of {what}{also}"
            return result
        if not isinstance(value, str):
            result["error"] = f"{where}, column {column!r}: {value!r} is not a path"
            return result
        file = files.absolute(value)
        if not files.is_file(file):
            result["error"] = (
                f"{where}, column {column!r}: {file} not found; fix the path (relative paths start at the manifest's folder)"
            )
            return result
        result[column] = file
    return result
