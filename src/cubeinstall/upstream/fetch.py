"""Download pinned upstream files into the cache: verified, resumable, proxy-aware.

Only the standard library: ``urllib.request`` already honours ``http_proxy``,
``https_proxy`` and ``no_proxy`` (its default ProxyHandler reads them), follows
redirects and speaks HTTP Range, which is all a dozen static files need; a new
dependency would buy nothing. An interrupted download stays in
``partial/<digest>.part`` and continues from its last byte (``Range: bytes=N-``) on
the next attempt or run; a server that ignores Range sends the whole file again.
Nothing enters the cache unless its sha256 is the pinned one.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from cubeinstall import __version__
from cubeinstall.core.errors import CubeError
from cubeinstall.upstream.cache import Cache, ChecksumMismatch, sha256_of
from cubeinstall.upstream.catalog import UpstreamFile

if TYPE_CHECKING:
    from cubeinstall.core.output import Output

CHUNK = 1 << 16
REPORT_EVERY = 1 << 20  # progress events per MiB, not per chunk
TIMEOUT = 60.0


class DownloadFailed(CubeError):
    pass


@dataclass(frozen=True)
class Fetched:
    item: UpstreamFile
    action: str  # "cached" | "downloaded" | "resumed"
    size: int


def fetch_all(files: Iterable[UpstreamFile], cache: Cache, out: "Output", *,
              attempts: int = 3, timeout: float = TIMEOUT) -> list[Fetched]:
    """Make every file present and verified in the cache; the first failure stops."""
    results = []
    for item in _unique(files):
        if _intact(item, cache, out):
            result = Fetched(item, "cached", cache.path(item.sha256).stat().st_size)
        else:
            result = fetch_one(item, cache, out, attempts=attempts, timeout=timeout)
        out.event("upstream-file", component=item.component, version=item.version,
                  file=item.path, url=item.url, sha256=item.sha256, action=result.action,
                  bytes=result.size, message=f"  {result.action:10} {item.label}")
        results.append(result)
    return results


def _intact(item: UpstreamFile, cache: Cache, out: "Output") -> bool:
    """Cached and still right; a damaged copy is dropped, to be downloaded again."""
    if not cache.has(item.sha256):
        return False
    try:
        cache.read(item)
    except ChecksumMismatch as damaged:
        out.warn(f"{damaged.message.split(';')[0]}; downloading it again")
        cache.path(item.sha256).unlink()
        return False
    return True


def fetch_one(item: UpstreamFile, cache: Cache, out: "Output", *, attempts: int = 3,
              timeout: float = TIMEOUT) -> Fetched:
    resumed = False
    for attempt in range(1, attempts + 1):
        try:
            resumed = _download(item, cache, out, timeout) or resumed
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise DownloadFailed(f"{item.label}: {item.url} answered HTTP {exc.code} "
                                     f"{exc.reason}", hint=_HINT) from None
            if attempt == attempts:
                raise DownloadFailed(f"{item.label}: download from {item.url} failed "
                                     f"{attempts} times: {_reason(exc)}; the part already "
                                     "received is kept and the next run resumes it",
                                     hint=_HINT) from None
            out.warn(f"{item.label}: {_reason(exc)}; retrying ({attempt}/{attempts})")
            time.sleep(min(2 ** attempt, 10))
    partial = cache.partial(item.sha256)
    size = partial.stat().st_size
    cache.adopt(partial, item.sha256, item.label, item.url)
    return Fetched(item, "resumed" if resumed else "downloaded", size)


_HINT = ("check the network, the proxy variables (https_proxy, no_proxy) or the mirror "
         "in site.yaml (upstream.base_url); without network use `cubeinstall bundle load`")


def _download(item: UpstreamFile, cache: Cache, out: "Output", timeout: float) -> bool:
    """Fill the partial file to its end; True when it continued an earlier part."""
    partial = cache.partial(item.sha256)
    cache.scratch()
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(item.url, headers={"User-Agent": f"cubeinstall/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        # A fresh opener each time: its ProxyHandler reads the proxy variables now.
        response = urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # asked past the end: the part may be whole already
            exc.close()
            return _whole_or_restart(item, cache)
        raise
    with response:
        resuming = bool(offset) and response.getcode() == 206 and _starts_at(response, offset)
        if not resuming:
            offset = 0  # the server sent the whole file (no Range support, or a new file)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else 0
        with partial.open("ab" if resuming else "wb") as sink, \
                out.progress(f"download {item.path}", total, unit="bytes") as advance:
            pending = offset
            for block in iter(lambda: response.read(CHUNK), b""):
                sink.write(block)
                pending += len(block)
                if pending >= REPORT_EVERY:
                    advance(pending)
                    pending = 0
            advance(pending)
        if total and partial.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - partial.stat().st_size)
    return resuming


def _starts_at(response, offset: int) -> bool:
    # Content-Range: bytes 1000-1999/2000
    value = response.headers.get("Content-Range", "")
    return value.startswith(f"bytes {offset}-")


def _whole_or_restart(item: UpstreamFile, cache: Cache) -> bool:
    partial = cache.partial(item.sha256)
    if sha256_of(partial) == item.sha256:
        return True
    partial.unlink()  # longer than the file and not it: start again on the next attempt
    raise OSError("the kept partial download does not fit the file; starting again")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _unique(files: Iterable[UpstreamFile]) -> list[UpstreamFile]:
    seen, result = set(), []
    for item in files:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            result.append(item)
    return result
