"""Reading an uploaded CSV file: its encoding, its delimiter, its header and rows. Pure."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass

from okyaku.errors import ValidationFailed, field_error

DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class ParsedCsv:
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (row number, cells); the header is row 1
    delimiter: str


def decode_csv(data: bytes) -> str:
    """UTF-8 with or without a BOM (and UTF-16 with a BOM, as spreadsheets export it)."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationFailed(
            "the file is not valid UTF-8 text",
            details=[
                field_error(
                    "file",
                    f"undecodable byte 0x{data[error.start]:02x} at offset {error.start}; save it as UTF-8",
                    "encoding",
                )
            ],
        ) from error


def detect_delimiter(text: str) -> str:
    """The delimiter under which the first rows agree best with the header's field count."""
    sample = text[:65536]
    best: tuple[float, int, str] = (-1.0, 0, ",")
    for delimiter in DELIMITERS:
        counts: list[int] = []
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
        try:
            for row in reader:
                if row:
                    counts.append(len(row))
                if len(counts) > 50:
                    break
        except csv.Error:
            pass  # a record cut off by the sample's end
        if len(sample) < len(text) and len(counts) > 1:
            counts.pop()  # the last sampled row may be truncated
        if not counts:
            continue
        header = counts[0]
        body = counts[1:]
        agreement = sum(1 for c in body if c == header) / len(body) if body else 1.0
        score = (agreement if header > 1 else 0.0, header, delimiter)
        if score[:2] > best[:2]:
            best = score
    return best[2]


def parse_csv(data: bytes) -> ParsedCsv:
    text = decode_csv(data)
    delimiter = detect_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    headers: list[str] | None = None
    try:
        for number, cells in enumerate(reader, start=1):
            if headers is None:
                headers = [h.strip() for h in cells]
                continue
            if any(c.strip() for c in cells):
                rows.append((number, cells))
    except csv.Error as error:
        raise ValidationFailed(
            "the file is not valid CSV",
            details=[field_error("file", f"line {reader.line_num}: {error}", "csv")],
        ) from error
    if not headers or not any(headers):
        raise ValidationFailed(
            "the file has no header row", details=[field_error("file", "the first row must name the columns")]
        )
    seen: set[str] = set()
    duplicates = []
    for header in headers:
        if header and header in seen:
            duplicates.append(header)
        seen.add(header)
    if duplicates:
        raise ValidationFailed(
            "column names must be unique",
            details=[field_error("file", f"column {h!r} appears more than once", "duplicate") for h in duplicates],
        )
    return ParsedCsv(headers=headers, rows=rows, delimiter=delimiter)
