"""Download one file that no mirror can abuse: limits, resume, mirrors, verification, atomic rename.

The bytes go to ``<dest>.part`` and reach ``dest`` (``os.replace``: a reader never sees half a
file) only once they pass every check:

* the response: status 200 (or 206 with the asked-for ``Content-Range`` when resuming), a
  well-formed ``Content-Length`` no larger than the file may be, no HTML page where a file is
  expected, the declared format's magic bytes at the start;
* the transfer: a hard cap at the expected size (an endless body stops there), a minimum rate over
  every window of ``rate_window`` seconds (a 1 byte/s server is dropped), a socket timeout, and an
  overall deadline for the whole file;
* the file: its size, then its sha256 against the registry. A file without a documented sha256
  (unverified) must be within ``size_bounds`` and is trusted on first use: the sha256 of its first
  good download is pinned in a local lock file (:class:`PinFile`) and a later download that
  differs is refused. It is never marked verified.

A dropped connection is resumed with an HTTP ``Range`` request on the same mirror (a server that
answers 200 instead restarts from zero); a mirror that fails, is too slow or serves something
wrong hands over to the next one. Every failure raises :class:`DownloadError` (or
:class:`ChecksumError`) naming each URL and what went wrong; nothing is then left at ``dest``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .extract import SNIFF_BYTES, ArchiveError, check_format
from .registry import archive_format

CHUNK = 1 << 16
USER_AGENT = "course-utils-data/2.0 (+python urllib)"


class DownloadError(RuntimeError):
    """A file could not be fetched from any URL (offline, host down, malformed response, too slow...)."""


class ChecksumError(RuntimeError):
    """A downloaded file's sha256 is not the registry's (or, unverified, not the pinned one)."""


class UnverifiedError(RuntimeError):
    """The registry has no sha256 for a file and ``allow_unverified`` was not given."""


@dataclass(frozen=True)
class TransferLimits:
    """How long and how slowly a download may go.

    Attributes:
        timeout: socket timeout in seconds (connect, and each read).
        deadline: seconds for the whole file, over every attempt and mirror.
        min_rate: bytes per second below which a mirror is given up (measured per window).
        rate_window: seconds over which the rate is measured.
        retries: attempts per URL after dropped connections.
    """

    timeout: float = 60.0
    deadline: float = 4 * 3600.0
    min_rate: float = 10 * 1024.0
    rate_window: float = 30.0
    retries: int = 3

    def __post_init__(self) -> None:
        for name in ("timeout", "deadline", "rate_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransferLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.min_rate < 0 or self.retries < 1:
            raise ValueError(f"TransferLimits: min_rate must be >= 0 and retries >= 1, got {self.min_rate!r}, "
                             f"{self.retries!r}")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
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
    """Where the registry-verified digest of ``dest`` is recorded: ``<dest>.sha256``."""
    return dest.with_name(dest.name + ".sha256")


def is_verified(dest: Path, sha256: str) -> bool:
    """True if ``dest`` exists and its marker records the registry's ``sha256``."""
    marker = marker_path(Path(dest))
    return Path(dest).is_file() and marker.is_file() and marker.read_text().strip() == sha256


class PinFile:
    """The local lock file of trust on first use: ``key -> sha256`` of unverified files.

    A JSON object ``{"pennfudan/PennFudanPed.zip": {"sha256": ..., "size": ..., "url": ...}}``,
    rewritten atomically. Delete an entry (or the file) to trust a new download again.

    Args:
        path: the lock file (created on the first pin).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            pins = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise ChecksumError(f"the lock file {self.path} is not valid JSON ({err}); fix or delete it") from None
        if not isinstance(pins, dict):
            raise ChecksumError(f"the lock file {self.path} must hold a JSON object; fix or delete it")
        return pins

    def get(self, key: str) -> str | None:
        """The pinned sha256 of ``key``, ``None`` when not pinned yet."""
        entry = self._read().get(key)
        return entry.get("sha256") if isinstance(entry, dict) else None

    def pin(self, key: str, sha256: str, *, size: int, url: str) -> None:
        """Record ``sha256`` as the trusted digest of ``key``."""
        pins = self._read()
        pins[key] = {"sha256": sha256, "size": size, "url": url}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------- one transfer


class _Failure(Exception):
    """One attempt failed. ``retry``: try the same URL again (resuming); ``keep``: the .part's bytes are good."""

    def __init__(self, message: str, *, retry: bool = False, keep: bool = True, final: bool = False):
        super().__init__(message)
        self.retry, self.keep, self.final = retry, keep, final


@dataclass(frozen=True)
class _Expect:
    """What the file must be: its name, size bounds, declared format."""

    name: str
    bounds: tuple[int, int] | None
    declared: str | None

    @property
    def cap(self) -> int | None:
        return self.bounds[1] if self.bounds else None


def _content_length(url: str, response) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None:
        return None
    if not re.fullmatch(r"\s*\d+\s*", raw):
        raise _Failure(f"{url}: malformed Content-Length {raw!r}")
    return int(raw)


def _start_offset(url: str, response, offset: int) -> int:
    """Where this response's body starts in the file: ``offset`` for a matching 206, 0 for a 200."""
    if response.status == 200:
        return 0
    if response.status != 206:
        raise _Failure(f"{url}: unexpected HTTP status {response.status}")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", response.headers.get("Content-Range", ""))
    if not offset or not match or int(match.group(1)) != offset:
        raise _Failure(f"{url}: answered 206 with Content-Range {response.headers.get('Content-Range')!r} "
                       f"to a request for bytes {offset}-")
    return offset


def _check_headers(url: str, response, start: int, expect: _Expect) -> int | None:
    """Refuse an HTML page or a body longer than the file may be; returns the Content-Length."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        raise _Failure(f"{url}: served an HTML page (Content-Type {content_type}) instead of {expect.name}")
    length = _content_length(url, response)
    if length is not None and expect.bounds is not None:
        low, high = expect.bounds
        if start + length > high or (start == 0 and length < low):
            raise _Failure(f"{url}: announces {start + length:,} bytes, but {expect.name} has "
                           + (f"{low:,}" if low == high else f"{low:,} to {high:,}") + " bytes")
    return length


def _check_start(url: str, head: bytes, expect: _Expect) -> None:
    if expect.declared is not None:
        try:
            check_format(expect.name, head, expect.declared)
        except ArchiveError as err:
            raise _Failure(f"{url}: {err}", keep=False) from None


def _transfer(url: str, part: Path, expect: _Expect, limits: TransferLimits, deadline_at: float,
              progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its length). Raises :class:`_Failure`."""
    offset = part.stat().st_size if part.exists() else 0
    if expect.bounds is not None and offset >= expect.bounds[1]:
        return  # every byte is here already; the checks decide
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=limits.timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part is complete (or wrong)
            return
        raise _Failure(f"{url}: HTTP {err.code} {err.reason}") from None
    with response:
        start = _start_offset(url, response, offset)
        length = _check_headers(url, response, start, expect)
        with open(part, "ab" if start else "wb") as out, tqdm(
            total=expect.cap, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=expect.name, disable=not progress, leave=False,
        ) as bar:
            size, head = start, b""
            window_start, window_bytes = time.monotonic(), 0
            while block := response.read1(CHUNK):
                size += len(block)
                if expect.cap is not None and size > expect.cap:
                    raise _Failure(f"{url}: sent more than the {expect.cap:,} bytes {expect.name} may have "
                                   "(an endless body?)", keep=False)
                if start == 0 and len(head) < SNIFF_BYTES:
                    head += block[: SNIFF_BYTES - len(head)]
                    if len(head) == SNIFF_BYTES:
                        _check_start(url, head, expect)
                out.write(block)
                bar.update(len(block))
                now = time.monotonic()
                if now > deadline_at:
                    raise _Failure(f"{url}: the deadline of {limits.deadline:g} s for {expect.name} passed "
                                   f"after {size:,} bytes", final=True)
                window_bytes += len(block)
                if now - window_start >= limits.rate_window:
                    rate = window_bytes / (now - window_start)
                    if rate < limits.min_rate:
                        raise _Failure(f"{url}: too slow ({rate:,.0f} bytes/s, below the minimum of "
                                       f"{limits.min_rate:,.0f} bytes/s)")
                    window_start, window_bytes = now, 0
            if start == 0 and 0 < len(head) < SNIFF_BYTES:
                _check_start(url, head, expect)
    # http.client returns b"" instead of raising when a connection drops early: check the length
    if length is not None and size < start + length:
        raise _Failure(f"{url}: connection closed after {size:,} of {start + length:,} bytes", retry=True)
    if expect.bounds is not None and size < expect.bounds[0]:
        raise _Failure(f"{url}: the body ended after {size:,} bytes, but {expect.name} has at least "
                       f"{expect.bounds[0]:,} (truncated)", retry=True)


def _attempt(url: str, part: Path, expect: _Expect, limits: TransferLimits, deadline_at: float,
             progress: bool) -> None:
    """One :func:`_transfer`, with the network's own exceptions turned into :class:`_Failure`."""
    try:
        _transfer(url, part, expect, limits, deadline_at, progress)
    except _Failure:
        raise
    except urllib.error.URLError as err:  # refused, DNS, TLS
        reason = err.reason
        raise _Failure(f"{url}: {type(reason).__name__}: {reason}", retry=True) from None
    except TimeoutError:
        raise _Failure(f"{url}: no data for {limits.timeout:g} s (timed out)", retry=True) from None
    except (OSError, http.client.HTTPException) as err:  # reset, cut off mid-chunk, bad status line
        raise _Failure(f"{url}: {type(err).__name__}: {err}", retry=True) from None


# --------------------------------------------------------------------------- accepting a file


def _check_file(path: Path, expect: _Expect) -> None:
    """Size and format of a complete file; raises :class:`_Failure`."""
    size = path.stat().st_size
    if expect.bounds is not None and not expect.bounds[0] <= size <= expect.bounds[1]:
        low, high = expect.bounds
        raise _Failure(f"{expect.name} has {size:,} bytes, expected "
                       + (f"{low:,}" if low == high else f"{low:,} to {high:,}"), keep=False)
    if expect.declared is not None:
        with open(path, "rb") as f:
            _check_start(str(path), f.read(SNIFF_BYTES), expect)


def _by_hand(urls: tuple[str, ...], dest: Path) -> str:
    return (f"Fetch it by hand: download {urls[0]} (or a mirror: {', '.join(urls[1:]) or 'none'}) in a browser or "
            f"with `curl -L -o {dest} {urls[0]}`, put it at {dest}, and re-run: the file is then checked and used.")


def download(
    urls: tuple[str, ...] | list[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    size: int | None = None,
    size_bounds: tuple[int, int] | None = None,
    declared: str | None = None,
    allow_unverified: bool = False,
    pins: PinFile | None = None,
    pin_key: str | None = None,
    pin_new: bool = True,
    limits: TransferLimits | None = None,
    progress: bool = True,
) -> Path:
    """Download a file from the first URL that serves it well, check it, and move it into place.

    A ``dest`` already verified (marker ``<dest>.sha256``) is kept without a request; a ``dest``
    put there by hand is checked like a download (size, format, sha256 or pin).

    Args:
        urls: the original URL then its mirrors.
        dest: the final path of the file.
        sha256: expected hex digest; ``None`` (undocumented) requires ``allow_unverified`` and
            ``size_bounds`` (or ``size``).
        size: the exact size in bytes, if known (same as ``size_bounds=(size, size)``).
        size_bounds: ``(lowest, highest)`` accepted size; the download is cut off above it.
        declared: the archive format the file must be (default: from ``dest``'s name, if any).
        allow_unverified: accept a file without a registry checksum, trusted on first use.
        pins: the lock file that pins unverified files (default ``<dest folder>/sha256-pins.json``).
        pin_key: the file's key in ``pins`` (default ``dest``'s name).
        pin_new: pin an unverified file that has no pin yet at once; ``fetch_dataset`` passes
            False and pins only once the archive has been extracted (a good download).
        limits: timeouts, deadline, minimum rate and retries (default :class:`TransferLimits`).
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        UnverifiedError: ``sha256`` is None and ``allow_unverified`` is False (nothing is fetched).
        ChecksumError: the only complete downloads had the wrong sha256 (or differ from the pin).
        DownloadError: no URL served the file; the message names each URL, what went wrong, and
            how to fetch the file by hand.
    """
    urls, dest, limits = tuple(urls), Path(dest), limits or TransferLimits()
    if not urls:
        raise ValueError(f"urls: no URL given for {dest.name}")
    if sha256 is None and not allow_unverified:
        raise UnverifiedError(
            f"{dest.name} has no documented sha256 in the registry, so its integrity cannot be checked. "
            "Re-run with --allow-unverified (allow_unverified=True) to trust the first download and pin it.")
    bounds = size_bounds or ((size, size) if size is not None else None)
    if sha256 is None and bounds is None:
        raise ValueError(f"size_bounds: an unverified file ({dest.name}) needs its expected size")
    expect = _Expect(dest.name, bounds, declared or archive_format(dest.name))
    pins = pins or PinFile(dest.parent / "sha256-pins.json")
    pin_key = pin_key or dest.name
    if sha256 is not None and is_verified(dest, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():  # placed by hand (or an unverified file of an earlier run): check, never fetch
        try:
            _check_file(dest, expect)
        except _Failure as err:
            raise ChecksumError(f"{dest} is not the expected file: {err}; remove or replace it") from None
        _accept(dest, dest, sha256, pins, pin_key, source_url=f"placed by hand at {dest}", pin_new=pin_new)
        return dest

    part = dest.with_name(dest.name + ".part")
    if sha256 is None:
        part.unlink(missing_ok=True)  # unverified bytes of unknown origin are never continued
    deadline_at = time.monotonic() + limits.deadline
    failures: list[str] = []
    mismatch = False
    for url in urls:
        if sha256 is None:
            part.unlink(missing_ok=True)  # never splice two mirrors' bytes of an unchecked file
        for attempt in range(1, limits.retries + 1):
            if time.monotonic() > deadline_at:
                failures.append(f"the deadline of {limits.deadline:g} s for {dest.name} passed")
                return _give_up(urls, dest, part, sha256, failures, mismatch)
            try:
                _attempt(url, part, expect, limits, deadline_at, progress)
                _check_file(part, expect)
            except _Failure as err:
                failures.append(f"{err}" + (f" (attempt {attempt}/{limits.retries})" if err.retry else ""))
                if not err.keep:
                    part.unlink(missing_ok=True)
                if err.final:
                    return _give_up(urls, dest, part, sha256, failures, mismatch)
                if err.retry and time.monotonic() < deadline_at:
                    continue
                break
            try:
                _accept(part, dest, sha256, pins, pin_key, source_url=url, pin_new=pin_new)
                return dest
            except ChecksumError as err:
                failures.append(f"{url}: {err}")
                mismatch = True
                break
    return _give_up(urls, dest, part, sha256, failures, mismatch)


def _condensed(failures: list[str]) -> list[str]:
    """``["x (attempt 1/3)", "x (attempt 2/3)"]`` -> ``["x (attempts 1-2/3)"]``: one entry per repeated failure."""
    out: list[str] = []
    for failure in failures:
        match = re.fullmatch(r"(.*) \(attempt (\d+)/(\d+)\)", failure)
        previous = re.fullmatch(r"(.*) \(attempts? (\d+)(?:-\d+)?/(\d+)\)", out[-1]) if out else None
        if match and previous and previous.group(1) == match.group(1):
            out[-1] = f"{match.group(1)} (attempts {previous.group(2)}-{match.group(2)}/{match.group(3)})"
        else:
            out.append(failure)
    return out


def _give_up(urls: tuple[str, ...], dest: Path, part: Path, sha256: str | None, failures: list[str],
             mismatch: bool) -> Path:
    """Raise the error that sums up ``failures``; an unverified .part is deleted, a verified one kept to resume."""
    if sha256 is None:
        part.unlink(missing_ok=True)
    tried = "; ".join(_condensed(failures))
    if mismatch:
        raise ChecksumError(f"could not get a good {dest.name}: {tried}")
    raise DownloadError(f"could not download {dest.name} from any of its URLs. Tried: {tried}. "
                        + _by_hand(urls, dest))


def _accept(source: Path, dest: Path, sha256: str | None, pins: PinFile, pin_key: str, source_url: str,
            pin_new: bool) -> None:
    """Check ``source``'s digest (registry or pin) and atomically rename it to ``dest``.

    A mismatching download is deleted; a mismatching file placed by hand (``source == dest``) is kept.
    """
    actual = sha256_of(source)
    if sha256 is not None:
        expected, what = sha256, "the registry's sha256"
    else:
        expected, what = pins.get(pin_key), "the pinned sha256"
    if expected is not None and actual != expected:
        fate = "the download was deleted" if source != dest else f"remove or replace {source}"
        if source != dest:
            source.unlink()
        raise ChecksumError(f"sha256 mismatch for {dest.name}: {what} is {expected}, got {actual}; {fate}"
                            + (f" (pins: {pins.path})" if sha256 is None else ""))
    if source != dest:
        os.replace(source, dest)
    if sha256 is not None:
        marker = marker_path(dest)
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(actual + "\n")
        os.replace(tmp, marker)
    elif expected is None and pin_new:
        pin_first_use(pins, pin_key, dest, actual, source_url)


def pin_first_use(pins: PinFile, key: str, path: Path, sha256: str, url: str) -> None:
    """Pin the sha256 of a first good unverified file, and say so loudly.

    Args:
        pins: the lock file.
        key: the file's key in it, e.g. ``"pennfudan/PennFudanPed.zip"``.
        path: the file.
        sha256: its digest.
        url: where it came from.
    """
    pins.pin(key, sha256, size=path.stat().st_size, url=url)
    print(f"WARNING: {path.name} is UNVERIFIED (no published checksum). Trusting it on first use: its sha256 "
          f"{sha256} is pinned in {pins.path}; a different file will be refused from now on.")
