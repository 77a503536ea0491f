"""One deterministic .zip of per-scene files (same bytes for the same files: fixed dates, sorted)."""
from __future__ import annotations

import io
import zipfile

from graphflow import FileBlob, Keyed

FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def zip_blobs(blobs: Keyed[FileBlob], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(blobs):
            blob = blobs[name]
            info = zipfile.ZipInfo(f"{folder}{name}{blob.suffix}", date_time=FIXED_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, blob.data)
    return buffer.getvalue()
