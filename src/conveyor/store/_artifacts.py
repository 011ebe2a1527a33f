"""The artifact store: content-addressed blobs on any fsspec filesystem, written atomically, verified on read.

Layout under the store's root URL::

    blobs/sha256/ab/cdef0123...   one file per distinct content, named by its SHA-256
    tmp/put-<owner>-<id>          partial writes on a local filesystem (renamed into blobs/ when complete)
    tmp/scratch-<owner>-<id>/     a writer's scratch folder (Parquet parts about to be stored)

A blob is addressed by its digest ``sha256:<64 hex>``. On a local filesystem a write goes to ``tmp/`` and is
renamed into place (atomic on POSIX); on an object store (S3 and compatible) the bytes are hashed into a
local spool file first and uploaded to their final key in one PUT, which object stores make visible
atomically. Reading hashes the bytes again and raises ``ArtifactCorrupted`` on any difference, so wrong
bytes are never returned.

Temporary files and scratch folders are named after the process that owns them (``<owner>`` is its machine
namespace, PID and start ticks; see ``conveyor._owner``). A process killed mid-write (SIGKILL, power cut) cannot
clean up; :meth:`ArtifactStore.sweep_scratch` (run when a workspace opens) removes what belongs to processes of
this machine that are gone, and leaves everything else: live owners, other machines, names it did not make.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from conveyor._owner import left_by_a_gone_process, this_process
from conveyor.errors import ArtifactCorrupted, ArtifactMissing, InvalidConfig, StoreUnavailable

__all__ = ["ArtifactStore", "Blob", "Swept"]

log = logging.getLogger("conveyor.store")

_CHUNK = 1 << 20
_PREFIX = "sha256:"
_MARKER = "CONVEYOR_ARTIFACT_STORE"


@dataclass(frozen=True)
class Swept:
    """What :meth:`ArtifactStore.sweep_scratch` removed: files and folders, and their bytes."""

    entries: int
    bytes: int


@dataclass(frozen=True)
class Blob:
    """A stored content: its digest (``sha256:<hex>``) and size in bytes."""

    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.removeprefix(_PREFIX)


class ArtifactStore:
    """Content-addressed storage of bytes.

    Args:
        url: a local folder or an fsspec URL (``s3://bucket/prefix``, ``memory://...``).
        options: fsspec storage options (for S3-compatible servers: ``{"endpoint_url": ...}``).
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})
        self._fs: Any = None
        # A local folder is known without fsspec, which then loads only when a blob is read or written.
        self._local_root = _local_folder(url) if not self.options else None
        self._root = ""

    # -- set-up --------------------------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (created on first use)."""
        if self._fs is None:
            self._fs, self._root = _make_filesystem(self.url, self.options)
        return self._fs

    @property
    def root(self) -> str:
        if self._local_root is not None:
            return self._local_root
        _ = self.fs
        return self._root

    @property
    def is_local(self) -> bool:
        if self._local_root is not None:
            return True
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    def open(self) -> ArtifactStore:
        """Create the root if needed and check the store answers.

        Raises:
            StoreUnavailable: the store cannot be reached or written.
        """
        try:
            if self._local_root is not None:
                Path(self._local_root, "blobs").mkdir(parents=True, exist_ok=True)
            else:
                self.fs.makedirs(f"{self.root}/blobs", exist_ok=True)
            if not self.is_local:
                # Object stores have no folders to create: a marker object proves the bucket is there,
                # reachable, and writable with these credentials.
                marker = f"{self.root}/{_MARKER}"
                if not self.fs.exists(marker):
                    self.fs.pipe_file(marker, b"conveyor artifact store\n")
        except InvalidConfig:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"Cannot reach the artifact store at {self.url}: {type(exc).__name__}: {exc}. Check the URL "
                "in CONVEYOR_ARTIFACTS_URL (or conveyor.toml), that the bucket exists, and the credentials; "
                "for an S3-compatible server set its endpoint_url in CONVEYOR_ARTIFACTS_OPTIONS.",
                url=self.url,
            ) from exc
        return self

    # -- writing -------------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        """Store ``data``; returns its blob (a no-op when the content is already stored)."""
        return self.put_stream([data])

    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """Store a local file's content."""
        with Path(path).open("rb") as fh:
            return self.put_stream(iter(lambda: fh.read(_CHUNK), b""))

    def scratch_dir(self) -> Path:
        """A local folder for files about to be stored, named after this process (so it is reclaimed if the
        process dies before removing it); on a local store it is on the same filesystem as the blobs, so
        :meth:`adopt_file` can move a file in without copying it."""
        return Path(tempfile.mkdtemp(dir=self._scratch_root(), prefix=f"scratch-{this_process().tag()}-"))

    def sweep_scratch(self) -> Swept:
        """Remove the scratch folders and partial writes whose owner process is gone. One listing of the
        scratch folder; an entry whose name does not carry an owner (not Conveyor's, or made before owners were
        recorded), or whose owner lives or runs on another machine, is left alone. Never raises on a file
        system error (what cannot be removed now is tried again at the next sweep)."""
        entries = size = 0
        root = self._scratch_root(create=False)
        if not self.is_local and root == Path(tempfile.gettempdir()):
            return Swept(0, 0)  # no private scratch folder: nothing of ours to sweep
        try:
            listing = list(os.scandir(root))
        except OSError:
            return Swept(0, 0)
        for entry in listing:
            if not left_by_a_gone_process(entry.name, _OWNED_PREFIXES):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    freed = _tree_size(entry.path)
                    shutil.rmtree(entry.path)
                else:
                    freed = entry.stat(follow_symlinks=False).st_size
                    Path(entry.path).unlink()
            except OSError:
                continue
            entries += 1
            size += freed
        if entries:
            log.info("removed %d scratch entries (%d bytes) left by processes that are gone", entries, size)
        return Swept(entries, size)

    def _scratch_root(self, *, create: bool = True) -> Path:
        """Where scratch and partial writes go: ``tmp/`` beside the blobs on a local store, else a private
        folder of this user's in the system's temporary folder (the temporary folder itself if that name is
        taken by something that is not this user's own folder: nothing is written into another's folder)."""
        if self.is_local:
            folder = Path(self.root) / "tmp"
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            return folder
        user = os.getuid() if hasattr(os, "getuid") else 0
        shared = Path(tempfile.gettempdir())
        folder = shared / f"conveyor-scratch-{user}"
        if create:
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
        try:
            status = folder.lstat()
        except OSError:
            return shared
        mine = stat.S_ISDIR(status.st_mode) and (not hasattr(os, "getuid") or status.st_uid == user)
        return folder if mine else shared

    def adopt_file(self, path: str | os.PathLike[str]) -> Blob:
        """Store a local file by moving it in (local store, same filesystem) or uploading it; the file is gone
        afterwards either way."""
        source = Path(path)
        with source.open("rb") as fh:
            digest, size = _copy_hashing(iter(lambda: fh.read(_CHUNK), b""), None)
        blob = Blob(digest, size)
        try:
            if not self.is_local:
                final = self._path(digest)
                try:
                    if not (self.fs.exists(final) and self.fs.size(final) == size):
                        self.fs.put_file(str(source), final)
                except Exception as exc:
                    raise StoreUnavailable(
                        f"Could not write artifact {digest} to {self.url}: {type(exc).__name__}: {exc}", url=self.url
                    ) from exc
                return blob
            final_path = Path(self._path(digest))
            if final_path.exists() and final_path.stat().st_size == size:
                return blob
            final_path.parent.mkdir(parents=True, exist_ok=True)
            source.chmod(0o444)
            try:
                source.replace(final_path)
            except OSError:  # on another filesystem: copy, through tmp/ and a rename, as any write
                source.chmod(0o644)
                with source.open("rb") as fh:
                    return self._put_local(iter(lambda: fh.read(_CHUNK), b""))
            return blob
        finally:
            with contextlib.suppress(FileNotFoundError):
                source.unlink()

    def put_stream(self, chunks: Iterable[bytes]) -> Blob:
        """Store the concatenation of ``chunks``, hashing while writing.

        If the iterable raises, nothing is stored and no temporary file is left behind.
        """
        if self.is_local:
            return self._put_local(chunks)
        return self._put_remote(chunks)

    def _put_local(self, chunks: Iterable[bytes]) -> Blob:
        fd, tmp_name = tempfile.mkstemp(dir=self._scratch_root(), prefix=f"put-{this_process().tag()}-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                digest, size = _copy_hashing(chunks, fh)
                fh.flush()
                os.fsync(fh.fileno())
            blob = Blob(digest, size)
            final = Path(self._path(blob.digest))
            if final.exists() and final.stat().st_size == size:
                tmp.unlink()
                return blob
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.chmod(0o444)
            tmp.replace(final)
            return blob
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def _put_remote(self, chunks: Iterable[bytes]) -> Blob:
        with tempfile.NamedTemporaryFile(dir=self._scratch_root(), prefix=f"put-{this_process().tag()}-") as spool:
            digest, size = _copy_hashing(chunks, spool)
            spool.flush()
            blob = Blob(digest, size)
            final = self._path(blob.digest)
            try:
                if self.fs.exists(final) and self.fs.size(final) == size:
                    return blob
                self.fs.put_file(spool.name, final)
            except Exception as exc:
                raise StoreUnavailable(
                    f"Could not write artifact {blob.digest} to {self.url}: {type(exc).__name__}: {exc}",
                    url=self.url,
                ) from exc
        return blob

    # -- reading -------------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, after checking they still hash to ``digest``.

        Raises:
            ArtifactMissing: no blob with that digest is stored.
            ArtifactCorrupted: the stored bytes do not match the digest.
        """
        path = self._path(digest)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError as exc:
            raise self._missing(digest, path) from exc
        actual = _PREFIX + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise self._corrupted(digest, path, actual)
        return bytes(data)

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the blob to a local file ``dest`` (written atomically, verified before it appears)."""
        dest_path = Path(dest)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_path.parent, prefix=f".{dest_path.name}.")
        tmp = Path(tmp_name)
        path = self._path(digest)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self.fs.open(path, "rb") as src:
                        actual, _ = _copy_hashing(iter(lambda: src.read(_CHUNK), b""), out)
                except FileNotFoundError as exc:
                    raise self._missing(digest, path) from exc
            if actual != digest:
                raise self._corrupted(digest, path, actual)
            tmp.replace(dest_path)
            return dest_path
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    @contextlib.contextmanager
    def local_file(self, digest: str) -> Iterator[Path]:
        """A verified local path to the blob: the blob itself on a local store, else a temporary copy."""
        if self.is_local:
            yield self.verified_path(digest)
            return
        tmp_dir = tempfile.mkdtemp(dir=self._scratch_root(), prefix=f"get-{this_process().tag()}-")
        try:
            yield self.get_file(digest, Path(tmp_dir) / _hex(digest))
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def verified_path(self, digest: str) -> Path:
        """The path of a blob on a local store, after checking its SHA-256.

        The hash is computed once per file: a marker under ``verified/`` remembers the file's inode, size and
        modification time when it last matched, and later calls re-hash only if any of those changed (blobs
        are read-only and only ever replaced by a rename, which changes the inode).

        Raises:
            ArtifactMissing / ArtifactCorrupted: as for :meth:`get_bytes`.
        """
        path = Path(self._path(digest))
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise self._missing(digest, str(path)) from exc
        signature = f"{stat.st_ino} {stat.st_size} {stat.st_mtime_ns}"
        marker = Path(self.root) / "verified" / _hex(digest)
        with contextlib.suppress(OSError):
            if marker.read_text() == signature:
                return path
        with path.open("rb") as fh:
            actual, _ = _copy_hashing(iter(lambda: fh.read(_CHUNK), b""), None)
        if actual != digest:
            raise self._corrupted(digest, str(path), actual)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(signature)
        return path

    def path_of(self, digest: str) -> str:
        """The blob's full path (URL for remote stores) for tools that read it directly."""
        path = self._path(digest)
        return path if self.is_local else f"{self.fs.unstrip_protocol(path)}"

    # -- helpers -------------------------------------------------------------------------------------

    def _path(self, digest: str) -> str:
        hex_ = _hex(digest)
        return f"{self.root}/blobs/sha256/{hex_[:2]}/{hex_[2:]}"

    def _missing(self, digest: str, path: str) -> ArtifactMissing:
        return ArtifactMissing(
            f"Artifact {digest} is recorded in the workspace but missing from the store at {path}. "
            "Restore it from a backup, or re-create the entity that owns it.",
            digest=digest,
            path=path,
        )

    def _corrupted(self, digest: str, path: str, actual: str) -> ArtifactCorrupted:
        return ArtifactCorrupted(
            f"Artifact {digest} at {path} is corrupted: its bytes now hash to {actual}. Conveyor will not "
            "use it. Restore the file from a backup, or re-create the entity that owns it.",
            digest=digest,
            path=path,
            actual=actual,
        )


#: the kinds of entries a sweep may remove (named ``<kind>-<owner>-<random>``)
_OWNED_PREFIXES = frozenset({"scratch", "put", "get"})


def _tree_size(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / name).stat(follow_symlinks=False).st_size
    return total


def _hex(digest: str) -> str:
    hex_ = digest.removeprefix(_PREFIX)
    if len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        from conveyor.errors import InvalidReference

        raise InvalidReference(f"{digest!r} is not an artifact digest; expected 'sha256:' and 64 hex digits.")
    return hex_


def _copy_hashing(chunks: Iterable[bytes], out: IO[bytes] | None) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return _PREFIX + hasher.hexdigest(), size


def _local_folder(url: str) -> str | None:
    """The root fsspec would give an absolute local path without a protocol (the default artifact store, inside the
    workspace); None for anything else, which fsspec resolves."""
    if os.sep != "/" or not url.startswith("/") or "::" in url:
        return None
    return url.rstrip("/")


def _make_filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    import fsspec
    from fsspec.core import url_to_fs

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    try:
        fs, root = url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        known = ", ".join(sorted(p for p in fsspec.available_protocols() if len(p) <= 6))
        hint = " Install the extra: pip install 'conveyor-ml[s3]'." if protocol in {"s3", "s3a"} else ""
        raise InvalidConfig(
            f"Cannot use the artifact store URL {url!r} ({exc}).{hint} Known protocols include: {known}.",
            url=url,
        ) from exc
    return fs, str(root).rstrip("/")
