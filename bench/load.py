"""Issue 6: the app under load. N browser sessions at once, each with a composition of its own, against one server.

    .venv/bin/python bench/load.py                       # N = 10, 30, 60, a fresh server for each N
    .venv/bin/python bench/load.py --quick               # N = 5 only
    .venv/bin/python bench/load.py --sessions 20 --concurrency 2 --compositions mixed custom --out /tmp/load.md

For each N: start `streamlit run app.py` on a free loopback port (a fresh server per N, so one N's memory is not
inherited by the next), run one warm-up session alone (models, caches and imports loaded), read the server's RSS
("before"), then open N browser contexts in ONE headless Chromium (Debian's /usr/bin/chromium, Playwright's async
API) and drive N sessions. Session i:

  compose         opens /compose?spec=<its composition>&model=<its catalog model>&input=<its side> and waits for
                  the "Parameters" metric to show its own count (`compose.analyze_spec(spec).params`; num_classes
                  = 10 + i; --compositions mixed: even sessions a custom block stack, odd ones a resnet18
                  backbone; custom: every session a custom stack).
  layers          clicks "Layers" in the sidebar (same Streamlit session) and waits for the catalog model's
                  "Parameters" and its own "Activations per image" (unique: the side is 96 + 4·i px).
  predict_open    opens /predict?source=lenet5_digits&spec=<its composition> (a new Streamlit session in the same
                  tab) and waits for "… held-out digits classified correctly" and, in the sidebar, the parameter
                  count of its composition.
  predict_upload  uploads session_XXX.png (a held-out digit of label i mod 10 at a size of its own) and waits for
                  that image's verdict "**label** · p%" (the expected label is checked in the bench process first:
                  LeNet-5 reads that very file right).
  explain_open    clicks "Explain" in the sidebar and waits for the Grad-CAM ("The map alone").
  explain_select  picks "uploaded: session_XXX.png" in the Image box, waits for "The input: session_XXX.png",
                  then "Explain the class" must read "<label> (p%) — predicted" and the map "Grad-CAM for <label>".

A step's latency runs from its action (goto, click, upload, option) until the run is idle (Streamlit's status
widget gone) and the expected element shows with the expected value; the wait for a worker slot is not in it (it
is reported separately). Outcomes of a step:
  error    an exception element, "Traceback" on the page, a timeout, a missing element, or a value that is
           neither this session's nor another's (e.g. a stale class) — with its reason, grouped in the report;
  wrong    a value that is exactly another session's: its parameter count, activations, file name, verdict
           "label · p%" or Explain class text (a bare digit label is shared by many sessions, so it never counts
           as another session's on its own);
  skipped  a step it needs failed (Layers needs Compose; each Predict / Explain step the one before; the
           Predict chain does not need Compose), so one failure does not hide the other chain's results.

Concurrency. All N contexts are created before the first step and closed only after every session has finished
(or the run was stopped); every session opens its first page, and none goes on until all N have (a gate), so N
Streamlit sessions are open at the same time (the peak of the server's `active_sessions` gauge is reported).
The steps go through a pool of --concurrency slots (default 4, two per core here; 0 = no cap); a free slot goes
to the waiting session that is furthest along, so after the gate the sessions run to their end one after another
and a run stopped by its deadline still has whole sessions to show. Why a cap: on this VM one Chromium renders
all N pages with the same 2 cores the server computes with, and N steps at once would time Chromium's queue more
than the server; the report splits the CPU time between server, browser, bench and the rest of the (shared)
machine.

Bounds: each step has --step-timeout, each session --session-timeout of active time (queueing not counted), each
N an overall --deadline (default 120 + 20·N s); and an N stops early if the machine's available memory falls
below --min-free-gib. Sessions cut off that way are reported as "unfinished" (this machine could not drive N),
not as errors. The contexts, the browser and the server are closed / terminated in `finally` blocks, also on an
exception, Ctrl-C or SIGTERM.

Memory: the server's RSS (psutil if installed, else /proc/<pid>/status VmRSS, the server and its child
processes) after the warm-up ("before"), after the N sessions with their contexts still open ("after"), and
(after − before) / N per extra session (target ≤ 15 MiB). Each tab holds two Streamlit sessions over its life:
the goto to Predict disconnects the Compose/Layers one, which Streamlit keeps for reconnection (2 minutes, at most
128), so "after" includes those too.

Written to bench/results/load.md (--out), after every N: the machine and the command, the table, per-step
latencies, CPU split, errors grouped by reason, and the server log's tracebacks / warnings (the logs themselves
stay in --log-dir).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import heapq
import io
import itertools
import math
import os
import platform
import re
import shlex
import signal
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.server import CHROMIUM, CHROMIUM_ARGS, PAGE_STATE_JS, Server  # noqa: E402

VIEWPORT = {"width": 1280, "height": 900}
DEFAULT_SESSIONS = (10, 30, 60)
QUICK_SESSIONS = (5,)
STEPS = ("compose", "layers", "predict_open", "predict_upload", "explain_open", "explain_select")
DEPENDS = {"compose": None, "layers": "compose", "predict_open": None, "predict_upload": "predict_open",
           "explain_open": "predict_upload", "explain_select": "explain_open"}  # the step each one needs
LAYERS_MODELS = ("resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5")
CUSTOM_STAGES = [{"block": "conv", "repeats": 1, "width": 16, "stride": 2},
                 {"block": "residual", "repeats": 1, "width": 32, "stride": 2},
                 {"block": "separable", "repeats": 1, "width": 64, "stride": 2}]
MIXES = {  # --compositions: what the sessions build on Compose
    "mixed": "even sessions a custom block stack (3×64×64), odd ones a resnet18 backbone (3×128×128); "
             "classification head with num_classes = 10 + i",
    "custom": "every session a custom block stack (3×64×64), num_classes = 10 + i: no catalog backbone, so no "
              "torchvision feature extractor is traced while the sessions run",
}
MiB = 2 ** 20
POLL_S = 0.2

# One look at the page: everything the checks need, read in one round trip (textContent: no layout forced).
PROBE_JS = r"""() => {""" + PAGE_STATE_JS + r"""
  const side = document.querySelector('[data-testid="stSidebar"]');
  let sidebarParams = null;
  if (side) for (const md of q('[data-testid="stMarkdownContainer"]', side)) {
    const m = md.textContent.match(/^\s*Parameters\s*([\d,]+)/);
    if (m) { sidebarParams = m[1]; break; }   // the first one is the composition's, the second the Layers model's
  }
  const verdicts = q('[data-testid="stMarkdownContainer"]', main).map(e => e.textContent.trim())
                   .filter(t => /^\S+ · [\d.]+%/.test(t));
  const selects = {};
  for (const s of q('[data-testid="stSelectbox"]')) {
    const l = s.querySelector('[data-testid="stWidgetLabel"]'), i = s.querySelector('input');
    if (l && i) selects[l.textContent.trim()] = i.value;
  }
  return {
    ...pageState(),
    heldOut: body.includes('held-out digits classified correctly'),
    sidebarParams, verdicts, selects,
    captions: q('[data-testid="stImageCaption"]', main).map(e => e.textContent.trim()),
  };
}"""


# -- what each session does and expects --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SessionPlan:
    index: int
    spec_url: str
    spec_summary: str
    spec_params: int
    layers_model: str
    layers_side: int
    layers_params: int
    layers_activations: int
    digit_index: int
    label: str  # true label of the uploaded digit (= what LeNet-5 predicts for it, checked in make_plans)
    verdict: str  # "4 · 99.8%" as the Predict page prints it for this image (for attributing wrong results)
    explain: str  # "4 (99.8%) — predicted" as the Explain class box prints it
    image_name: str
    image_png: bytes

    @property
    def compose_path(self) -> str:
        return f"/compose?spec={self.spec_url}&model={self.layers_model}&input={self.layers_side}"

    @property
    def predict_path(self) -> str:
        return f"/predict?source=lenet5_digits&spec={self.spec_url}"


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


def _spec_dict(i: int, mix: str = "mixed") -> dict:
    head = {"kind": "classification", "num_classes": 10 + i}
    if mix == "custom" or i % 2 == 0:
        return {"task": "classification", "input": {"channels": 3, "height": 64, "width": 64},
                "backbone": {"name": "custom", "stages": CUSTOM_STAGES}, "head": head}
    return {"task": "classification", "input": {"channels": 3, "height": 128, "width": 128},
            "backbone": {"name": "resnet18"}, "head": head}


def make_plans(count: int, mix: str = "mixed") -> list[SessionPlan]:
    """``count`` sessions with values of their own; every number a check compares is computed here, in the bench
    process, with the library (never read back from the app)."""
    import torch
    from PIL import Image

    from explorer import analyze, catalog
    from explorer.compose import analyze_spec
    from explorer.images import digit_image, digit_samples, load_image
    from explorer.network import Network
    from explorer.predict import predict
    from explorer.spec import ArchitectureSpec

    ready = Network.ready("lenet5_digits")
    lenet = ready.build().model
    by_label = collections.defaultdict(list)
    for idx, y in digit_samples():
        by_label[str(y)].append(idx)
    layer_cache: dict[tuple[str, int], tuple[int, int]] = {}
    plans = []
    for i in range(count):
        spec = ArchitectureSpec.from_dict(_spec_dict(i, mix))
        model, side = LAYERS_MODELS[i % len(LAYERS_MODELS)], 96 + 4 * i
        if (model, side) not in layer_cache:
            a = analyze(model, (catalog.info(model).input_size[0], side, side))
            layer_cache[model, side] = (a.params, a.activations)
        label = str(i % 10)
        name = f"session_{i:03d}.png"
        candidates = by_label[label]
        # The k-th digit of this label (rotating), at a size of this session's own; skip any LeNet misreads.
        for attempt in range(len(candidates) * 3):
            idx = candidates[(i // 10 + attempt) % len(candidates)]
            size = 40 + (i * 7 + attempt * 3) % 60
            buf = io.BytesIO()
            digit_image(idx).resize((size, size), Image.NEAREST).save(buf, format="PNG")
            picture = load_image(buf.getvalue(), name)
            x, _ = ready.preprocess(picture)
            top = predict(lenet, x, torch.device("cpu"), task="classification", labels=list(ready.classes)).top[0]
            if top[0][1] == label:
                break
        else:
            raise RuntimeError(f"no held-out digit {label} that LeNet-5 reads right for session {i}")
        p = top[0][2]
        plans.append(SessionPlan(
            index=i, spec_url=spec.to_url(), spec_summary=spec.summary(), spec_params=analyze_spec(spec).params,
            layers_model=model, layers_side=side, layers_params=layer_cache[model, side][0],
            layers_activations=layer_cache[model, side][1], digit_index=idx, label=label,
            verdict=f"{label} · {p:.1%}", explain=f"{label} ({p:.1%}) — predicted", image_name=name,
            image_png=buf.getvalue()))
    for field in ("spec_params", "layers_activations", "image_name"):
        values = [getattr(p, field) for p in plans]
        if len(set(values)) != len(values):
            raise RuntimeError(f"two sessions share a {field}: the wrong-session check needs them unique")
    return plans


# -- one session, step by step -----------------------------------------------------------------------------------
@dataclasses.dataclass
class StepResult:
    session: int
    step: str
    status: str  # "ok" | "error" | "wrong" | "skipped" (a step it depends on failed)
    ms: float | None  # latency of an ok step
    queued_ms: float
    reason: str = ""


class StepFailed(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Others:
    """The values that belong to the other sessions (and the warm-up), to tell a wrong result from an error."""

    def __init__(self, plans: list[SessionPlan]):
        self.plans = plans

    def owner(self, me: SessionPlan, field: str, value) -> SessionPlan | None:
        for p in self.plans:
            if p.index != me.index and value is not None and _shown(p, field) == value:
                return p
        return None


def _shown(p: SessionPlan, field: str):
    return {"spec_params": fmt_int(p.spec_params), "layers_activations": fmt_int(p.layers_activations),
            "image_name": p.image_name, "verdict": p.verdict, "explain": p.explain}[field]


async def _probe(page) -> dict:
    return await page.evaluate(PROBE_JS)


async def wait_for(page, what: str, ok, timeout_s: float, wrong=None):
    """Poll the page until ``ok(probe)`` holds on an idle run. Raises StepFailed: "error" for an exception
    element, "Traceback" or a timeout; "wrong" as soon as ``wrong(probe)`` names another session's value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            last = await _probe(page)
        except Exception as e:  # navigation in flight: the document is being replaced
            if "navigat" not in str(e).lower() and "context was destroyed" not in str(e).lower():
                raise
            last = None
        if last is not None:
            if last["exception"] or last["traceback"]:
                raise StepFailed("error", f"{what}: the page shows an exception"
                                 + (f": {last['exceptionText']}" if last["exceptionText"] else " (Traceback)"))
            culprit = wrong(last) if wrong else None
            if culprit and last["idle"]:
                raise StepFailed("wrong", f"{what}: {culprit}")
            if last["idle"] and ok(last):
                return last
        if time.monotonic() > deadline:
            seen = {k: last[k] for k in ("path", "idle", "metrics", "sidebarParams", "verdicts", "captions",
                                         "selects")} if last else None
            raise StepFailed("error", f"{what}: timed out after {timeout_s:.0f} s; last seen {seen}")
        await asyncio.sleep(POLL_S)


def _verdict_of(probe: dict, image_name: str) -> str | None:
    """The verdict printed beside ``image_name`` (images and verdicts come in the same order on the page)."""
    caps = probe["captions"]
    if image_name in caps and len(caps) == len(probe["verdicts"]):
        return probe["verdicts"][caps.index(image_name)]
    return None


def _foreign_file(captions: list[str], me: SessionPlan, others: Others) -> str | None:
    for c in captions:
        for name in re.findall(r"session_\d{3}\.png", c):
            if name != me.image_name:
                owner = others.owner(me, "image_name", name)
                return f"shows {name!r} (session {owner.index if owner else '?'})"
    return None


class Session:
    def __init__(self, plan: SessionPlan, page, base: str, others: Others, tmp: Path, step_timeout: float):
        self.plan, self.page, self.base, self.others, self.step_timeout = plan, page, base, others, step_timeout
        self.image_path = tmp / plan.image_name
        self.image_path.write_bytes(plan.image_png)
        self.class_before = None  # "Explain the class" before this session picked its image

    def _wrong(self, field: str, value, what: str) -> str | None:
        if value is None or value == _shown(self.plan, field):
            return None
        owner = self.others.owner(self.plan, field, value)
        return f"{what} {value!r} is session {owner.index}'s" if owner else None

    async def compose(self):
        p, me = self.page, self.plan
        await p.goto(self.base + me.compose_path)
        await wait_for(p, "Compose Parameters", lambda s: s["metrics"].get("Parameters") == fmt_int(me.spec_params),
                       self.step_timeout,
                       wrong=lambda s: self._wrong("spec_params", s["metrics"].get("Parameters"), "Parameters"))

    async def layers(self):
        p, me = self.page, self.plan
        await p.get_by_role("link", name="Layers", exact=True).click()
        await wait_for(p, f"Layers {me.layers_model} at {me.layers_side} px",
                       lambda s: s["path"].endswith("/layers")
                       and s["metrics"].get("Parameters") == fmt_int(me.layers_params)
                       and s["metrics"].get("Activations per image") == fmt_int(me.layers_activations),
                       self.step_timeout,
                       wrong=lambda s: self._wrong("layers_activations", s["metrics"].get("Activations per image"),
                                                   "Activations per image"))

    async def predict_open(self):
        p, me = self.page, self.plan
        await p.goto(self.base + me.predict_path)
        await wait_for(p, "Predict (LeNet-5 digits)",
                       lambda s: s["heldOut"] and s["sidebarParams"] == fmt_int(me.spec_params), self.step_timeout,
                       wrong=lambda s: self._wrong("spec_params", s["sidebarParams"], "the sidebar's composition"))

    async def predict_upload(self):
        p, me = self.page, self.plan
        uploader = p.get_by_test_id("stFileUploader").filter(has_text="Upload images").locator("input[type=file]")
        await uploader.set_input_files(str(self.image_path))
        probe = await wait_for(
            p, f"Predict verdict for {me.image_name}", lambda s: _verdict_of(s, me.image_name) is not None,
            self.step_timeout,
            wrong=lambda s: _foreign_file(s["captions"], me, self.others)
            or self._wrong("verdict", _verdict_of(s, me.image_name), f"the verdict for {me.image_name}"))
        verdict = _verdict_of(probe, me.image_name)
        if verdict.split(" · ")[0] != me.label:
            raise StepFailed("error", f"Predict: {me.image_name} (a {me.label}) read as {verdict!r}")

    async def explain_open(self):
        p = self.page
        await p.get_by_role("link", name="Explain", exact=True).click()
        probe = await wait_for(p, "Explain Grad-CAM", lambda s: s["path"].endswith("/explain") and any(
            c.startswith("The map alone") for c in s["captions"]), self.step_timeout)
        self.class_before = probe["selects"].get("Explain the class")

    async def explain_select(self):
        p, me = self.page, self.plan
        box = p.get_by_role("combobox", name="Image")
        await box.click()
        await box.fill(me.image_name.removesuffix(".png"))
        await p.get_by_role("option", name=f"uploaded: {me.image_name}").click()
        shown = f"The input: {me.image_name}"
        probe = await wait_for(
            p, f"Explain for {me.image_name}",
            lambda s: shown in s["captions"] and any(c.startswith("Grad-CAM for") for c in s["captions"]),
            self.step_timeout, wrong=lambda s: _foreign_file(s["captions"], me, self.others))
        # The class box: a run that is idle with the right picture must also explain this picture's class.
        # Give a late re-render a moment before judging.
        settle = time.monotonic() + 3.0
        while True:
            value = probe["selects"].get("Explain the class")
            cam = next((c for c in probe["captions"] if c.startswith("Grad-CAM for")), None)
            if value == me.explain or (value and value.startswith(f"{me.label} (") and value.endswith("— predicted")
                                       and cam == f"Grad-CAM for {me.label}"):
                return
            if time.monotonic() > settle:
                break
            await asyncio.sleep(POLL_S)
            probe = await wait_for(p, f"Explain for {me.image_name}", lambda s: shown in s["captions"], 10)
        culprit = self._wrong("explain", value, "Explain the class") if value != self.class_before else None
        if culprit:
            raise StepFailed("wrong", culprit)
        stale = " (the class box kept the previous image's class)" if value == self.class_before else ""
        raise StepFailed("error", f"Explain: {me.image_name} (a {me.label}, expected {me.explain!r}) shows "
                                  f"'Explain the class' = {value!r} and {cam!r}{stale}")


class Slots:
    """At most ``size`` steps in flight (``size`` ≤ 0: no cap). A free slot goes to the waiting step that is
    furthest along its session (ties: first come, first served), so once every session is open the sessions run
    to their end one after another instead of all crawling through step k together: a run stopped by its
    deadline still has whole sessions to show."""

    def __init__(self, size: int):
        self.free = size if size > 0 else math.inf
        self.waiting: list = []  # heap of (-rank, order, future)
        self.order = itertools.count()

    async def acquire(self, rank: int) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (-rank, next(self.order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot, then cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self.waiting:
            _, _, fut = heapq.heappop(self.waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Gate:
    """Opens when ``count`` sessions have arrived: every session's first page is up before any goes on."""

    def __init__(self, count: int):
        self.count, self.arrived, self.event = count, 0, asyncio.Event()

    def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.count:
            self.event.set()


async def run_session(session: Session, slots: Slots, step_timeout: float, budget: float,
                      results: list[StepResult], gate: Gate | None = None) -> None:
    """The six steps in order, each through a worker slot; after the first, wait at ``gate`` for the others. A
    failed step skips the steps that depend on it (Layers on Compose; each Predict / Explain step on the one
    before), not the other chain."""
    active = 0.0
    not_ok: set[str] = set()
    for rank, step in enumerate(STEPS):
        if rank == 1 and gate is not None:
            gate.arrive()
            await gate.event.wait()
        if DEPENDS[step] in not_ok:
            not_ok.add(step)
            results.append(StepResult(session.plan.index, step, "skipped", None, 0.0, f"{DEPENDS[step]} failed"))
            continue
        queued = time.perf_counter()
        await slots.acquire(rank)
        try:
            t0 = time.perf_counter()
            left = budget - active
            status, reason, ms = "ok", "", None
            try:
                if left <= 0:
                    raise StepFailed("error", f"session timeout: {budget:.0f} s of active time used up")
                await asyncio.wait_for(getattr(session, step)(), timeout=min(step_timeout + 15, left))
                ms = (time.perf_counter() - t0) * 1000
            except StepFailed as e:
                status, reason = e.status, e.reason
            except asyncio.TimeoutError:
                status, reason = "error", f"{step}: no answer within {min(step_timeout + 15, left):.0f} s"
            except Exception as e:  # Playwright's own timeouts, a closed page, …
                status, reason = "error", f"{step}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            active += time.perf_counter() - t0
        finally:
            slots.release()
        results.append(StepResult(session.plan.index, step, status, ms, (t0 - queued) * 1000, reason))
        if status != "ok":
            not_ok.add(step)
            if reason.startswith("session timeout"):
                for rest in STEPS[rank + 1:]:
                    results.append(StepResult(session.plan.index, rest, "skipped", None, 0.0, "session timeout"))
                if rank == 0 and gate is not None:
                    gate.arrive()
                return


# -- the server's memory ---------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def process_tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and all its descendants (psutil if installed, else /proc/<pid>/status VmRSS)."""
    try:
        import psutil
    except ImportError:
        return sum(_status_kib(p, "VmRSS") for p in process_tree(pid)) * 1024
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size summed over processes (shared pages split, so a sum over Chromium's many processes
    is not inflated); 0 where it cannot be read."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# -- one N ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    n: int
    results: list[StepResult]
    rss_before: int
    rss_after: int
    rss_after_close: int
    rss_peak: int
    browser_pss_peak: int
    peak_active: int
    wall_s: float
    server_cpu_s: float
    browser_cpu_s: float
    bench_cpu_s: float
    warmup: list[StepResult]
    log_path: Path
    log_notes: list[str]
    stopped: str  # "" when every session ran to its end; else why the run was cut short
    unfinished: int  # sessions cancelled before their last step (the deadline or the memory guard)
    browser_version: str = "?"
    compositions: str = "mixed"
    min_free_seen: int = 0
    others_cpu_s: float = 0.0  # CPU the rest of the machine used meanwhile (the VM is shared)
    load_before: float = 0.0  # 1-minute load average when the sessions started

    @property
    def errors(self) -> int:
        """Failed steps (sessions cut off by the deadline or a memory stop are ``unfinished``, not errors)."""
        return sum(r.status == "error" for r in self.results)

    @property
    def wrong(self) -> int:
        return sum(r.status == "wrong" for r in self.results)

    def latencies(self, step: str | None = None) -> list[float]:
        return sorted(r.ms for r in self.results if r.status == "ok" and (step is None or r.step == step))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    k = max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


def _log_notes(path: Path) -> list[str]:
    """Lines of the server log worth a look: tracebacks, errors and warnings (deduplicated, counted)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    counts: collections.Counter = collections.Counter()
    for i, line in enumerate(lines):
        if re.search(r"Traceback|Error|Exception|WARNING|Warning|exceeded|Killed", line):
            key = re.sub(r"0x[0-9a-f]+|\d{2}:\d{2}:\d{2}(\.\d+)?", "…", line.strip())[:300]
            counts[key] += 1
    return [f"{n}× {line}" for line, n in counts.most_common(12)]


def _browser_cpu(server: Server) -> float:
    """CPU seconds of the processes that are ours but not the server's: Playwright's driver and Chromium."""
    skip = set(process_tree(server.proc.pid)) | {os.getpid()}
    return sum(cpu_seconds(p) for p in process_tree(os.getpid()) if p not in skip)


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (non-idle time in /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return 0.0


def mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(next(line for line in f if line.startswith("MemAvailable")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return 1 << 60


async def _watch(server: Server, stop: asyncio.Event, abort: asyncio.Event, peaks: dict, results: list,
                 n: int, min_free: int, progress) -> None:
    """Once a second: peak server RSS, Chromium PSS and active Streamlit sessions; stop the run (``abort``) if
    the machine runs low on memory; a progress line every 20 s."""
    t0 = last = time.monotonic()
    while not stop.is_set():
        peaks["rss"] = max(peaks["rss"], rss_bytes(server.proc.pid))
        active = await asyncio.to_thread(server.active_sessions)
        if active is not None:
            peaks["active"] = max(peaks["active"], active)
        skip = set(process_tree(server.proc.pid)) | {os.getpid()}
        peaks["browser"] = max(peaks["browser"], pss_bytes([p for p in process_tree(os.getpid()) if p not in skip]))
        free = mem_available()
        peaks["min_free"] = min(peaks.get("min_free", free), free)
        if free < min_free and not abort.is_set():
            peaks["stopped"] = (f"stopped early: the machine had {free / 2**30:.1f} GiB available, below "
                                f"--min-free-gib {min_free / 2**30:.1f}")
            abort.set()
        if time.monotonic() - last >= 20:
            last = time.monotonic()
            c = collections.Counter(r.status for r in results)
            progress(f"  N={n}: {last - t0:,.0f} s, {len(results)} of {n * len(STEPS)} steps done "
                     f"({c['ok']} ok, {c['error']} error, {c['wrong']} wrong, {c['skipped']} skipped), "
                     f"{active} active sessions, server {peaks['rss'] / MiB:,.0f} MiB, Chromium "
                     f"{peaks['browser'] / MiB:,.0f} MiB, {free / 2**30:.1f} GiB free")
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


async def _drive(browser, server: Server, plans: list[SessionPlan], others: Others, tmp: Path, concurrency: int,
                 step_timeout: float, session_timeout: float, deadline: float, abort: asyncio.Event,
                 results: list[StepResult]):
    """Open one context per plan, run the sessions until all finish, the deadline passes or ``abort`` is set.
    Returns (sessions cancelled, the contexts — still open, for the caller to measure and then close)."""
    contexts = []
    tasks: list[asyncio.Task] = []
    try:
        opening = asyncio.Semaphore(8)

        async def open_one(plan):
            async with opening:
                ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
                contexts.append(ctx)
                page = await ctx.new_page()
                page.set_default_timeout(step_timeout * 1000)
                return Session(plan, page, server.url, others, tmp, step_timeout)
        sessions = await asyncio.gather(*(open_one(p) for p in plans))
        slots, gate = Slots(concurrency), Gate(len(sessions))
        tasks = [asyncio.create_task(run_session(s, slots, step_timeout, session_timeout, results, gate))
                 for s in sessions]
        stopper = asyncio.create_task(abort.wait())
        pending = set(tasks)
        while pending and not abort.is_set() and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending | {stopper}, timeout=max(0.1, deadline - time.monotonic()),
                                            return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
        stopper.cancel()
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:  # a bug in the bench itself: do not hide it
                raise t.exception()
        return len(pending), contexts
    except BaseException:
        for t in tasks:
            t.cancel()
        await _close_all(contexts)
        raise


async def _close_all(contexts) -> None:
    async def close(ctx):
        try:
            await asyncio.wait_for(ctx.close(), timeout=30)
        except Exception:
            pass
    await asyncio.gather(*(close(c) for c in contexts))


async def run_n(browser, n: int, warmup_plan: SessionPlan, plans: list[SessionPlan], *, concurrency: int,
                step_timeout: float, session_timeout: float, deadline_s: float, log_dir: Path,
                min_free: int = 2 * 2**30, warmup: bool = True, mix: str = "mixed", progress=print) -> RunResult:
    """A fresh server, one warm-up session, then ``n`` sessions at once; the server is stopped in any case.
    ``warmup=False`` (the test): no warm-up session, so the sessions also meet cold caches ("before" is then the
    idle server's RSS)."""
    log_path = log_dir / f"server-{mix}-N{n}.log"  # one per run: a second mix must not overwrite the first
    tmp = Path(tempfile.mkdtemp(prefix=f"load-N{n}-", dir=log_dir))
    server = Server(log_path)
    others = Others(plans + [warmup_plan])
    try:
        await asyncio.to_thread(server.wait_healthy)
        # Warm-up: one whole session alone, so models, imports and the digit model are loaded before "before".
        warm: list[StepResult] = []
        if warmup:
            ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
            try:
                page = await ctx.new_page()
                page.set_default_timeout(step_timeout * 2000)
                await run_session(Session(warmup_plan, page, server.url, others, tmp, step_timeout * 2), Slots(1),
                                  step_timeout * 2, session_timeout * 2, warm)
            finally:
                await _close_all([ctx])
            progress(f"  N={n}: warm-up " + ", ".join(f"{r.step} {r.status}" + (f" {r.ms:,.0f} ms" if r.ms else "")
                                                      for r in warm))
        await asyncio.sleep(3)
        rss_before = rss_bytes(server.proc.pid)
        cpu0 = cpu_seconds(server.proc.pid)
        browser_cpu0, bench_cpu0, machine0 = _browser_cpu(server), time.process_time(), machine_busy_s()
        load_before = os.getloadavg()[0]

        peaks = {"rss": rss_before, "active": 0, "browser": 0}
        stop, abort = asyncio.Event(), asyncio.Event()
        results: list[StepResult] = []
        watcher = asyncio.create_task(_watch(server, stop, abort, peaks, results, n, min_free, progress))
        t0 = time.monotonic()
        contexts = []
        try:
            unfinished, contexts = await _drive(browser, server, plans, others, tmp, concurrency, step_timeout,
                                                session_timeout, t0 + deadline_s, abort, results)
            wall = time.monotonic() - t0
            rss_after = rss_bytes(server.proc.pid)
            browser_cpu, bench_cpu = _browser_cpu(server) - browser_cpu0, time.process_time() - bench_cpu0
            cpu, machine = cpu_seconds(server.proc.pid) - cpu0, machine_busy_s() - machine0
            peaks["rss"] = max(peaks["rss"], rss_after)
        finally:
            stop.set()
            await watcher
            await _close_all(contexts)
        await asyncio.sleep(3)
        rss_after_close = rss_bytes(server.proc.pid)
        stopped = peaks.get("stopped") or (f"deadline of {deadline_s:.0f} s hit" if unfinished else "")
        return RunResult(n, results, rss_before, rss_after, rss_after_close, peaks["rss"], peaks["browser"],
                         peaks["active"], wall, cpu, browser_cpu, bench_cpu, warm, log_path, [], stopped,
                         unfinished, min_free_seen=peaks.get("min_free", 0),
                         others_cpu_s=max(0.0, machine - browser_cpu - bench_cpu - cpu),
                         load_before=load_before)
    finally:
        server.stop()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


async def bench(ns: list[int], *, compositions: tuple[str, ...] = ("mixed",), concurrency: int,
                step_timeout: float, session_timeout: float, deadline_for=lambda n: 120 + 20 * n, log_dir: Path,
                min_free: int = 2 * 2**30, warmup: bool = True, progress=print,
                on_result=None) -> list[RunResult]:
    """Every composition mix, every N in turn (a fresh server each), with ONE Chromium; closed in any case."""
    from playwright.async_api import async_playwright

    out: list[RunResult] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            for mix in compositions:
                plans_all = await asyncio.to_thread(make_plans, max(ns) + 1, mix)
                warmup_plan = plans_all[-1]  # values of its own too: a session showing them is wrong
                for n in ns:
                    progress(f"N={n} ({mix} compositions): starting a fresh server")
                    r = await run_n(browser, n, warmup_plan, plans_all[:n], concurrency=concurrency,
                                    step_timeout=step_timeout, session_timeout=session_timeout,
                                    deadline_s=deadline_for(n), log_dir=log_dir, min_free=min_free,
                                    warmup=warmup, mix=mix, progress=progress)
                    r.log_notes = _log_notes(r.log_path)
                    r.browser_version, r.compositions = browser.version, mix
                    out.append(r)
                    progress(f"N={n}: {r.errors} errors, {r.wrong} wrong, p50 {_ms(percentile(r.latencies(), 50))}, "
                             f"p95 {_ms(percentile(r.latencies(), 95))} ms, RSS {r.rss_before / MiB:,.0f} → "
                             f"{r.rss_after / MiB:,.0f} MiB, {r.wall_s:,.1f} s"
                             + (f" ({r.stopped})" if r.stopped else ""))
                    if on_result:
                        on_result(out)
        finally:
            try:
                await asyncio.wait_for(browser.close(), timeout=30)
            except Exception:
                pass
    return out


def run(ns: list[int], *, compositions: tuple[str, ...] = ("mixed",), concurrency: int = 4,
        step_timeout: float = 90.0, session_timeout: float = 300.0, deadline_for=lambda n: 120 + 20 * n,
        log_dir: Path | None = None, min_free: int = 2 * 2**30, warmup: bool = True, progress=print,
        on_result=None) -> list[RunResult]:
    """The bench from synchronous code (tests/test_load.py): one RunResult per composition mix and N."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="explorer-load-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(bench(ns, compositions=compositions, concurrency=concurrency, step_timeout=step_timeout,
                             session_timeout=session_timeout, deadline_for=deadline_for, log_dir=log_dir,
                             min_free=min_free, warmup=warmup, progress=progress, on_result=on_result))


# -- the report ----------------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def machine_line() -> str:
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) / 2 ** 20
    except (OSError, StopIteration):
        mem = float("nan")

    def v(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "?"
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:,.1f} GiB RAM, Python {platform.python_version()}, "
            f"torch {v('torch')}, streamlit {v('streamlit')}, playwright {v('playwright')}")


def report(runs: list[RunResult], argv: list[str], concurrency: int, step_timeout: float, session_timeout: float,
           deadline: str) -> str:
    chromium = runs[0].browser_version if runs else "?"
    cap = "no cap (every step at once)" if concurrency <= 0 else f"{concurrency} steps in flight at most"
    lines = [
        "# Load: N concurrent browser sessions against one server",
        "",
        f"{machine_line()}, Chromium {chromium} (headless, one browser, one context per session)  ",
        f"Command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'bench/load.py'] + argv)}`  ",
        f"A fresh server per N, one warm-up session first; all N contexts and Streamlit sessions open at once, "
        f"steps through a pool ({cap}; the session furthest along first); step timeout {step_timeout:.0f} s, "
        f"session budget {session_timeout:.0f} s of active time, deadline {deadline} per N.",
        "",
        "Targets: 0 errors, 0 wrong results, ≤ 15 MiB per extra session. Latency: from the action (goto, click, "
        "upload, option) until the run is idle and the expected value shows; ok steps only; the wait for a worker "
        "slot is not included. On this VM the same 2 cores run the server and every session's Chromium page, so "
        "the latencies are mostly the browser's (see the CPU split below).",
    ]
    mixes = list(dict.fromkeys(r.compositions for r in runs))
    for mix in mixes:
        group = [r for r in runs if r.compositions == mix]
        lines += ["", f"## Compositions: {mix} — {MIXES[mix]}", "",
                  "| N | errors | wrong results | p50 ms | p95 ms | RSS before MiB | RSS after MiB | per extra "
                  "session MiB | wall s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            lat = r.latencies()
            per = (r.rss_after - r.rss_before) / MiB / r.n
            unfinished = f" (+{r.unfinished} unfinished)" if r.unfinished else ""
            lines.append(f"| {r.n} | {r.errors}{unfinished} | {r.wrong} | {_ms(percentile(lat, 50))} "
                         f"| {_ms(percentile(lat, 95))} | {r.rss_before / MiB:,.0f} | {r.rss_after / MiB:,.0f} "
                         f"| {per:,.1f} | {r.wall_s:,.1f} |")
        for r in group:
            if r.stopped:
                ran = sum(x.status != "skipped" for x in r.results)
                whole = sum(1 for sid in {x.session for x in r.results}
                            if sum(x.status == "ok" and x.session == sid for x in r.results) == len(STEPS))
                rate = ran / r.wall_s if r.wall_s else 0
                need = f"; at that rate all {r.n * len(STEPS)} steps would need ~{r.n * len(STEPS) / rate:,.0f} s" \
                    if rate else ""
                lines += ["", f"**N = {r.n} did not finish on this machine** ({r.stopped}): {ran} of "
                              f"{r.n * len(STEPS)} steps ran ({60 * rate:,.1f} per minute), {whole} of {r.n} "
                              f"sessions got through all six, {r.unfinished} were cancelled{need}. Errors and "
                              "latencies above are those of the steps that ran."]
        lines += ["", "Per step, p50 / p95 ms (ok steps):", "",
                  "| N | " + " | ".join(STEPS) + " | queued for a slot, mean ms |",
                  "|---|" + "---|" * (len(STEPS) + 1)]
        for r in group:
            cells = []
            for st in STEPS:
                lat = r.latencies(st)
                cells.append(f"{_ms(percentile(lat, 50))} / {_ms(percentile(lat, 95))} ({len(lat)})" if lat else "—")
            queued = [x.queued_ms for x in r.results]
            lines.append(f"| {r.n} | " + " | ".join(cells) + f" | {sum(queued) / max(1, len(queued)):,.0f} |")
        lines += ["", "Around the table:", "",
                  "| N | sessions with all 6 steps ok | steps ok / error / wrong / skipped | peak active Streamlit "
                  "sessions | RSS peak MiB | RSS 3 s after the contexts closed MiB | CPU s: server / browser / "
                  "bench / rest of the machine | load average at start | Chromium PSS peak MiB | warm-up |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            per_session = collections.defaultdict(int)
            for x in r.results:
                per_session[x.session] += x.status == "ok"
            ok = sum(v == len(STEPS) for v in per_session.values())
            c = collections.Counter(x.status for x in r.results)
            warm = ", ".join(f"{x.step} {x.status}" + (f" {x.ms:,.0f} ms" if x.ms else "")
                             for x in r.warmup) or "none"
            cut = f" ({r.stopped}; {r.unfinished} unfinished)" if r.stopped else ""
            lines.append(f"| {r.n} | {ok} of {r.n}{cut} | {c['ok']} / {c['error']} / {c['wrong']} / {c['skipped']} "
                         f"| {r.peak_active} | {r.rss_peak / MiB:,.0f} | {r.rss_after_close / MiB:,.0f} "
                         f"| {r.server_cpu_s:,.0f} / {r.browser_cpu_s:,.0f} / {r.bench_cpu_s:,.0f} / "
                         f"{r.others_cpu_s:,.0f} | {r.load_before:.1f} | {r.browser_pss_peak / MiB:,.0f} | {warm} |")
        for r in group:
            bad = [x for x in r.results if x.status in ("error", "wrong")]
            if bad or r.unfinished:
                lines += ["", f"What went wrong at N = {r.n}:", ""]
                groups: dict[tuple[str, str, str], list[int]] = collections.defaultdict(list)
                for x in bad:
                    generic = re.sub(r"session_\d{3}\.png", "session_XXX.png", x.reason)
                    generic = re.sub(r"last seen \{.*", "…", generic)
                    generic = re.sub(r"\d[\d,.]*", "#", generic)
                    groups[(x.status, x.step, generic)].append(x.session)
                for (status, step, _), sessions in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                    example = next(x.reason for x in bad if x.session == sessions[0] and x.step == step)
                    lines.append(f"- {len(sessions)}× {status} at {step} (sessions {_ranges(sessions)}); e.g. "
                                 f"session {sessions[0]}: {example[:400]}")
                if r.unfinished:
                    lines.append(f"- {r.unfinished} sessions had not finished when the run was stopped "
                                 f"({r.stopped}); not counted as errors: this machine could not drive N = {r.n} "
                                 f"within the deadline")
            if r.log_notes:
                lines += ["", f"Server log at N = {r.n} (`{r.log_path}`), lines with Traceback / Error / Warning:",
                          "", "```"] + r.log_notes + ["```"]
    return "\n".join(lines) + "\n"


def _ranges(xs: list[int]) -> str:
    xs = sorted(set(xs))
    out, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            out.append(f"{start}" if start == x else f"{start}–{x}")
            start = None
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+",
                    help=f"N values (default {' '.join(map(str, DEFAULT_SESSIONS))})")
    ap.add_argument("--quick", action="store_true", help=f"N = {' '.join(map(str, QUICK_SESSIONS))} only")
    ap.add_argument("--compositions", nargs="+", choices=list(MIXES), default=["mixed"],
                    help="which compositions the sessions build (several: one table each)")
    ap.add_argument("--concurrency", type=int, default=4,
                    help="steps in flight at most (0 = no cap); every session stays open regardless")
    ap.add_argument("--step-timeout", type=float, default=90.0, help="seconds per step")
    ap.add_argument("--session-timeout", type=float, default=300.0, help="seconds of active time per session")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds per N for all its sessions (default 120 + 20·N)")
    ap.add_argument("--min-free-gib", type=float, default=2.0,
                    help="stop an N early (its cancelled sessions are reported as unfinished) if the machine's "
                         "available memory falls below this")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.md")
    ap.add_argument("--log-dir", type=Path, default=None, help="where the server logs go (default: a new temp dir)")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    ns = args.sessions or (list(QUICK_SESSIONS) if args.quick else list(DEFAULT_SESSIONS))
    if any(n < 1 for n in ns):
        ap.error("--sessions takes positive numbers")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="explorer-load-"))
    print(f"server logs in {log_dir}")

    def on_term(signum, frame):  # `finally` blocks close the browser and stop the server
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    deadline_for = (lambda n: args.deadline) if args.deadline is not None else (lambda n: 120 + 20 * n)
    deadline_text = f"{args.deadline:.0f} s" if args.deadline is not None else "120 + 20·N s"

    def write(runs):  # after every N, so a later failure keeps the rows already measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(runs, argv, args.concurrency, args.step_timeout, args.session_timeout,
                                   deadline_text))

    try:
        runs = run(ns, compositions=tuple(args.compositions), concurrency=args.concurrency,
                   step_timeout=args.step_timeout, session_timeout=args.session_timeout, deadline_for=deadline_for,
                   log_dir=log_dir, min_free=int(args.min_free_gib * 2**30), on_result=write)
    except KeyboardInterrupt:
        print("interrupted: contexts and browser closed, server stopped; rows measured so far are in "
              f"{args.out}", file=sys.stderr)
        return 130
    text = report(runs, argv, args.concurrency, args.step_timeout, args.session_timeout, deadline_text)
    print(text)
    print(f"written to {args.out}")
    return 0 if all(r.errors == 0 and r.wrong == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
