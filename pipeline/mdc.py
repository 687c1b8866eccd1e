"""Downloading Common Voice from the Mozilla Data Collective: its REST routes, a key, resume, checksum.

Since late 2025 Common Voice is published on the Mozilla Data Collective (DATA_COLLECTIVE), not on
commonvoice.mozilla.org: a page per dataset (release and language) whose terms a user accepts
with their account, and a personal API key. The official client, the `datacollective` package,
downloads and resumes, but draws its own progress bar, never checks the archive against the
checksum (it compares checksums only to decide whether a partial file may be resumed) and needs
Python 3.11.4 and pandas. This module speaks the routes that client uses (datacollective 0.7.0:
api_utils.py, download.py, datasets.py) with the standard library:

    GET  {api}/datasets?q=..&locale=..&page=N&limit=100   the public catalog: {"items": [...], "total": n}
    GET  {api}/datasets/{id or slug}      details: id, name, locale, filename, checksum, sizeBytes, datasetUrl
    POST {api}/datasets/{id}/download     `Authorization: Bearer <key>` -> {downloadUrl, sizeBytes, checksum};
                                          401: key refused, 403: the dataset's terms not accepted
    GET  downloadUrl                      pre-signed (no key); `Range: bytes=N-` resumes (206)

Names as the client's, so a download either one started the other resumes: the key from
MDC_API_KEY (or --key-file: the bare key, or the client's `.env` line `MDC_API_KEY=...`), the API
from MDC_API_URL, the partial file `<archive>.part` beside `<archive>.checksum` (the checksum the
part belongs to: a new version of the dataset starts afresh).

Which dataset: `dataset_id` names one; else the catalog is searched for the archive of the
dataset, version and locale by its file name (`cv-corpus-25.0-2026-03-09-fr.tar.gz`,
`sps-corpus-5.0-2026-09-11-fr.tar.gz`), the newest version when none is asked for.

The archive is hashed as it arrives (a resumed one re-reads its part first), compared with the
checksum the API gives (sha256 as 64 hex digits, the form Common Voice's release statistics
publish; 32 hex digits: md5; `algo:hex` names its algorithm) and only then renamed into place.
A mismatch removes the part: the next run downloads afresh. A checksum of another form cannot be
checked: the archive is kept and the command says it was not checked. Every refusal is one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pipeline import atomic
from pipeline.lock import lock_folder

DATA_COLLECTIVE = "https://datacollective.mozillafoundation.org"  # the site: dataset pages, terms, API keys
DEFAULT_API_URL = "https://mozilladatacollective.com/api"  # the datacollective 0.7.0 client's default
ENV_API_KEY, ENV_API_URL = "MDC_API_KEY", "MDC_API_URL"
DATASETS = {"scripted": ("cv", "Common Voice Scripted Speech"),  # --dataset -> (archive name prefix, catalog title)
            "spontaneous": ("sps", "Common Voice Spontaneous Speech")}
DEFAULT_OUT = Path("data/downloads")
CHUNK = 1 << 20
TIMEOUT_S = 60
MAX_PAGES = 50  # of 100 datasets each: the catalog search gives up after 5,000
NO_KEY = (f"no Data Collective API key: set {ENV_API_KEY} or pass --key-file FILE; make one at {DATA_COLLECTIVE} "
          "(sign in, profile, API keys) after accepting the dataset's terms on its page")


class DownloadError(RuntimeError):
    """A download that cannot go on (one line: what happened, what to do)."""


def human_bytes(n: float) -> str:
    """3157073 -> "3.16 MB" (decimal units, as disks are sold)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def archive_pattern(dataset: str, lang: str, version: str | None) -> re.Pattern:
    """The archive file name of a dataset's release for `lang` (any version when None)."""
    prefix = DATASETS[dataset][0]
    v = re.escape(version) if version else r"\d+(?:\.\d+)*"
    return re.compile(rf"{prefix}-corpus-(?P<version>{v})-(?P<date>\d{{4}}-\d{{2}}-\d{{2}})-{re.escape(lang)}"
                      r"\.(?:tar\.gz|tgz)")


def read_key(key_file: Path | None = None) -> str:
    """The API key: `key_file` (a bare key, or a `MDC_API_KEY=...` line) when given, else the
    MDC_API_KEY environment variable; DownloadError NO_KEY without one."""
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except OSError as e:
            raise DownloadError(f"--key-file {key_file}: {e.strerror or e}") from None
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip().removeprefix("export ").strip() == ENV_API_KEY:
                return value.strip().strip("\"'")
        if text.strip() and "=" not in text and len(text.split()) == 1:
            return text.strip()
        raise DownloadError(f"--key-file {key_file} holds no key (a bare key, or a line {ENV_API_KEY}=...)")
    key = os.environ.get(ENV_API_KEY, "").strip()
    if not key:
        raise DownloadError(NO_KEY)
    return key


def api_url() -> str:
    return os.environ.get(ENV_API_URL, DEFAULT_API_URL).rstrip("/")


def _request(url: str, method: str = "GET", key: str | None = None, headers: dict | None = None):
    hdrs = {"User-Agent": "cv-asr (asr-cli download)", "Accept": "application/json", **(headers or {})}
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, method=method, headers=hdrs, data=b"" if method == "POST" else None)
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DownloadError(_http_message(e, method, url)) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot reach {_public(url)}: {reason} (check the network, or {ENV_API_URL})") from None


def _json(url: str, method: str = "GET", key: str | None = None) -> dict:
    with _request(url, method, key) as resp:
        try:
            return json.loads(resp.read().decode("utf-8"))
        except ValueError:
            raise DownloadError(f"{method} {_public(url)} did not answer JSON: is {ENV_API_URL} the API?") from None


def _public(url: str) -> str:
    """A URL without its query: a pre-signed download URL's signature is nobody's business."""
    return urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()


def _http_message(e: urllib.error.HTTPError, method: str, url: str) -> str:
    try:
        body = json.loads(e.read().decode("utf-8") or "{}")
        detail = str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
    except (ValueError, OSError):
        detail = ""
    said = f": {detail}" if detail else ""
    if e.code == 401:
        return (f"the Data Collective refused the API key (401{said}): it is wrong, expired or revoked; make a new "
                f"one at {DATA_COLLECTIVE} and set {ENV_API_KEY}")
    if e.code == 403:
        return (f"the Data Collective refused the download (403{said}): accept the dataset's terms on its page at "
                f"{DATA_COLLECTIVE} with the account of your API key, then run again")
    if e.code == 404:
        return f"not found on the Data Collective (404{said}): {method} {_public(url)}"
    if e.code == 429:
        return "the Data Collective is rate limiting this key (429): try again in a while"
    return f"the Data Collective answered {e.code} to {method} {_public(url)}{said}"


def find_dataset(lang: str, dataset: str = "scripted", version: str | None = None, api: str | None = None) -> dict:
    """The catalog entry (details) of `dataset`'s archive for `lang` (`version`, else the newest):
    searched by archive file name, with the catalog's locale filter first and without it next
    (the catalog's locale names may differ from Common Voice's)."""
    api = api or api_url()
    pattern, title = archive_pattern(dataset, lang, version), DATASETS[dataset][1]
    for params in ({"q": title, "locale": lang}, {"q": title}):
        found = []
        for page in range(1, MAX_PAGES + 1):
            listing = _json(f"{api}/datasets?" + urllib.parse.urlencode({**params, "limit": 100, "page": page}))
            items = listing.get("items") or []
            found += [(m, d) for d in items if (m := pattern.fullmatch(str(d.get("filename") or "")))]
            if not items or page * 100 >= int(listing.get("total") or 0):
                break
        if found:
            m, details = max(found, key=lambda f: (tuple(int(x) for x in f[0].group("version").split(".")),
                                                   f[0].group("date")))
            return details
    which = f"{title} {version}" if version else title
    raise DownloadError(f"the Data Collective's catalog lists no {which} archive for {lang!r}: find the dataset at "
                        f"{DATA_COLLECTIVE} and pass its id (the end of its page's address) with --dataset-id")


def download(lang: str, dataset: str = "scripted", version: str | None = None, out: Path = DEFAULT_OUT,
             dataset_id: str | None = None, key: str | None = None, progress: bool = True) -> dict:
    """Download (or resume, or find already there) a release archive into `out`; returns
    {"path", "bytes", "checksum", "algorithm", "resumed_from", "skipped"}. DownloadError, one line,
    for anything that stops it. `key`: read_key()'s when None (checked before anything is asked)."""
    if dataset not in DATASETS:
        raise DownloadError(f"--dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    key = key or read_key()
    api = api_url()
    details = _json(f"{api}/datasets/{urllib.parse.quote(dataset_id, safe='')}") if dataset_id else \
        find_dataset(lang, dataset, version, api)
    filename = str(details.get("filename") or "")
    if not filename or Path(filename).name != filename or filename.startswith("."):
        raise DownloadError(f"the Data Collective gives no usable archive name for dataset {details.get('id')!r}: "
                            f"{filename!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / filename
    with lock_folder(out, "download"):
        if target.is_file():
            return {"path": target, "bytes": target.stat().st_size, "checksum": details.get("checksum"),
                    "algorithm": None, "resumed_from": 0, "skipped": True}
        plan = _json(f"{api}/datasets/{urllib.parse.quote(str(details['id']), safe='')}/download", "POST", key)
        if not plan.get("downloadUrl") or not plan.get("sizeBytes"):
            raise DownloadError(f"the Data Collective's download answer lacks downloadUrl or sizeBytes: {sorted(plan)}")
        return _fetch(plan["downloadUrl"], int(plan["sizeBytes"]), plan.get("checksum") or details.get("checksum"),
                      target, progress)


def _fetch(url: str, size: int, checksum: str | None, target: Path, progress: bool) -> dict:
    from tqdm import tqdm

    part, sidecar = target.with_name(target.name + ".part"), target.with_name(target.name + ".checksum")
    algorithm, expected = parse_checksum(checksum)
    resumable = part.is_file() and checksum and sidecar.is_file() and sidecar.read_text().strip() == checksum
    if not resumable:
        part.unlink(missing_ok=True)
        if checksum:
            atomic.write_text(sidecar, checksum)
    offset = part.stat().st_size if part.is_file() else 0
    if offset > size:
        part.unlink()
        offset = 0
    free = shutil.disk_usage(target.parent).free
    if free < size - offset:
        raise DownloadError(f"{target.parent} has {human_bytes(free)} free; the archive needs "
                            f"{human_bytes(size - offset)} more: free some space or choose another --out")
    digest = hashlib.new(algorithm) if algorithm else None
    bar = tqdm(total=size, initial=0, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
               disable=not progress, dynamic_ncols=True)
    try:
        if offset and digest is not None:  # the part's bytes count towards the checksum: read them once
            bar.set_postfix_str("checking the partial download", refresh=False)
            with open(part, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
        else:
            bar.update(offset)
        bar.set_postfix_str("", refresh=False)
        done, digest = _stream(url, part, offset, size, digest, bar)
    finally:
        bar.close()
    if done != size:
        raise DownloadError(f"the download stopped after {done:,} of {size:,} bytes: run the same command again "
                            f"to resume ({part} is kept)")
    if digest is not None and digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise DownloadError(f"{target.name}: its {algorithm} is {digest.hexdigest()}, the Data Collective lists "
                            f"{expected}: the download is corrupt and was removed; run again to download it afresh")
    atomic.promote(part, target)
    sidecar.unlink(missing_ok=True)
    return {"path": target, "bytes": size, "checksum": expected, "algorithm": algorithm, "resumed_from": offset,
            "skipped": False}


def _stream(url: str, part: Path, offset: int, size: int, digest, bar) -> tuple[int, object]:
    """Append the archive from `offset` to `part`: (bytes `part` holds at the end, the digest over
    them). A server that ignores the Range header sends the whole file: the part starts over."""
    import http.client

    with _request(url, headers={"Range": f"bytes={offset}-"} if offset else None) as resp:
        if offset and resp.status != 206:
            offset, digest = 0, hashlib.new(digest.name) if digest is not None else None
            bar.reset(total=size)
        done = offset
        with open(part, "ab" if offset else "wb") as f:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:  # the network's, not the disk's
                bar.set_postfix_str(f"interrupted: {type(e).__name__}", refresh=False)
    return done, digest


def parse_checksum(checksum: str | None) -> tuple[str | None, str | None]:
    """(hashlib algorithm, lowercase hex) of the API's checksum: `algo:hex` (or `algo-hex`), else
    by length (64 hex digits: sha256, 32: md5); (None, the checksum) for a form this tool does not
    know, and (None, None) without one: the archive is then not checked (the result says so)."""
    if not checksum:
        return None, None
    text = checksum.strip().lower()
    m = re.fullmatch(r"(?:(sha256|sha1|sha512|md5)[:\-=])?([0-9a-f]+)", text)
    algorithm = (m.group(1) or {64: "sha256", 32: "md5", 40: "sha1", 128: "sha512"}.get(len(m.group(2)))) if m else None
    return (algorithm, m.group(2)) if algorithm else (None, checksum)
