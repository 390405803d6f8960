"""Streamlit glue for data that is not shipped: an opt-in download (CIFAR-10, Oxford-IIIT Pets) fetched when a
person presses its button, with a progress bar, and a zip of your own images kept for runs.

Nothing here touches the network unless the button is pressed; the fetching, checks and sentences are
`explorer.training.downloads` and `explorer.training.datasets`.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ..training import datasets, downloads
from ..training.errors import DatasetError
from .format import fmt_int, md_escape
from .widgets import upload_mb

__all__ = ["dataset_download_panel", "zip_upload_panel"]

K = "w.data."  # widget keys
_DOWNLOAD_ERROR = "data.download_error."  # + data set name: the last failure's sentence
_ZIP = "data.zip"  # (file id, data set name or None, the refusal or None) of the last zip seen


def _fetch(dataset: datasets.Dataset) -> str | None:
    """Download ``dataset`` with a progress bar (and, for Pets, resize its photos once); the failure's sentence,
    or None."""
    title = dataset.title
    bar = st.progress(0.0, text=f"Downloading {title}…")
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        if percent == shown[0]:  # one update per percent, not per chunk
            return
        shown[0] = percent
        if done >= total:
            bar.progress(1.0, text=f"Checking and unpacking {title}…")
        else:
            bar.progress(percent / 100, text=f"Downloading {title}… {done / 2**20:,.1f} of {total / 2**20:,.1f} MB")

    def resizing(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Resizing the photos once: {fmt_int(done)} of "
                                                          f"{fmt_int(total)}")

    try:
        downloads.fetch(dataset.download, progress)
        datasets.prepare(dataset.name, resizing)
    except DatasetError as e:
        bar.empty()
        return str(e)
    bar.progress(1.0, text=f"{title} is ready.")
    return None


def dataset_download_panel(name: str) -> bool:
    """True when the data set ``name`` is there to train on. Otherwise its size, source and the data folder, and
    a "Download <title> (<size> MB)" button that fetches it with a progress bar and reruns the page; a failure is
    a sentence (kept until the next attempt)."""
    try:
        dataset = datasets.get(name)
    except DatasetError as e:
        st.error(md_escape(e), icon=":material/error:")
        return False
    if dataset.available:
        return True
    d = dataset.download
    if d is None:
        st.error(md_escape(dataset.missing()), icon=":material/error:")
        return False
    folder = downloads.data_folder()
    files = ", ".join(f"{a.filename}: {a.megabytes:,.0f} MB" for a in d.archives)
    st.markdown(md_escape(f"{dataset.title} is an opt-in download of {d.megabytes:,.0f} MB from {d.hosts} "
                          f"({files}), kept in {folder} (set EXPLORER_DATA to keep it elsewhere)."))
    st.caption(md_escape(dataset.source + "."))
    error_key = _DOWNLOAD_ERROR + dataset.name
    if st.button(f"Download {dataset.title} ({d.megabytes:,.0f} MB)", icon=":material/download:",
                 key=K + "download." + dataset.name,
                 help="Downloaded once, md5-checked and unpacked into the data folder; the only thing this page "
                      "downloads."):
        st.session_state[error_key] = _fetch(dataset)
        if st.session_state[error_key] is None and dataset.available:
            st.rerun()
    if st.session_state.get(error_key):
        st.error(md_escape(st.session_state[error_key]), icon=":material/cloud_off:")
    else:
        st.caption(md_escape(f"Offline? Put {' and '.join(a.filename for a in d.archives)} in {folder} by hand "
                             "(from " + ", ".join(a.url for a in d.archives) + ") and reload the page."))
    return False


def zip_upload_panel() -> str | None:
    """A zip of one folder of images per class: checked (a refusal is a sentence), kept in the data folder, its
    classes and image counts shown; returns its data set name (``"zip:…"``, usable by runs) or None."""
    upload = st.file_uploader("Your own data: a .zip with one folder of images per class", type=["zip"],
                              key=K + "zip", max_upload_size=upload_mb("zip"),
                              help="cats/1.png, cats/2.jpg, dogs/1.png, …: each folder is a class, at least 3 images "
                                   f"each, at most {fmt_int(datasets.ZipLimits().max_files)} files; resized to "
                                   f"{datasets.ZipLimits().image_size}×{datasets.ZipLimits().image_size}.")
    if upload is None:
        return None
    seen = st.session_state.get(_ZIP)
    if seen is None or seen[0] != upload.file_id:
        try:
            seen = (upload.file_id, datasets.store_upload(upload.getvalue(), title=upload.name), None)
        except DatasetError as e:  # kept without the exception: its traceback would hold the bytes
            seen = (upload.file_id, None, str(e))
        st.session_state[_ZIP] = seen
    _, name, refusal = seen
    if refusal:
        st.error(md_escape(refusal), icon=":material/error:")
        return None
    try:
        dataset = datasets.get(name)
        counts = dataset.class_counts()
    except DatasetError as e:  # the kept zip was removed from the data folder since
        st.error(md_escape(e), icon=":material/error:")
        return None
    total = sum(sum(split.values()) for split in counts.values())
    st.success(md_escape(f"{dataset.title}: {fmt_int(total)} images in {len(dataset.classes)} classes, as the data "
                         f"set {name}."), icon=":material/check_circle:")
    table = pd.DataFrame(counts).rename(columns={"validation": "val."})
    table.insert(0, "images", table.sum(axis=1))
    st.dataframe(table, width="stretch")
    return name
