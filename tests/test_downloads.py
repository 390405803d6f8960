"""Opt-in data set downloads and kept zips: a fake CIFAR-10 archive served from 127.0.0.1 (never the internet),
fake folders placed by hand, the sentences of every failure, the two Streamlit panels."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import assert_clean
from explorer.training import datasets, downloads
from test_training import _good_entries, _png
from test_training import _zip as _zip_of

CIFAR_TRAIN_PER_CLASS = 10  # two per class in each of the five batches
CIFAR_TEST_PER_CLASS = 3


# -- fakes -------------------------------------------------------------------------------------------------------
def _cifar_value(label: int) -> int:
    return 20 * label + 5  # every pixel of an image of class c: which class an image came from can be read back


def _cifar_batch(per_class: int) -> bytes:
    labels = [c for c in range(10) for _ in range(per_class)]
    data = np.stack([np.full(3072, _cifar_value(c), dtype=np.uint8) for c in labels])
    return pickle.dumps({"batch_label": "fake", "labels": labels, "data": data, "filenames": []})


def _cifar_files() -> dict[str, bytes]:
    files = {f"data_batch_{b}": _cifar_batch(CIFAR_TRAIN_PER_CLASS // 5) for b in range(1, 6)}
    files["test_batch"] = _cifar_batch(CIFAR_TEST_PER_CLASS)
    files["batches.meta"] = pickle.dumps({"label_names": list(datasets.CIFAR10_CLASSES), "num_vis": 3072})
    return files


def _tar_gz(files: dict[str, bytes], prefix: str = "cifar-10-batches-py/", links: dict[str, str] = {}) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(prefix + name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


@functools.cache
def _cifar_archive() -> bytes:
    return _tar_gz(_cifar_files())


def _declare_md5(monkeypatch, md5: str) -> datasets.Dataset:
    """The registered CIFAR-10 with its archive's md5 replaced (the fake archive's), as loading and pages see it."""
    real = datasets.get("cifar10")
    archive = dataclasses.replace(real.download.archives[0], md5=md5)
    fake = dataclasses.replace(real, download=dataclasses.replace(real.download, archives=(archive,)))
    monkeypatch.setitem(datasets._REGISTRY, "cifar10", fake)
    return fake


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@dataclasses.dataclass
class Mirror:
    folder: Path  # what it serves
    url: str


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("EXPLORER_DATA", str(folder))
    monkeypatch.delenv("EXPLORER_DATA_MIRROR", raising=False)
    return folder


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A web server on 127.0.0.1 for the fake archives, set as the download mirror."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    m = Mirror(served, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("EXPLORER_DATA_MIRROR", m.url)
    yield m
    server.shutdown()
    server.server_close()


@pytest.fixture
def unreachable(monkeypatch) -> str:
    """A mirror on a port where nothing listens: the connection is refused, as when offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("EXPLORER_DATA_MIRROR", url)
    return url


def _leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a download left in the data folder."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".unpacking"))


def _contents(folder: Path) -> list[str]:
    """The data folder's entries, without the lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def _check_fake_cifar(ds: datasets.Dataset) -> None:
    s = ds.splits()
    assert s.sizes() == {"train": 90, "validation": 10, "test": 30}  # 45k / 5k / 10k in the real one
    assert tuple(s.x_train.shape[1:]) == (3, 32, 32) and ds.num_classes == 10
    assert ds.class_counts()["validation"] == dict.fromkeys(datasets.CIFAR10_CLASSES, 1)
    assert ds.class_counts()["test"] == dict.fromkeys(datasets.CIFAR10_CLASSES, 3)
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        pixels = ds.unnormalise(x) * 255  # each image still carries its own class's value
        expected = np.array([_cifar_value(int(c)) for c in y], dtype=np.float32)
        assert np.allclose(pixels.amin(dim=(1, 2, 3)).numpy(), expected, atol=0.01)
        assert np.allclose(pixels.amax(dim=(1, 2, 3)).numpy(), expected, atol=0.01)


OFFER = ("download cifar-10-python.tar.gz yourself (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) and "
         "put it in {data}, or choose an offline data set.")


# -- CIFAR-10 ----------------------------------------------------------------------------------------------------
def test_download_reports_progress_checks_md5_and_loads(data, mirror, monkeypatch):
    archive = _cifar_archive()
    (mirror.folder / "cifar-10-python.tar.gz").write_bytes(archive)
    ds = _declare_md5(monkeypatch, hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(downloads, "CHUNK", 1024)  # a few chunks from a small archive
    assert not ds.available and "cifar10" not in datasets.names()
    calls = []
    downloads.fetch(ds.download, lambda done, total: calls.append((done, total)))
    assert len(calls) > 3 and calls[0] == (0, len(archive)) and calls[-1] == (len(archive), len(archive))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {len(archive)}
    assert ds.available and "cifar10" in datasets.names()
    assert sorted(p.name for p in (data / "cifar-10-batches-py").iterdir()) == sorted(_cifar_files())
    assert _leftovers(data) == [] and _contents(data) == ["cifar-10-batches-py"]  # the archive is not kept
    _check_fake_cifar(ds)


def test_wrong_md5_keeps_nothing(data, mirror):
    (mirror.folder / "cifar-10-python.tar.gz").write_bytes(_cifar_archive())  # the real md5 is declared
    ds = datasets.get("cifar10")
    with pytest.raises(datasets.DatasetError) as e:
        downloads.fetch(ds.download)
    got = hashlib.md5(_cifar_archive()).hexdigest()
    assert str(e.value) == (f"cifar-10-python.tar.gz from 127.0.0.1 does not match its checksum (md5 {got} instead "
                            "of c58f30108f718f92721af3b95e74349a); nothing was kept: try again, or "
                            + OFFER.format(data=data))
    assert _contents(data) == [] and not ds.available


def test_offline_says_what_to_do(data, unreachable):
    ds = datasets.get("cifar10")
    with pytest.raises(datasets.DatasetError) as e:
        downloads.fetch(ds.download)
    assert str(e.value) == "Could not reach 127.0.0.1 (offline?); " + OFFER.format(data=data)
    with pytest.raises(datasets.DatasetError) as e:  # training on it says where it should be
        ds.splits()
    assert str(e.value).startswith(f"CIFAR-10 is an opt-in download (163 MB from www.cs.toronto.edu) that is not in "
                                   f"{data} yet; download it on the Train page, or put cifar-10-python.tar.gz there "
                                   "yourself, or choose one of the offline data sets: digits, ")
    assert _contents(data) == []


def test_refused_download_and_full_disk(data, mirror, monkeypatch):
    ds = datasets.get("cifar10")
    monkeypatch.setenv("EXPLORER_DATA_MIRROR", mirror.url + "/nothing-here")
    with pytest.raises(datasets.DatasetError) as e:
        downloads.fetch(ds.download)
    assert str(e.value) == ("127.0.0.1 refused the download of cifar-10-python.tar.gz (HTTP 404 File not found); "
                            + OFFER.format(data=data))
    usage = downloads.shutil.disk_usage(data)
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda p: usage._replace(free=100 * 2**20))
    with pytest.raises(datasets.DatasetError) as e:
        downloads.fetch(ds.download)
    assert str(e.value) == (f"The disk holding {data} has 100 MB free and the download needs about 358 MB; free "
                            "some space, or set EXPLORER_DATA to a folder on a larger disk.")
    assert _contents(data) == []


def test_prefilled_folders_load_offline(data, unreachable, monkeypatch):
    ds = _fresh("cifar10", monkeypatch)
    folder = data / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, content in _cifar_files().items():  # the unpacked files, placed by hand
        (folder / name).write_bytes(content)
    assert ds.available and "cifar10" in datasets.names()
    _check_fake_cifar(ds)


def test_an_archive_placed_by_hand_is_checked_and_unpacked_offline(data, unreachable, monkeypatch):
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(_cifar_archive())
    assert datasets.get("cifar10").available  # there, to be checked on first use
    with pytest.raises(datasets.DatasetError) as e:  # the real md5 is declared
        _fresh("cifar10", monkeypatch).splits()
    assert str(e.value) == (f"The cifar-10-python.tar.gz in {data} does not match its checksum (md5 "
                            f"{hashlib.md5(_cifar_archive()).hexdigest()} instead of "
                            "c58f30108f718f92721af3b95e74349a); it is damaged or another file: delete it and download "
                            "it again.")
    ds = _declare_md5(monkeypatch, hashlib.md5(_cifar_archive()).hexdigest())
    _check_fake_cifar(ds)
    assert _contents(data) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # a file placed by hand is kept


def test_an_archive_that_writes_outside_is_refused(data, mirror, monkeypatch):
    archive = _tar_gz({"data_batch_1": b"x"}, links={"evil": "/etc/passwd"})
    (mirror.folder / "cifar-10-python.tar.gz").write_bytes(archive)
    ds = _declare_md5(monkeypatch, hashlib.md5(archive).hexdigest())
    with pytest.raises(datasets.DatasetError) as e:
        downloads.fetch(ds.download)
    assert str(e.value) == ("cifar-10-python.tar.gz is refused because the entry 'cifar-10-batches-py/evil' is a "
                            "link or a device, not a file; download it again from "
                            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.")
    dotdot = _tar_gz({"../../escaped": b"x"}, prefix="")
    (mirror.folder / "cifar-10-python.tar.gz").write_bytes(dotdot)
    ds = _declare_md5(monkeypatch, hashlib.md5(dotdot).hexdigest())
    with pytest.raises(datasets.DatasetError, match="points outside the folder with '..'"):
        downloads.fetch(ds.download)
    assert _contents(data) == [] and _leftovers(data) == [] and not (data.parent / "escaped").exists()


# -- Oxford-IIIT Pets --------------------------------------------------------------------------------------------
# The breeds as the annotations spell them (cats capitalised, dogs not), in the order of their class ids.
PETS_IDS = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
            "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
            "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
            "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug",
            "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese",
            "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier"]


def _pets_value(label: int) -> int:
    return 6 * label + 10


def _fake_pets(data: Path, trainval: int = 3, test: int = 1) -> Path:
    base = data / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    lines = {"trainval": [], "test": []}
    for label, breed in enumerate(PETS_IDS):
        species = 1 if breed[0].isupper() else 2
        for i in range(trainval + test):
            image_id = f"{breed}_{i + 1}"
            Image.new("RGB", (40, 30), (_pets_value(label),) * 3).save(base / "images" / f"{image_id}.jpg",
                                                                         quality=95)
            lines["trainval" if i < trainval else "test"].append(f"{image_id} {label + 1} {species} 1")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return base


def _fresh(name: str, monkeypatch) -> datasets.Dataset:
    """The registered data set as a new object, so its splits are loaded again (they are cached per object)."""
    ds = dataclasses.replace(datasets.get(name))
    monkeypatch.setitem(datasets._REGISTRY, name, ds)
    return ds


def test_prefilled_pets_folder_loads_offline_and_keeps_the_resized_photos(data, unreachable, monkeypatch):
    from torchvision.datasets import OxfordIIITPet

    assert not datasets.get("oxford_pets").available
    base = _fake_pets(data)
    ds = _fresh("oxford_pets", monkeypatch)
    assert ds.available and "oxford_pets" in datasets.names()
    assert ds.title == "Oxford-IIIT Pets, 37 breeds at 96×96" and ds.input_shape == (3, 96, 96)
    assert ds.classes == tuple(OxfordIIITPet(str(data)).classes) and ds.num_classes == 37  # torchvision's names
    s = ds.splits()
    assert s.sizes() == {"train": 74, "validation": 37, "test": 37}
    assert ds.class_counts()["test"] == dict.fromkeys(ds.classes, 1)
    for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)):
        means = (ds.unnormalise(x) * 255).mean(dim=(1, 2, 3)).numpy()
        assert np.allclose(means, [_pets_value(int(c)) for c in y], atol=2.0)  # JPEG: within a level or two
    assert (base / "explorer-96px.npz").is_file() and _leftovers(data) == []
    (base / "images" / "Abyssinian_1.jpg").write_bytes(b"not a photo")  # read from the kept pixels, not decoded
    assert _fresh("oxford_pets", monkeypatch).splits().sizes() == s.sizes()
    trainval = (base / "annotations" / "trainval.txt").read_text().splitlines()
    (base / "annotations" / "trainval.txt").write_text("\n".join(trainval[:-1] + [""]))  # new lists: decoded again
    with pytest.raises(datasets.DatasetError) as e:
        _fresh("oxford_pets", monkeypatch).splits()
    assert str(e.value) == (f"The photo Abyssinian_1.jpg in {base / 'images'} is missing, damaged or not an image; "
                            f"delete {base} and download the data set again.")


def test_pets_needs_both_archives(data, unreachable):
    ds = datasets.get("oxford_pets")
    assert [a.filename for a in ds.download.archives] == ["images.tar.gz", "annotations.tar.gz"]
    assert [a.md5 for a in ds.download.archives] == ["5c4f3ee8e5d25df40f4fd59a7f44e54c",
                                                      "95a8c909bbe2e81eed6a22bccdf3f68f"]  # torchvision's
    (data / "oxford-iiit-pet" / "images").mkdir(parents=True)  # the photos without the annotations
    assert not ds.available
    with pytest.raises(datasets.DatasetError, match="put images.tar.gz and annotations.tar.gz there yourself"):
        ds.splits()


# -- your own zip, kept for runs ---------------------------------------------------------------------------------
@functools.cache
def _zip() -> bytes:
    """Two shades, six 12×12 images each (the from_zip tests' own)."""
    return _zip_of(_good_entries())


def test_a_stored_zip_is_found_again_by_name(data, monkeypatch):
    from explorer.training import TrainConfig

    name = datasets.store_upload(_zip(), title="mine.zip")
    key = hashlib.sha256(_zip()).hexdigest()[:16]
    assert name == f"zip:{key}" and (data / "uploads" / f"{key}.zip").read_bytes() == _zip()
    assert name not in datasets.names() and datasets.from_zip(_zip()).name == name
    monkeypatch.setattr(datasets, "_uploads", {})  # as a new process: nothing decoded yet
    ds = datasets.get(name)
    assert (ds.name, ds.title, ds.classes, ds.input_shape) == (name, "mine.zip", ("dark", "light"), (1, 64, 64))
    assert sum(ds.splits().sizes().values()) == 12 and datasets.get(name) is ds
    assert TrainConfig(dataset=name).to_dict()["dataset"] == name


@pytest.mark.slow  # a fresh interpreter imports torch: about 10 s on two busy cores
def test_a_stored_zip_is_found_in_a_spawned_process(data):
    name = datasets.store_upload(_zip(), title="mine.zip")
    code = ("from explorer.training import datasets; d = datasets.get(%r); "
            "print(d.title, d.classes, d.splits().sizes())" % name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "mine.zip ('dark', 'light') {'train': 8, 'validation': 2, 'test': 2}", out.stderr


@pytest.mark.training  # a run in its own worker process, as the Train page starts one
def test_a_run_in_its_own_process_trains_on_a_stored_zip(data, tmp_path):
    from explorer.training import TrainConfig
    from explorer.training.jobs import RunManager

    name = datasets.store_upload(_zip(), title="mine.zip")
    manager = RunManager(tmp_path / "runs", max_concurrent=1)
    run_id = manager.submit(TrainConfig(network="lenet5", dataset=name, epochs=2, lr=1e-2, threads=1))
    status = manager.wait(run_id, 120)
    assert status["state"] == "finished", status.get("message")
    result = manager.result(run_id)
    assert result["dataset"] == name and result["test"]["count"] == 2


def test_stored_zip_refusals(data, monkeypatch):
    with pytest.raises(datasets.DatasetError, match=r"^mine\.zip is not a zip archive; "):
        datasets.store_upload(b"not a zip", title="mine.zip")
    assert _contents(data) == []
    missing = "zip:" + "0" * 16
    with pytest.raises(datasets.DatasetError) as e:
        datasets.get(missing)
    assert str(e.value) == (f"The uploaded data set {missing} is not in {data / 'uploads'} (deleted, or uploaded "
                            "while EXPLORER_DATA pointed elsewhere); upload its zip again.")
    with pytest.raises(datasets.DatasetError, match=r"^'zip:abc' is not the name of an uploaded data set"):
        datasets.get("zip:abc")
    name = datasets.store_upload(_zip())
    other = io.BytesIO(_zip())
    with zipfile.ZipFile(other, "a") as z:
        z.writestr("dark/extra.png", _png(40))
    (data / "uploads" / f"{name[4:]}.zip").write_bytes(other.getvalue())
    monkeypatch.setattr(datasets, "_uploads", {})
    with pytest.raises(datasets.DatasetError, match="was changed since it was uploaded; upload its zip again"):
        datasets.get(name)


# -- the panels --------------------------------------------------------------------------------------------------
def _download_app():
    import streamlit as st

    from explorer.ui.downloads import dataset_download_panel

    if dataset_download_panel("cifar10"):
        st.write("CIFAR-10 is ready to train on.")


def _plain(text: str) -> str:
    return text.replace("\\", "")  # md_escape's backslashes


def test_download_panel_downloads_with_progress_then_is_ready(data, mirror, monkeypatch):
    archive = _cifar_archive()
    (mirror.folder / "cifar-10-python.tar.gz").write_bytes(archive)
    _declare_md5(monkeypatch, hashlib.md5(archive).hexdigest())
    at = AppTest.from_function(_download_app, default_timeout=60).run()
    assert_clean(at)
    assert [b.label for b in at.button] == ["Download CIFAR-10 (163 MB)"]
    assert _plain(at.markdown[0].value) == (f"CIFAR-10 is an opt-in download of 163 MB from www.cs.toronto.edu "
                                            f"(cifar-10-python.tar.gz: 163 MB), kept in {data} (set EXPLORER_DATA "
                                            "to keep it elsewhere).")
    at.button[0].click().run()
    assert_clean(at)
    assert not at.error and not at.button
    assert [m.value for m in at.markdown] == ["CIFAR-10 is ready to train on."]


def test_download_panel_offline_is_a_sentence(data, unreachable):
    at = AppTest.from_function(_download_app, default_timeout=60).run()
    at.button[0].click().run()
    assert_clean(at)
    assert [_plain(e.value) for e in at.error] == ["Could not reach 127.0.0.1 (offline?); " + OFFER.format(data=data)]
    assert [b.label for b in at.button] == ["Download CIFAR-10 (163 MB)"]  # to try again


def _zip_app():
    import streamlit as st

    from explorer.ui.downloads import zip_upload_panel

    st.write(f"Data set: {zip_upload_panel()}")


def test_zip_panel_shows_classes_and_the_name(data):
    at = AppTest.from_function(_zip_app, default_timeout=60).run()
    assert at.markdown[-1].value == "Data set: None"
    at.file_uploader[0].set_value(("mine.zip", _zip(), "application/zip")).run()
    assert_clean(at)
    name = "zip:" + hashlib.sha256(_zip()).hexdigest()[:16]
    assert _plain(at.success[0].value) == f"mine.zip: 12 images in 2 classes, as the data set {name}."
    table = at.dataframe[0].value
    assert table.to_dict("index") == {"dark": {"images": 6, "train": 4, "val.": 1, "test": 1},
                                      "light": {"images": 6, "train": 4, "val.": 1, "test": 1}}
    assert at.markdown[-1].value == f"Data set: {name}"
    at.file_uploader[0].set_value(("broken.zip", b"PK nothing", "application/zip")).run()
    assert_clean(at)
    assert [_plain(e.value) for e in at.error] == ["broken.zip is not a zip archive; upload a .zip with one folder "
                                                   "of images per class."]
    assert at.markdown[-1].value == "Data set: None"


def _pets_app():
    from explorer.ui.downloads import dataset_download_panel

    dataset_download_panel("oxford_pets")


def test_pets_panel_names_both_archives(data):
    at = AppTest.from_function(_pets_app, default_timeout=60).run()
    assert_clean(at)
    assert [b.label for b in at.button] == ["Download Oxford-IIIT Pets, 37 breeds at 96×96 (774 MB)"]
    assert _plain(at.markdown[0].value) == ("Oxford-IIIT Pets, 37 breeds at 96×96 is an opt-in download of 774 MB "
                                            "from www.robots.ox.ac.uk (images.tar.gz: 755 MB, annotations.tar.gz: "
                                            f"18 MB), kept in {data} (set EXPLORER_DATA to keep it elsewhere).")
    assert _plain(at.caption[-1].value) == (f"Offline? Put images.tar.gz and annotations.tar.gz in {data} by hand "
                                            "(from https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz, "
                                            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz) and "
                                            "reload the page.")
