"""The bucket's listing (S3 ``ListObjects``: ``GET /?prefix=…&marker=…``) and the files'
``.CHECKSUM`` lines, read from bytes. Pure code.

A listing answers at most ``MaxKeys`` (1000) keys; ``IsTruncated`` says more follow, asked for
with ``marker=`` set to ``NextMarker`` (given when a delimiter was) or else the last key.
A ``.CHECKSUM`` holds one ``sha256sum`` line: 64 hex digits, two spaces, the zip's name.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from marketlab.store.archive.layout import ArchiveError

_MAX_LISTING = 16 * 1024 * 1024  # a page of 1000 keys is ~300 kB; anything far larger is not one


@dataclass(frozen=True)
class ListingPage:
    keys: list[str]
    next_marker: str | None  # where the next page starts; None on the last page
    sizes: list[int] = field(default_factory=list)  # each key's bytes (0 where not said)


def parse_listing(body: bytes, where: str = "listing") -> ListingPage:
    """One page of an S3 listing; :class:`ArchiveError` naming ``where`` for anything else."""
    if len(body) > _MAX_LISTING:
        raise ArchiveError(f"{where}: {len(body)} bytes is not a bucket listing")
    if b"<!DOCTYPE" in body[:512].upper() or b"<!ENTITY" in body.upper():
        raise ArchiveError(f"{where}: a document type in a bucket listing is refused")
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError: unknown encoding
        raise ArchiveError(f"{where}: not XML ({exc})") from None
    if _local(root.tag) != "ListBucketResult":
        code = next((e.text for e in root.iter() if _local(e.tag) == "Code"), None)
        raise ArchiveError(
            f"{where}: expected a ListBucketResult, got {_local(root.tag)}"
            + (f" ({code})" if code else "")
        )
    keys: list[str] = []
    sizes: list[int] = []
    truncated = False
    next_marker = None
    for child in root:
        tag = _local(child.tag)
        if tag == "Contents":
            key = next((e.text for e in child if _local(e.tag) == "Key"), None)
            if not key:
                raise ArchiveError(f"{where}: an entry without a key")
            size = next((e.text for e in child if _local(e.tag) == "Size"), None) or "0"
            keys.append(key)
            sizes.append(int(size) if size.isdigit() and len(size) < 19 else 0)
        elif tag == "IsTruncated":
            text = (child.text or "").strip().lower()
            if text not in ("true", "false"):
                raise ArchiveError(f"{where}: IsTruncated is {child.text!r}")
            truncated = text == "true"
        elif tag == "NextMarker":
            next_marker = child.text or None
    if not truncated:
        return ListingPage(keys, None, sizes)
    marker = next_marker or (keys[-1] if keys else None)
    if marker is None:
        raise ArchiveError(f"{where}: truncated, but says nowhere to go on from")
    return ListingPage(keys, marker, sizes)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


_CHECKSUM = re.compile(rb"\s*([0-9a-fA-F]{64})[ \t]+\*?([^\s/]+)\s*")


def parse_checksum(body: bytes, name: str) -> str:
    """The SHA-256 (lowercase hex) a ``.CHECKSUM`` gives for the zip called ``name``."""
    m = _CHECKSUM.fullmatch(body[:4096]) if len(body) <= 4096 else None
    if m is None:
        raise ArchiveError(f"{name}.CHECKSUM: not a 'sha256  name' line: {body[:80]!r}")
    digest, named = m.group(1).decode().lower(), m.group(2).decode(errors="replace")
    if named != name:
        raise ArchiveError(f"{name}.CHECKSUM names another file: {named}")
    return digest


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
