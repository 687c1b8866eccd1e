"""`asr-cli download` against a local server that answers the Mozilla Data Collective's routes (those of
the `datacollective` 0.7.0 client): the catalog search picks the newest release of the language, a
transfer cut short resumes from where it stopped (a Range request) and the archive is checked
against the API's sha256; a wrong key, missing terms, no key and a corrupt archive are one line each."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.mdc import DATA_COLLECTIVE, DownloadError, find_dataset, parse_checksum

KEY = "good-key"
ARCHIVE = np.random.default_rng(0).bytes(3 * (1 << 20) + 12345)  # 3 MB: three read chunks and a bit


def dataset(ds_id: str, filename: str, locale: str = "fr", data: bytes = ARCHIVE) -> dict:
    return {"id": ds_id, "name": filename.split(".tar")[0], "locale": locale, "filename": filename,
            "sizeBytes": len(data), "checksum": hashlib.sha256(data).hexdigest(),
            "datasetUrl": f"{DATA_COLLECTIVE}/datasets/{ds_id}"}


CATALOG = [dataset("cv24fr", "cv-corpus-24.0-2025-12-05-fr.tar.gz"),
           dataset("cv25de", "cv-corpus-25.0-2026-03-09-de.tar.gz", "de"),
           dataset("cv25fr", "cv-corpus-25.0-2026-03-09-fr.tar.gz"),
           dataset("sps5fr", "sps-corpus-5.0-2026-09-11-fr.tar.gz"),
           dataset("terms", "cv-corpus-25.0-2026-03-09-eo.tar.gz", "eo")]


class Collective(BaseHTTPRequestHandler):
    """The routes: GET /api/datasets (paged catalog), GET /api/datasets/<id>, POST
    /api/datasets/<id>/download (Bearer key; 403 for `terms`), GET /files/<name> (Range; the
    first transfer cut after `state["cut"]` bytes when set)."""

    state: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.state["requests"].append(("GET", url.path, query, self.headers.get("Range")))
        if url.path == "/api/datasets":
            items = [d for d in CATALOG if query.get("locale") in (None, d["locale"])]
            limit, page = int(query.get("limit", 24)), int(query.get("page", 1))
            return self._json(200, {"items": items[(page - 1) * limit: page * limit], "total": len(items)})
        if url.path.startswith("/api/datasets/"):
            found = [d for d in CATALOG if d["id"] == url.path.rsplit("/", 1)[1]]
            return self._json(200, found[0]) if found else self._json(404, {"message": "Dataset not found"})
        if url.path.startswith("/files/"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            body = ARCHIVE[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = self.state.pop("cut", None)
            if cut is not None:  # the connection drops mid-transfer
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)
            return
        self._json(404, {"message": "no route"})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        self.state["requests"].append(("POST", url.path, {}, None))
        ds_id = url.path.split("/")[-2]
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._json(401, {"message": "Invalid API key"})
        if ds_id == "terms":
            return self._json(403, {"message": "Terms and conditions have not been accepted"})
        d = next(d for d in CATALOG if d["id"] == ds_id)
        host, port = self.server.server_address
        self._json(200, {"downloadUrl": f"http://{host}:{port}/files/{d['filename']}?X-Amz-Signature=secret",
                         "sizeBytes": d["sizeBytes"], "checksum": self.state.get("checksum", d["checksum"])})


@pytest.fixture()
def collective(monkeypatch):
    Collective.state = {"requests": []}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collective)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MDC_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
    monkeypatch.setenv("MDC_API_KEY", KEY)
    yield Collective.state
    server.shutdown()
    server.server_close()


def run(*args):
    return CliRunner().invoke(app, ["download", *map(str, args), "--no-progress"])


def last_line(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output.strip().splitlines()[-1]


def test_an_interrupted_download_resumes_and_the_archive_is_checked(collective, tmp_path):
    cut = (1 << 20) + 777
    collective["cut"] = cut
    line = last_line(run("--lang", "fr", "--out", tmp_path))
    assert f"the download stopped after {cut:,} of {len(ARCHIVE):,} bytes: run the same command again" in line
    target = tmp_path / "cv-corpus-25.0-2026-03-09-fr.tar.gz"  # the newest Scripted Speech release of fr
    part = tmp_path / (target.name + ".part")
    assert not target.exists() and part.stat().st_size == cut
    assert (tmp_path / (target.name + ".checksum")).read_text() == CATALOG[2]["checksum"]

    result = run("--lang", "fr", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{target}: 3.16 MB, sha256 checked, resumed at 1.05 MB" in result.output
    assert f"next: asr-cli shards --cv-archive {target} --lang fr" in result.output
    assert target.read_bytes() == ARCHIVE and not part.exists()
    assert not (tmp_path / (target.name + ".checksum")).exists()
    transfers = [r for r in collective["requests"] if r[1].startswith("/files/")]
    assert [r[3] for r in transfers] == [None, f"bytes={cut}-"]  # the second asked only for the rest
    assert all("secret" not in line for line in result.output.splitlines())

    again = run("--lang", "fr", "--out", tmp_path)  # already there: nothing fetched
    assert again.exit_code == 0 and "already downloaded" in again.output
    assert len([r for r in collective["requests"] if r[1].startswith("/files/")]) == 2


def test_the_catalog_search_picks_dataset_version_and_language(collective):
    assert find_dataset("fr")["id"] == "cv25fr"
    assert find_dataset("fr", version="24.0")["id"] == "cv24fr"
    assert find_dataset("fr", "spontaneous")["id"] == "sps5fr"
    assert find_dataset("de")["id"] == "cv25de"
    with pytest.raises(DownloadError, match="lists no Common Voice Spontaneous Speech archive for 'de'.*--dataset-id"):
        find_dataset("de", "spontaneous")


def test_no_key_a_wrong_key_and_unaccepted_terms_are_one_line_each(collective, tmp_path, monkeypatch):
    monkeypatch.delenv("MDC_API_KEY")
    line = last_line(run("--lang", "fr", "--out", tmp_path))
    assert line.startswith("no Data Collective API key: set MDC_API_KEY or pass --key-file") and DATA_COLLECTIVE in line
    assert collective["requests"] == []  # refused before asking anything

    (tmp_path / "key.env").write_text("MDC_API_KEY=not-the-key\n")
    line = last_line(run("--lang", "fr", "--out", tmp_path, "--key-file", tmp_path / "key.env"))
    assert "refused the API key (401: Invalid API key)" in line and "MDC_API_KEY" in line

    (tmp_path / "key.txt").write_text(KEY + "\n")
    line = last_line(run("--lang", "eo", "--out", tmp_path, "--key-file", tmp_path / "key.txt"))
    assert "refused the download (403: Terms and conditions have not been accepted): accept the dataset's terms" in line
    assert not list(tmp_path.glob("*.tar.gz*"))


def test_a_checksum_mismatch_is_refused_and_the_download_removed(collective, tmp_path):
    collective["checksum"] = hashlib.sha256(b"another archive").hexdigest()
    line = last_line(run("--lang", "fr", "--out", tmp_path, "--dataset-id", "cv25fr"))
    assert f"its sha256 is {hashlib.sha256(ARCHIVE).hexdigest()}, the Data Collective lists" in line
    assert "corrupt and was removed" in line
    assert [p.name for p in tmp_path.iterdir() if p.name != ".lock"] == []


def test_checksum_forms():
    assert parse_checksum("AB" * 32) == ("sha256", "ab" * 32)
    assert parse_checksum("md5:" + "0" * 32) == ("md5", "0" * 32)
    assert parse_checksum(None) == (None, None)
    assert parse_checksum("d41d8cd98f00b204e9800998ecf8427e-12") == (None, "d41d8cd98f00b204e9800998ecf8427e-12")
