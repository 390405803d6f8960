"""Opening a page of the whole app in Streamlit's AppTest, as a link would: shared by the page tests."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from conftest import assert_clean

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(page: str, **params) -> AppTest:
    """The app opened with the link's query ``params`` (read on the first run), then switched to
    ``app_pages/<page>.py``, checked clean. The timeout covers importing torch and building a model cold."""
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert_clean(at)
    return at
