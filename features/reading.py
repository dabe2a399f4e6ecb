"""Reading one export file as its tool wrote it: CSV with any common delimiter and encoding, Parquet, Excel.

CSV: the encoding is UTF-8 (with or without a byte-order mark), else Windows-1252, else Latin-1; the
delimiter is the one of ``, ; TAB |`` that splits the first lines into the same number of fields (or
given). Cells are kept as written: only an empty cell is missing here; the mapping's ``missing_values``
decide the rest. Every failure is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from leadscore.features.errors import DataError

DELIMITERS = (",", ";", "\t", "|")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUFFIXES = (".parquet", *CSV_SUFFIXES, *EXCEL_SUFFIXES)


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a CSV file's bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def sniff_delimiter(text: str) -> str:
    """The delimiter that gives the first lines the same number (> 1) of fields; the most fields wins."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(widths) == 1:
            fields = widths.pop()
            if fields > best_fields:
                best, best_fields = delimiter, fields
    if best_fields == 1:  # no delimiter gives consistent rows (e.g. ragged quoting): the most common in the header
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        top = max(counts, key=lambda d: counts[d])
        best = top if counts[top] else ","
    return best


def read_csv_text(text: str, path: Path, delimiter: str | None = None) -> pd.DataFrame:
    sep = delimiter or sniff_delimiter(text)
    return pd.read_csv(io.StringIO(text), sep=sep, low_memory=False, keep_default_na=False, na_values=[""], dtype=None)


def read_file(path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """One table from ``path``; a clear error for a missing, unreadable, unsupported or empty file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a {', '.join(SUFFIXES)} file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in CSV_SUFFIXES:
            data = path.read_bytes()
            if not data.strip():
                raise DataError(f"{path}: file is empty")
            text = data.decode(encoding) if encoding else decode(data)[0]
            frame = read_csv_text(text, path, "\t" if suffix == ".tsv" and delimiter is None else delimiter)
        elif suffix in EXCEL_SUFFIXES:
            frame = _read_excel(path)
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (OSError, ValueError, UnicodeDecodeError, LookupError, csv.Error) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read: {_one_line(exc)}") from None
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed: ")])
    frame.columns = [str(c).strip() for c in frame.columns]
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DataError(f"{path}: column name {dup[0]!r} appears more than once in the header")
    if frame.empty:
        raise DataError(f"{path}: file has no rows")
    return frame


def _read_excel(path: Path) -> pd.DataFrame:
    try:
        import openpyxl  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency of leadscore
        raise DataError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl)") from None
    return pd.read_excel(path, engine="openpyxl", na_values=[""], keep_default_na=False)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def find_in(folder: Path, stem: str) -> Path:
    """``folder/stem`` as given, or with one of the readable suffixes."""
    for candidate in (folder / stem, *(folder / f"{stem}{suffix}" for suffix in SUFFIXES)):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no file {stem!r} (looked for {', '.join(stem + s for s in SUFFIXES)})")
