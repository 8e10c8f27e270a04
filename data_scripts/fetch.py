"""Download one file safely: mirrors, resume, sha256 verification, atomic rename.

The bytes go to ``<dest>.part``. When a connection drops, the next attempt asks the server for the
rest with an HTTP ``Range`` header and appends; a server that ignores ``Range`` (answers 200)
restarts the file from zero. Only a file whose sha256 matches the registry is renamed to ``dest``
(``os.replace``: a reader never sees half a file), and a ``<dest>.sha256`` marker records the
verified digest so that re-running skips it without hashing hundreds of MB again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

CHUNK = 1 << 20
USER_AGENT = "course-utils-data-scripts/1.0 (+python urllib)"


class DownloadError(RuntimeError):
    """No URL of a file could be fetched (offline, host down, 404, ...)."""


class ChecksumError(RuntimeError):
    """A downloaded file's sha256 is not the one in the registry."""


class UnverifiedError(RuntimeError):
    """The registry has no sha256 for a file and ``allow_unverified`` was not given."""


def sha256_of(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 digest of a file, read in chunks.

    Args:
        path: the file.
        chunk: bytes read at a time.

    Returns:
        the 64-character hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def marker_path(dest: Path) -> Path:
    """Where the verified digest of ``dest`` is recorded: ``<dest>.sha256``."""
    return dest.with_name(dest.name + ".sha256")


def is_verified(dest: Path, sha256: str | None) -> bool:
    """True if ``dest`` exists and its marker records ``sha256`` (or any digest when ``sha256`` is None)."""
    marker = marker_path(dest)
    if not dest.is_file() or not marker.is_file():
        return False
    recorded = marker.read_text().strip()
    return recorded == sha256 if sha256 else len(recorded) == 64


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch_into(url: str, part: Path, *, size: int | None, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its current length). Raises on any failure."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset >= size:
        return  # all bytes are here already; the checksum decides
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part is complete (or wrong)
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start again from zero
            offset = 0
        length = response.headers.get("Content-Length")
        total = size or (offset + int(length) if length is not None else None)
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar:
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    # http.client returns b"" instead of raising when a connection drops early: check the length
    if length is not None and received < int(length):
        raise ConnectionError(f"connection closed after {received} of {length} bytes")


def _by_hand(urls: tuple[str, ...], dest: Path) -> str:
    return (f"Fetch it by hand: download {urls[0]} (or a mirror: {', '.join(urls[1:]) or 'none'}) "
            f"in a browser or with `curl -L -o {dest} {urls[0]}`, put it at {dest}, and re-run: the file is "
            "then verified and used.")


def download(
    urls: tuple[str, ...] | list[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    size: int | None = None,
    allow_unverified: bool = False,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download a file from the first URL that works, verify it, and move it into place.

    A ``dest`` already verified (see :func:`is_verified`) is skipped. A ``dest`` put there by hand
    (no marker) is hashed and accepted if it matches.

    Args:
        urls: the original URL then its mirrors; each gets ``retries`` attempts, resuming the
            ``.part`` file with an HTTP Range request after a dropped connection.
        dest: the final path of the file.
        sha256: expected hex digest; ``None`` (undocumented) requires ``allow_unverified``.
        size: expected size in bytes if known (progress bar total; a complete ``.part`` is not re-fetched).
        allow_unverified: accept a file without a registry checksum (its digest is printed).
        retries: attempts per URL.
        timeout: socket timeout in seconds.
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        UnverifiedError: ``sha256`` is None and ``allow_unverified`` is False (nothing is fetched).
        ChecksumError: a download completed with the wrong sha256 (its .part is deleted).
        DownloadError: no URL could be fetched; the message names each URL, its error, and how
            to fetch the file by hand.
    """
    urls, dest = tuple(urls), Path(dest)
    if not urls:
        raise ValueError(f"no URL given for {dest.name}")
    if sha256 is None and not allow_unverified:
        raise UnverifiedError(
            f"{dest.name} has no documented sha256 in the registry, so its integrity cannot be checked. "
            "Re-run with --allow-unverified (download(..., allow_unverified=True)) to accept it unverified."
        )
    if is_verified(dest, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():  # placed by hand: verify instead of fetching
        _accept(dest, dest, sha256, allow_unverified, delete_bad=False)
        return dest

    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for url in urls:
        for attempt in range(1, retries + 1):
            try:
                _fetch_into(url, part, size=size, timeout=timeout, progress=progress)
            except urllib.error.HTTPError as err:
                failures.append(f"{url}: HTTP {err.code} {err.reason}")
                break  # a 404/403 will not change on retry: next mirror
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # refused, DNS, cut off
                reason = getattr(err, "reason", err)
                failures.append(f"{url}: {type(reason).__name__}: {reason} (attempt {attempt}/{retries})")
                continue
            try:
                _accept(part, dest, sha256, allow_unverified)
                return dest
            except ChecksumError as err:
                failures.append(f"{url}: {err}")
                break
    if any("sha256 mismatch" in f for f in failures):
        raise ChecksumError(f"could not get a verified {dest.name}:\n  " + "\n  ".join(failures))
    raise DownloadError(
        f"could not download {dest.name} (offline, or the host is down?). Tried:\n  "
        + "\n  ".join(failures) + "\n" + _by_hand(urls, dest)
    )


def _accept(source: Path, dest: Path, sha256: str | None, allow_unverified: bool, delete_bad: bool = True) -> None:
    """Verify ``source`` and atomically rename it to ``dest``, then write the marker.

    A mismatching download is deleted (``delete_bad``); a mismatching file placed by hand is kept.
    """
    actual = sha256_of(source)
    if sha256 is not None and actual != sha256:
        if delete_bad:
            source.unlink()
        fate = "the download was deleted" if delete_bad else f"remove or replace {source}"
        raise ChecksumError(f"sha256 mismatch for {dest.name}: expected {sha256}, got {actual}; {fate}")
    if sha256 is None:
        assert allow_unverified
        print(f"WARNING: {dest.name} is UNVERIFIED (no documented checksum); its sha256 is {actual}")
    if source != dest:
        os.replace(source, dest)
    marker = marker_path(dest)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(actual + "\n")
    os.replace(tmp, marker)
