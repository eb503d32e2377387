"""The persistent truth cache: exact values computed once are never computed again.

One file per (domain, label) holds sorted input keys (the float64 bit patterns of the inputs)
and their truth rows (see ``table.FORMATS``). The format is data only, never pickle:

    line 1   b"bce-audit truth cache\\n"
    line 2   a JSON header: format, oracle version, domain, label, points, sha256 of the payload
    payload  points int64 keys, then points x 8 float64 values, little-endian

Crossings (``oracle.crossings``: the inputs where the truth crosses a threshold of a dtype, which
every sampled grid holds) are derived from the truth alone, so they are kept here too, one file
per (dtype, domain, labels): ``crossings-<16 hex of the key>.values``, the same layout with the
magic b"bce-audit crossings\\n", a header of format, oracle version, key, points and sha256, and
the inputs' float64 bit patterns as the payload.

A family member other than plain BCE (``bce_audit.reference``) has files of its own: the name
carries a digest of the reference's key (``logits-r<16 hex>-y<label bits>.truth``) and the
header a ``reference`` field with the key itself, checked on reading. Plain BCE's files, names
and headers are those of every earlier version, so its cached truth stays valid.

Files live under a directory named after ``ORACLE_VERSION``, so a change to the oracle's
algorithm starts a fresh cache. A file is written to a temporary name and renamed over the old
one (atomic), after merging what is on disk at that moment, so two runs that share a cache
never see a half-written file and at worst recompute each other's points. A file that fails
any check (magic, header, versions, length, checksum) is reported in one line on stderr and
recomputed, never trusted.

The cache directory is bce-audit's own (``_io.PrivateDir``): no symbolic link in it is ever
followed, for reading or writing. A link where a cache file or the version directory should be
is reported and never used; a write replaces the link itself, never the file it points to.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bce_audit.errors import CorruptCacheFile, LinkRefused
from bce_audit.files import PrivateDir
from bce_audit.reference import PLAIN_BCE, Reference
from bce_audit.vocabulary import Domain

# Bump when anything changes what the oracle returns or how rows are laid out: the cache of an
# older oracle is then ignored (it sits in another directory) instead of being trusted.
ORACLE_VERSION = 3  # 3: the BCE family's log of exact values in [1/4, 1/2) next to 1/4 (oracle.family._mp_log)
FILE_FORMAT = 1
_MAGIC = b"bce-audit truth cache\n"
_COLUMNS = 8


def default_cache_dir() -> Path:
    """The user's cache directory for bce-audit (XDG on Linux, the platform's elsewhere)."""
    env = os.environ.get("BCE_AUDIT_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "bce-audit"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "bce-audit" / "Cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bce-audit"


_CROSSINGS_MAGIC = b"bce-audit crossings\n"


def _framed(magic: bytes, place: dict[str, object], points: int, payload: bytes) -> bytes:
    """A cache file: the magic line, a JSON header (format, oracle version, the file's place,
    points, sha256 of the payload), the payload. A place field that is None is left out."""
    header: dict[str, object] = {"format": FILE_FORMAT, "oracle": ORACLE_VERSION, "points": points}
    header |= {k: v for k, v in place.items() if v is not None}
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    return magic + json.dumps(header, sort_keys=True).encode() + b"\n" + payload


def _unframed(data: bytes, magic: bytes, what: str, place: dict[str, object], point_bytes: int) -> tuple[int, bytes]:
    """(points, payload) of a file ``_framed`` wrote, once every check passed: the magic, a
    readable header of this format, oracle version and place (a None field: absent), the
    payload's length and checksum. CorruptCacheFile otherwise."""
    if not data.startswith(magic):
        raise CorruptCacheFile(f"not a bce-audit {what} file")
    end = data.find(b"\n", len(magic))
    if end < 0:
        raise CorruptCacheFile("truncated header")
    wanted = {"format": FILE_FORMAT, "oracle": ORACLE_VERSION, **place}
    try:
        header = json.loads(data[len(magic) : end])
        n = int(header["points"])
        found = tuple(header.get(k) for k in wanted)
        digest = header["sha256"]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        raise CorruptCacheFile("unreadable header") from None
    if found != tuple(wanted.values()):
        raise CorruptCacheFile(f"header {found} does not match this file's place")
    payload = data[end + 1 :]
    if n < 0 or len(payload) != n * point_bytes:
        raise CorruptCacheFile(f"{len(payload)} payload bytes for {n} points (truncated?)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CorruptCacheFile("checksum mismatch")
    return n, payload


def _truth_place(domain: Domain, label: float, reference: Reference) -> dict[str, object]:
    return {
        "domain": str(domain),
        "label": float(label).hex(),
        "reference": None if reference.is_plain else reference.key,
    }


def _encode(
    domain: Domain, label: float, keys: np.ndarray, rows: np.ndarray, reference: Reference = PLAIN_BCE
) -> bytes:
    payload = keys.astype("<i8").tobytes() + rows.astype("<f8").tobytes()
    return _framed(_MAGIC, _truth_place(domain, label, reference), len(keys), payload)


def _decode(
    data: bytes, domain: Domain, label: float, reference: Reference = PLAIN_BCE
) -> tuple[np.ndarray, np.ndarray]:
    place = _truth_place(domain, label, reference)
    n, payload = _unframed(data, _MAGIC, "truth cache", place, 8 * (1 + _COLUMNS))
    keys = np.frombuffer(payload, dtype="<i8", count=n).astype(np.int64)
    rows = np.frombuffer(payload, dtype="<f8", offset=8 * n).astype(np.float64).reshape(n, _COLUMNS)
    if n > 1 and not (keys[1:] > keys[:-1]).all():  # not np.diff: it wraps around at -0.0
        raise CorruptCacheFile("keys out of order")
    return keys, rows


def _encode_values(key: str, values: np.ndarray) -> bytes:
    return _framed(_CROSSINGS_MAGIC, {"key": key}, len(values), np.ascontiguousarray(values, dtype="<f8").tobytes())


def _decode_values(data: bytes, key: str) -> np.ndarray:
    _, payload = _unframed(data, _CROSSINGS_MAGIC, "crossings", {"key": key}, 8)
    return np.frombuffer(payload, dtype="<f8").astype(np.float64)


class TruthCache:
    """Truth rows on disk under ``root``, by (domain, label).

    warn(message) is called with a one-line message for a corrupt file or a cache that cannot
    be written; the run goes on without it.
    """

    def __init__(self, root: Path, warn: Callable[[str], None] | None = None):
        self.root = Path(root)
        self._private = PrivateDir(self.root, f"oracle-v{ORACLE_VERSION}")
        self.dir = self._private.path
        self._warn = warn or (lambda message: None)
        self._write_failed = False
        self._refused: set[str] = set()  # the links already reported, by message
        # what this process read, by file name, until it writes that file: a sweep reads each
        # file for its grid and again for the refinement of its failure maps (the arrays are
        # read-only, so no reader can change another's copy)
        self._read_back: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def filename(domain: Domain, label: float, reference: Reference = PLAIN_BCE) -> str:
        bits = int(np.float64(label).view(np.int64))
        if reference.is_plain:
            return f"{domain}-y{bits:016x}.truth"
        tag = hashlib.sha256(reference.key.encode()).hexdigest()[:16]
        return f"{domain}-r{tag}-y{bits:016x}.truth"

    def path(self, domain: Domain, label: float, reference: Reference = PLAIN_BCE) -> Path:
        return self.dir / self.filename(domain, label, reference)

    def _read(self, domain: Domain, label: float, reference: Reference = PLAIN_BCE) -> bytes | None:
        return self._read_file(self.filename(domain, label, reference))

    def _read_file(self, name: str) -> bytes | None:
        """The file's bytes; None when absent. A link (or any non-regular file) is reported once
        and treated as absent: it is not the tool's, and is never read through."""
        try:
            return self._private.read(name)
        except LinkRefused as exc:
            # once per link: the cache directory itself a link is one finding, however many files
            # the run would read there
            if str(exc.strerror) not in self._refused:
                self._refused.add(str(exc.strerror))
                self._warn(f"truth cache: {exc.strerror}; not used (bce-audit never follows a link in its cache)")
            return None

    def load(
        self, domain: Domain, label: float, reference: Reference = PLAIN_BCE
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted keys, rows) on disk for this domain, label and reference, or None. The arrays
        are read-only."""
        name = self.filename(domain, label, reference)
        if name in self._read_back:
            return self._read_back[name]
        path = self.path(domain, label, reference)
        try:
            data = self._read(domain, label, reference)
        except OSError as exc:
            self._warn(f"cannot read cache file {path} ({exc.strerror or exc}); recomputing")
            return None
        if data is None:
            return None
        try:
            keys, rows = _decode(data, domain, label, reference)
        except CorruptCacheFile as exc:
            self._warn(f"ignoring corrupt cache file {path} ({exc}); recomputing")
            return None
        keys.setflags(write=False)
        rows.setflags(write=False)
        self._read_back[name] = (keys, rows)
        return keys, rows

    def store(
        self, domain: Domain, label: float, keys: np.ndarray, rows: np.ndarray, reference: Reference = PLAIN_BCE
    ) -> None:
        """Add rows to the file (merged with what is there now), atomically."""
        if self._write_failed or len(keys) == 0:
            return
        self._read_back.pop(self.filename(domain, label, reference), None)
        on_disk = None
        try:
            data = self._read(domain, label, reference)
            on_disk = None if data is None else _decode(data, domain, label, reference)
        except (OSError, CorruptCacheFile):
            pass  # absent, unreadable or corrupt: replaced by what we know
        if on_disk is not None:
            keys = np.concatenate([on_disk[0], keys])
            rows = np.concatenate([on_disk[1], rows])
        keys, first = np.unique(keys, return_index=True)
        rows = rows[first]
        self._write_file(self.filename(domain, label, reference), _encode(domain, label, keys, rows, reference))

    def _write_file(self, name: str, data: bytes) -> None:
        """Write a file here atomically; the first failure is reported once and ends writing."""
        try:
            self._private.write(name, data)
        except OSError as exc:
            self._write_failed = True
            if isinstance(exc, LinkRefused) and str(exc.strerror) in self._refused:
                return  # that link was reported when it was read
            self._warn(f"cannot write the truth cache in {self.dir} ({exc.strerror or exc}); going on without it")

    @staticmethod
    def crossings_filename(key: str) -> str:
        return f"crossings-{hashlib.sha256(key.encode()).hexdigest()[:16]}.values"

    def load_crossings(self, key: str) -> np.ndarray | None:
        """The crossing inputs stored under ``key`` (see ``oracle.crossings.crossing_inputs``), or
        None; a link, an unreadable or a corrupt file is reported in one line and recomputed."""
        name = self.crossings_filename(key)
        path = self.dir / name
        try:
            data = self._read_file(name)
        except OSError as exc:
            self._warn(f"cannot read cache file {path} ({exc.strerror or exc}); recomputing")
            return None
        if data is None:
            return None
        try:
            return _decode_values(data, key)
        except CorruptCacheFile as exc:
            self._warn(f"ignoring corrupt cache file {path} ({exc}); recomputing")
            return None

    def store_crossings(self, key: str, values: np.ndarray) -> None:
        """Keep the crossing inputs of ``key`` (atomically: written to a temporary name, renamed)."""
        if not self._write_failed:
            self._write_file(self.crossings_filename(key), _encode_values(key, values))
