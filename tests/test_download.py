"""The download command with ``urllib.request.urlopen`` mocked by in-memory archives (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from semcorr.data import download as dl
from semcorr.data.pfwillow import PFWillowDataset
from semcorr.errors import ConfigError, SemcorrError


# -- a fake web -------------------------------------------------------------------------------
class FakeResponse:
    """What urlopen returns: read(n), status, headers, a context manager."""

    def __init__(self, body: bytes, status: int = 200, length: int | None = None):
        self._body = io.BytesIO(body)
        self.status = status
        self.headers = {"Content-Length": str(len(body) if length is None else length)}

    def read(self, n: int = -1) -> bytes:
        return self._body.read(n)

    def getcode(self) -> int:
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeWeb:
    """Serves ``files`` {url: bytes}; honours ``Range`` unless ``ranges=False``; logs requests."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, offline: bool = False):
        self.files, self.ranges, self.offline = files, ranges, offline
        self.requests: list[tuple[str, str | None]] = []

    def __call__(self, request, timeout=None):
        url = request.full_url
        rng = request.get_header("Range")
        self.requests.append((url, rng))
        if self.offline:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        body = self.files[url]
        if rng and self.ranges:
            start = int(rng.split("=")[1].rstrip("-"))
            return FakeResponse(body[start:], status=206)
        return FakeResponse(body)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def willow_zip() -> bytes:
    """A PF-dataset.zip in the official layout (top folder PF-dataset/), with macOS litter."""
    members = {f"PF-dataset/car(G)/img{i}.png": bytes([i]) * 3000 for i in range(3)}
    members["PF-dataset/car(G)/img0.mat"] = b"mat"
    members["__MACOSX/PF-dataset/._img0.png"] = b"junk"
    members["PF-dataset/.DS_Store"] = b"junk"
    return make_zip(members)


def willow_urls() -> tuple[str, str]:
    spec = dl.DATASETS["pfwillow"]
    return spec.resources[0].urls[0], spec.resources[1].urls[0]


@pytest.fixture
def web(monkeypatch):
    def install(files, **kw):
        fake = FakeWeb(files, **kw)
        monkeypatch.setattr(urllib.request, "urlopen", fake)
        return fake

    return install


def with_checksum(monkeypatch, name: str, index: int = 0, **sums) -> None:
    spec = dl.DATASETS[name]
    resources = list(spec.resources)
    resources[index] = dataclasses.replace(resources[index], **sums)
    monkeypatch.setitem(dl.DATASETS, name, dataclasses.replace(spec, resources=tuple(resources)))


# -- tests ------------------------------------------------------------------------------------
def test_download_extract_and_csv(tmp_path, web):
    zip_url, csv_url = willow_urls()
    fake = web({zip_url: willow_zip(), csv_url: b"imageA,imageB\n"})
    root = dl.download("pfwillow", tmp_path / "PF-WILLOW", quiet=True)
    assert sorted(p.name for p in (root / "car(G)").iterdir()) == ["img0.mat", "img0.png", "img1.png", "img2.png"]
    assert (root / "car(G)" / "img1.png").read_bytes() == bytes([1]) * 3000
    assert not (root / "__MACOSX").exists() and not (root / ".DS_Store").exists()
    assert not (root / "PF-dataset.zip").exists() and not list(root.glob("*.part"))
    assert (root / "test_pairs_pf.csv").read_bytes() == b"imageA,imageB\n"
    marker = json.loads((root / dl.MARKER).read_text())
    assert marker["complete"] and marker["files"]["PF-dataset.zip"] == hashlib.sha256(willow_zip()).hexdigest()
    # a second run does not touch the network
    n = len(fake.requests)
    dl.download("pfwillow", root, quiet=True)
    assert len(fake.requests) == n


def test_optional_file_failure_only_warns(tmp_path, web):
    zip_url, _ = willow_urls()
    web({zip_url: willow_zip()})  # the CSV answers 404
    root = dl.download("pfwillow", tmp_path, quiet=True)
    assert (root / "car(G)" / "img0.png").is_file() and not (root / "test_pairs_pf.csv").exists()


def test_checksums_verified(tmp_path, web, monkeypatch):
    data = willow_zip()
    zip_url, _ = willow_urls()
    with_checksum(monkeypatch, "pfwillow", sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())
    web({zip_url: data})
    assert (dl.download("pfwillow", tmp_path / "ok", quiet=True) / "car(G)" / "img2.png").is_file()
    with_checksum(monkeypatch, "pfwillow", sha256=None, md5="0" * 32)
    with pytest.raises(dl.DownloadError, match="Checksum mismatch for PF-dataset.zip: md5"):
        dl.download("pfwillow", tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad" / "PF-dataset.zip").exists() and not (tmp_path / "bad" / "car(G)").exists()


def test_targz_strip_and_md5(tmp_path, web, monkeypatch):
    data = make_targz({"SPair-71k/Layout/large/test.txt": b"000001-a-b:cat\n", "SPair-71k/JPEGImages/cat/a.jpg": b"x"})
    spec = dl.DATASETS["spair"]
    with_checksum(monkeypatch, "spair", md5=hashlib.md5(data).hexdigest())
    web({spec.resources[0].urls[0]: data})
    root = dl.download("spair", tmp_path, quiet=True)
    assert (root / "Layout" / "large" / "test.txt").read_text() == "000001-a-b:cat\n"
    assert (root / "JPEGImages" / "cat" / "a.jpg").is_file()


def test_resume_from_part_file(tmp_path, web):
    data = willow_zip()
    zip_url, _ = willow_urls()
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "PF-dataset.zip.part").write_bytes(data[:1000])
    fake = web({zip_url: data})
    dl.download("pfwillow", tmp_path, quiet=True)
    assert (zip_url, "bytes=1000-") in fake.requests
    assert (tmp_path / "car(G)" / "img2.png").read_bytes() == bytes([2]) * 3000


def test_resume_when_server_ignores_range(tmp_path, web):
    data = willow_zip()
    zip_url, _ = willow_urls()
    (tmp_path / "PF-dataset.zip.part").write_bytes(b"stale bytes that must not be kept")
    web({zip_url: data}, ranges=False)
    dl.download("pfwillow", tmp_path, quiet=True, keep_archive=True)
    assert (tmp_path / "PF-dataset.zip").read_bytes() == data


def test_interrupted_download_keeps_part(tmp_path, monkeypatch):
    data = willow_zip()

    def short(request, timeout=None):
        return FakeResponse(data[:500], length=len(data))

    monkeypatch.setattr(urllib.request, "urlopen", short)
    with pytest.raises(dl.DownloadError, match="run the command again to resume"):
        dl.download("pfwillow", tmp_path, quiet=True)
    assert (tmp_path / "PF-dataset.zip.part").stat().st_size == 500


def test_offline_error_says_where_to_put_files(tmp_path, web):
    web({}, offline=True)
    with pytest.raises(dl.DownloadError) as err:
        dl.download("pfwillow", tmp_path, quiet=True)
    text = str(err.value)
    assert "offline" in text and "https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip" in text
    assert str(tmp_path / "PF-dataset.zip") in text and str(tmp_path / "car(G)") in text


def test_file_placed_by_hand_is_used_offline(tmp_path, web):
    (tmp_path / "PF-dataset.zip").write_bytes(willow_zip())
    web({}, offline=True)
    root = dl.download("pfwillow", tmp_path, quiet=True)  # the optional CSV only warns
    assert (root / "car(G)" / "img0.png").is_file()


def test_mirror_used_when_first_url_fails(tmp_path, web, monkeypatch):
    data = make_targz({"VOCdevkit/VOC2012/JPEGImages/x.jpg": b"jpg", "VOCdevkit/VOC2012/ImageSets/Main/train.txt": b"x\n"})
    with_checksum(monkeypatch, "voc", md5=hashlib.md5(data).hexdigest())
    first, mirror = dl.DATASETS["voc"].resources[0].urls
    fake = web({mirror: data})
    root = dl.download("voc", tmp_path, quiet=True)
    assert (root / "JPEGImages" / "x.jpg").read_bytes() == b"jpg"
    assert [u for u, _ in fake.requests] == [first, mirror]


def test_unsafe_archive_rejected(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"../evil.txt": b"x"}))
    with pytest.raises(dl.DownloadError, match="unsafe"):
        dl.extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    bad_tar = tmp_path / "bad.tar.gz"
    bad_tar.write_bytes(make_targz({"/etc/evil": b"x"}))
    with pytest.raises(dl.DownloadError, match="unsafe"):
        dl.extract(bad_tar, tmp_path / "out")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    assert dl.extract(tmp_path / "link.tar", tmp_path / "out2") == 0
    assert not (tmp_path / "out2" / "link").exists()


def test_unexpected_layout_reported(tmp_path, web):
    zip_url, _ = willow_urls()
    web({zip_url: make_zip({"other/thing.png": b"x"})})
    with pytest.raises(dl.DownloadError, match=r"car\(G\) does not exist"):
        dl.download("pfwillow", tmp_path, quiet=True)


def test_dataset_error_names_the_download_command(tmp_path, web):
    with pytest.raises(SemcorrError) as err:
        PFWillowDataset(tmp_path / "PF-WILLOW")
    command = str(err.value).split("`")[1]
    assert command == f"python -m semcorr.data.download pfwillow --root {tmp_path / 'PF-WILLOW'}"
    zip_url, _ = willow_urls()
    web({zip_url: make_zip({"PF-dataset/car(G)/a.png": b"x"})})
    assert dl.main(command.split()[3:] + ["--quiet"]) == 0
    assert (tmp_path / "PF-WILLOW" / "car(G)" / "a.png").is_file()


def test_cli_help_lists_datasets(capsys):
    with pytest.raises(SystemExit) as exc:
        dl.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("pfpascal", "pfwillow", "spair", "tss", "caltech", "cub", "voc"):
        assert name in out
    assert set(dl.DATASETS) == {"pfpascal", "pfwillow", "spair", "tss", "caltech", "cub", "voc"}


def test_cli_unknown_name(capsys):
    assert dl.main(["imagenet"]) == 2
    err = capsys.readouterr().err
    assert "Unknown dataset 'imagenet'" in err and "pfpascal, pfwillow, spair, tss, caltech, cub, voc" in err
    with pytest.raises(ConfigError, match="pfwillow"):
        dl.download("nope")


def test_cli_error_exit_code(tmp_path, web, capsys):
    web({}, offline=True)
    assert dl.main(["spair", "--root", str(tmp_path), "--quiet"]) == 1
    assert "error: Cannot download SPair-71k.tar.gz" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "semcorr.data.download", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and "voc" in out.stdout and "--root" in out.stdout


def test_caltech_post_step(tmp_path, web, monkeypatch):
    objects = make_targz({"101_ObjectCategories/Faces/image_0001.jpg": b"jpg"})
    annots = io.BytesIO()
    with tarfile.open(fileobj=annots, mode="w") as tf:
        info = tarfile.TarInfo("Annotations/Faces_2/annotation_0001.mat")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"mat"))
    outer = make_zip({"caltech-101/101_ObjectCategories.tar.gz": objects, "caltech-101/Annotations.tar": annots.getvalue()})
    with_checksum(monkeypatch, "caltech", md5=hashlib.md5(outer).hexdigest())
    zip_url, csv_url = (r.urls[0] for r in dl.DATASETS["caltech"].resources)
    web({zip_url: outer, csv_url: b"source_image,target_image,class\n"})
    root = dl.download("caltech", tmp_path, quiet=True)
    assert (root / "test_pairs_caltech_with_category.csv").is_file()
    assert (root / "101_ObjectCategories" / "Faces" / "image_0001.jpg").is_file()
    assert (root / "Annotations" / "Faces" / "annotation_0001.mat").is_file()
    assert not (root / "Annotations.tar").exists() and not (root / "101_ObjectCategories.tar.gz").exists()
