"""Teacher: every run of every session on this server (the queue in the order it will start, the slots in use, the
quotas), with Stop on any run; behind the teacher password of the server's config.

The password is ``teacher_password`` in .streamlit/secrets.toml, or ``$EXPLORER_TEACHER_PASSWORD``; the session
keeps only that it is unlocked. Sessions are shown by an anonymous tag (`jobs.owner_tag`), never by the id that
steers their runs.
"""
import os

import pandas as pd
import streamlit as st

from explorer import ui
from explorer.training import TrainingError
from explorer.training.jobs import TEACHER_PASSWORD_ENV, owner_tag, password_matches, wait_phrase
from explorer.ui import training

esc = ui.md_escape
UNLOCKED = "teacher.unlocked"


def configured_password() -> str | None:
    try:
        value = st.secrets.get("teacher_password")
    except Exception:  # no secrets.toml on this server
        value = None
    return value or os.environ.get(TEACHER_PASSWORD_ENV) or None


st.header("Teacher", anchor=False)
password = configured_password()
if password is None:
    st.info(f"No teacher password is set on this server; set teacher_password in .streamlit/secrets.toml, or the "
            f"environment variable {TEACHER_PASSWORD_ENV}, and restart the explorer.", icon=":material/lock:")
    st.stop()
if not st.session_state.get(UNLOCKED):
    given = st.text_input("Teacher password", type="password", key="w.teacher.password")
    if given:
        if password_matches(given, password):
            st.session_state[UNLOCKED] = True
            del st.session_state["w.teacher.password"]
            st.rerun()
        st.error("That is not the teacher password; type it again.", icon=":material/lock:")
    st.stop()

m = training.manager()
m.poll()
runs = m.list()
order = m.queue_order()
st.markdown(f"**{len(m.running())} of {m.max_concurrent} slots in use** · {len(order)} queued · quotas: "
            f"{m.max_per_owner} runs queued or running per session, {m.max_running_per_owner} running at once")
if not runs:
    st.caption("No runs on this server yet.")
    st.stop()
rows = []
for s in runs:
    last = s.get("last_epoch") or {}
    test = s.get("test") or {}
    score = training.score_phrase(test)
    metric = (f"test {score}" if score else
              f"val. mIoU {last['val_miou']:.1%}" if "val_miou" in last else
              f"val. {last['val_accuracy']:.1%}" if "val_accuracy" in last else
              f"val. MAE {last['val_mae']:.3g}" if "val_mae" in last else "")
    position = s.get("queue_position")
    rows.append({"run": s["run_id"], "session": owner_tag(s.get("owner")), "state": s.get("state"),
                 "queue position": str(position) if position else "",
                 "expected start": wait_phrase(s["expected_start"]) if s.get("queue_position") else "",
                 "epoch": f"{s.get('epoch') or 0} of {s.get('epochs') or '?'}", "metric": metric,
                 "sharers": ", ".join(owner_tag(p) for p in s.get("sharers", ()))})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
if order:
    st.caption(esc("The queue, in the order it will start: " + ", ".join(order) + "."))
active = [s["run_id"] for s in runs if s.get("state") in ("queued", "running", "paused", "interrupted")]
if active:
    chosen = st.selectbox("Run to stop", active, key="w.teacher.run")
    if st.button("Stop it for every session", key="w.teacher.stop", icon=":material/stop:"):
        try:
            st.success(esc(m.stop(chosen, teacher=True)), icon=":material/stop:")
        except TrainingError as e:
            st.error(esc(str(e)), icon=":material/error:")
