"""Parquet corpora (as the Hub's datasets are stored): one document per row, the text in
the string column ``text_field``.

Rows are read a row group at a time in record batches of the one text column, so memory
holds at most one row group's texts, never the file. Null and blank texts are skipped,
like blank lines of plain text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from transfer.errors import CorpusError

PARQUET_SUFFIX = ".parquet"
PARQUET_MAGIC = b"PAR1"  # the first and the last four bytes of every Parquet file
_BATCH_ROWS = 4096


def looks_like_parquet(path: Path) -> bool:
    """Whether the file starts and ends with Parquet's magic (reads 8 bytes)."""
    with open(path, "rb") as handle:
        head = handle.read(len(PARQUET_MAGIC))
        if head != PARQUET_MAGIC or path.stat().st_size < 2 * len(PARQUET_MAGIC):
            return False
        handle.seek(-len(PARQUET_MAGIC), 2)
        return handle.read() == PARQUET_MAGIC


def _open(path: Path, where: str):  # -> pyarrow.parquet.ParquetFile
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{where}: not a readable Parquet file ({exc})") from exc


def _is_text_type(kind) -> bool:  # kind: pyarrow.DataType
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def check_text_column(parquet_file, text_field: str, where: str) -> None:
    """Refuse a file whose schema has no column ``text_field`` or whose column is not text,
    listing the columns there are (reads only the footer)."""
    schema = parquet_file.schema_arrow
    columns = ", ".join(f"{f.name!r} ({f.type})" for f in schema)
    index = schema.get_field_index(text_field)
    if index < 0:
        raise CorpusError(f"{where}: no column {text_field!r} (columns: {columns or 'none'}); "
                          f"set text_field to the column holding the text")
    kind = schema.field(index).type
    if not _is_text_type(kind):
        raise CorpusError(f"{where}: column {text_field!r} is {kind}, not a string column "
                          f"(columns: {columns}); set text_field to the column holding the text")


def iter_parquet_texts(path: Path, text_field: str, where: str | None = None) -> Iterator[str]:
    """The non-blank texts of column ``text_field``, in row order, a row group at a time."""
    import pyarrow as pa

    where = where or f"corpus file {str(path)!r}"
    parquet_file = _open(path, where)
    check_text_column(parquet_file, text_field, where)
    for group in range(parquet_file.num_row_groups):
        batches = parquet_file.iter_batches(batch_size=_BATCH_ROWS, row_groups=[group], columns=[text_field],
                                            use_threads=False)
        try:
            for batch in batches:
                for text in batch.column(0).to_pylist():
                    if text is not None and text.strip():
                        yield text
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{where}, row group {group}: broken Parquet data ({exc})") from exc


def parquet_head(path: Path, text_field: str, where: str, whole_bytes: int) -> tuple[int, bool]:
    """Check a Parquet file up front from its footer: readable, with a string column
    ``text_field``. A file of at most ``whole_bytes`` is read whole and its non-blank texts
    counted; (count, True) then, else (rows in the footer, False)."""
    parquet_file = _open(path, where)
    check_text_column(parquet_file, text_field, where)
    if path.stat().st_size > whole_bytes:
        return parquet_file.metadata.num_rows, False
    return sum(1 for _ in iter_parquet_texts(path, text_field, where)), True
