"""Reading the annotation tables of the real datasets: CSV or gzipped CSV, checked row by row.

Every problem becomes a ``DataError`` whose message starts with the file and, for a row, its line number
(1-based, the header is line 1), then says what is wrong: ``/data/train.csv, line 7: column 'x_min' is
'abc', not a number``. Nothing from the ``csv`` or ``gzip`` modules reaches the user as a traceback.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from cxrbench.errors import DataError

# Report texts of some tables are long; the csv module's default limit (128 KiB) is plenty but keep it
# explicit so a corrupted file (one unterminated quote) fails with a clear message, not a MemoryError.
csv.field_size_limit(16 * 1024 * 1024)


def find_table(directory: Path, name: str, what: str) -> Path:
    """``directory/name`` or its gzipped form ``directory/name.gz`` (first that exists).

    Raises:
        DataError: when neither exists; the message names both paths and what the file holds.
    """
    candidates = [directory / name, directory / f"{name}.gz"]
    if name.endswith(".gz"):
        candidates = [directory / name, directory / name[: -len(".gz")]]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"{candidates[0]}: file not found (nor {candidates[1].name}); it should hold {what}")


def hash_file(path: Path) -> str:
    """SHA-256 hex of a file's bytes (as stored: a .gz file is hashed compressed)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return digest.hexdigest()


class Row:
    """One data row: fields by column name, the line number, and typed access with clear errors."""

    __slots__ = ("table", "line", "fields")

    def __init__(self, table: "Table", line: int, fields: list[str]) -> None:
        self.table = table
        self.line = line
        self.fields = fields

    def error(self, problem: str) -> DataError:
        """A DataError for this row: ``FILE, line N: problem``."""
        return DataError(f"{self.table.path}, line {self.line}: {problem}")

    @property
    def where(self) -> str:
        """``FILE, line N``: for messages about things this row refers to (an image, a report)."""
        return f"{self.table.path}, line {self.line}"

    def has(self, column: str) -> bool:
        return column in self.table.index

    def __getitem__(self, column: str) -> str:
        """The field of ``column``, whitespace stripped ("" when the row stops before it)."""
        i = self.table.index[column]
        return self.fields[i].strip() if i < len(self.fields) else ""

    def at(self, position: int) -> str:
        """The field at ``position`` (0-based), stripped; "" when the row is shorter."""
        return self.fields[position].strip() if position < len(self.fields) else ""

    def text(self, column: str) -> str:
        """A field that must not be empty."""
        value = self[column]
        if not value:
            raise self.error(f"column {column!r} is empty")
        return value

    def float(self, column: str, *, optional: bool = False, value: str | None = None) -> float | None:
        """A finite number (``None`` for an empty field when ``optional``)."""
        raw = self[column] if value is None else value.strip()
        if raw == "":
            if optional:
                return None
            raise self.error(f"column {column!r} is empty, but a number is required")
        try:
            number = float(raw)
        except ValueError:
            raise self.error(f"column {column!r} is {raw!r}, not a number") from None
        if not math.isfinite(number):
            raise self.error(f"column {column!r} is {raw!r}, not a finite number")
        return number

    def positive(self, column: str, *, value: str | None = None) -> float:
        """A number > 0."""
        number = self.float(column, value=value)
        assert number is not None
        if number <= 0:
            raise self.error(f"column {column!r} is {number:g}, but it must be positive")
        return number

    def integer(self, column: str) -> int:
        """A non-negative integer written as digits (ids: subject_id, study_id)."""
        raw = self[column]
        if not raw.isdigit():
            raise self.error(f"column {column!r} is {raw!r}, not a non-negative integer")
        return int(raw)

    def label(self, column: str) -> float | None:
        """A CheXpert-style label: 1.0 positive, 0.0 negative, -1.0 uncertain, empty unmentioned (None)."""
        raw = self[column]
        if raw == "":
            return None
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if number not in (1.0, 0.0, -1.0):
            raise self.error(f"column {column!r} is {raw!r}; a label must be 1.0, 0.0, -1.0 or empty")
        return number

    def choice(self, column: str, allowed: Sequence[str]) -> str:
        value = self[column]
        if value not in allowed:
            raise self.error(f"column {column!r} is {value!r}, but it must be one of {list(allowed)}")
        return value


class Table:
    """A CSV file (``.csv`` or ``.csv.gz``) with a checked header; iterate ``rows()`` once or more."""

    def __init__(self, path: Path, required: Sequence[str], what: str = "") -> None:
        self.path = Path(path)
        self.what = what
        if not self.path.is_file():
            hint = f"; it should hold {what}" if what else ""
            raise DataError(f"{self.path}: file not found{hint}")
        header = self._header()
        self.header = [h.strip() for h in header]
        self.index: dict[str, int] = {}
        for i, name in enumerate(self.header):
            if name and name not in self.index:
                self.index[name] = i
        missing = [c for c in required if c not in self.index]
        if missing:
            raise DataError(
                f"{self.path}, line 1: the header lacks column(s) {', '.join(repr(c) for c in missing)} "
                f"(header: {', '.join(repr(h) for h in self.header)})"
            )

    def _open(self) -> io.TextIOBase:
        try:
            if self.path.name.endswith(".gz"):
                return gzip.open(self.path, "rt", encoding="utf-8-sig", newline="")
            return open(self.path, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open file ({exc.strerror or exc})") from None

    def _reader(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of every non-blank record, header included; errors become DataError."""
        line = 0
        try:
            with self._open() as f:
                reader = csv.reader(f)
                for fields in reader:
                    line = reader.line_num
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    yield line, fields
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{self.path}: not a readable gzip file ({exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{self.path}, after line {line}: not UTF-8 text") from None
        except csv.Error as exc:
            raise DataError(f"{self.path}, line {line + 1}: malformed CSV ({exc})") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read file ({exc.strerror or exc})") from None

    def _header(self) -> list[str]:
        for _, fields in self._reader():
            return fields
        raise DataError(f"{self.path}, line 1: the file is empty (a CSV header is expected)")

    def rows(self) -> Iterator[Row]:
        """Data rows in file order (blank lines skipped). A row with fewer fields than named columns in
        the header, or with non-empty fields past the header's end, is an error."""
        needed = max(self.index.values(), default=-1) + 1
        width = len(self.header)
        first = True
        for line, fields in self._reader():
            if first:
                first = False
                continue
            if len(fields) < needed:
                raise DataError(f"{self.path}, line {line}: the row has {len(fields)} fields, "
                                f"the header names {needed}")
            if len(fields) > width and any(f.strip() for f in fields[width:]):
                raise DataError(f"{self.path}, line {line}: the row has {len(fields)} fields, "
                                f"the header only {width}")
            yield Row(self, line, fields)


def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file (a list of image names)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; it should hold {what}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]


__all__ = ["Table", "Row", "find_table", "hash_file", "read_lines"]
