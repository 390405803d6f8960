"""Issue 15: a whole class training. N browser sessions against one server: half of them start a small run each
while the other half browse; every run must finish (or wait in the queue with its position), no page may show an
error or another session's run, and the browsing sessions' step latency is measured with training going against
without.

    .venv/bin/python bench/load_training.py                 # N = 10, 30, a fresh server for each N
    .venv/bin/python bench/load_training.py --quick         # N = 3 only
    .venv/bin/python bench/load_training.py --sessions 20 --rounds 3 --out /tmp/load_training.md

For each N: a fresh `streamlit run app.py` with a runs folder of its own (``EXPLORER_RUNS``, a new temp folder) and
one warm-up (a browsing session's steps, and /train set to the trainers' number of training images, so the epoch
estimate is cached: no run is started). Then ⌈N/2⌉ "trainers" and ⌊N/2⌋ "browsers", each in a browser context of
its own in ONE headless Chromium (Playwright's async API), the pieces of `bench/load.py` reused:

  Phase A   the browsers alone: each does --rounds rounds of --browse-steps (default: compose, then layers, as
            `bench/load.py` drives and checks them), so their step latencies without training.
  Phase B   the same browsers (fresh contexts, same compositions), now while the trainers train: a browser keeps
            doing rounds (at least --rounds) until every trainer is done. Trainer k opens /train (LeNet-5 on
            digits, the page's defaults), types Epochs = k + 1, Training images = --train-images and Seed = k (a
            config no other session has: identical configs may be trained once and shared), clicks "Start
            training", then watches its run until the page shows its test accuracy, or the deadline comes.

Outcomes of a trainer:
  finished     the live view says "finished · epoch E of E" (E = its epochs) and the "Test accuracy" metric
               shows, and the runs table's one row agrees (state finished, "E of E", the same accuracy);
  queued       at the deadline the page still says queued and gives a position (any wording with "queued" and a
               number, e.g. "position 3 in the queue" or "Queued: 3rd in line, expected to start in about 2 min");
  training     at the deadline the page says running, "epoch e of E" (the run holding the slot: with one slot,
               one run is always training when the deadline comes unless all have finished);
  mixed up     the page shows a run that is not its own: the live view or a runs-table row with another trainer's
               run id or epoch count E ("wrong", as in `bench/load.py`);
  error        an exception or "Traceback" on the page, a step timed out, "queued" shown without a position, the
               run failed / stopped / was interrupted, or its table row disagrees with the live view.
The run folders are read at the end as well: each run's status.json owner must be the owner id its trainer's
address bar carries, its config.json the trainer's epochs / seed / training images, its state finished (or still
queued, or running, for a trainer whose page said so), and there must be no run no trainer started.

Latency: a browser step from its action until the run is idle and the expected value shows (as `bench/load.py`;
ok steps only, the wait for a slot not included). Both phases' p50 / p95 and their ratio (B / A) are reported,
with how many steps each phase counted. Trainers' page actions (open, set, start) go through the same pool of
--concurrency slots as the browsers' steps; watching a run does not hold a slot (the page redraws itself every
second while a run is queued or running, which is part of the load being measured). Runs train in the server's
worker processes (one at a time on 2 cores: `RunManager`'s default), so a trainer's "time to result" includes
its time in the queue.

CPU per phase: the server with its (reaped) training workers, Chromium with Playwright's driver, the bench, and
the rest of the machine (other people's work on a shared VM: its share of the machine's capacity is reported, so
a slow number can be read against it). Server RSS (with its workers) before and at its peak.

Written to bench/results/load_training.md (--out) after every N. Exit status 0 when every N had 0 errors and 0
mixed-up runs and every run finished or was queued with its position.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import (POLL_S, STEPS, VIEWPORT, MiB, Others, Session, Slots, StepFailed, _browser_cpu,  # noqa: E402
                        _close_all, _log_notes, _ms, cpu_seconds, machine_busy_s, machine_line, make_plans,
                        percentile, process_tree, rss_bytes)
from bench.server import CHROMIUM, CHROMIUM_ARGS, PAGE_STATE_JS, Server  # noqa: E402
from explorer.training.runfolder import RUN_ID  # noqa: E402

DEFAULT_SESSIONS = (10, 30)
QUICK_SESSIONS = (3,)
BROWSE_STEPS = ("compose", "layers")
LENET_PARAMS = "61,706"  # the Train page's default network, LeNet-5 from scratch: its trainable parameters
RUN_LINE = re.compile(r"^Run\s*(\d{8}-\d{6}-[0-9a-f]{6})\s*·\s*(.*)$", re.S)
STATE = re.compile(r"\b(queued|running|finished|failed|stopped|paused|interrupted)\b", re.I)
EPOCHS_OF = re.compile(r"epoch\s+(\d+)\s+of\s+(\d+|\?)", re.I)
# "position 3 in the queue", "3rd in line", "#3 in the queue", "queue position 3" — wording may change
POSITION = re.compile(r"(?:position\s*#?\s*(\d+))|(?:#?(\d+)(?:st|nd|rd|th)?\s+in\s+(?:the\s+)?(?:line|queue))", re.I)
WATCH_POLL_S = 1.0
ACCOUNTED = ("finished", "queued", "training")  # a trainer's outcomes that meet the target

# One look at the Train page (textContent: no layout forced): the run lines, metrics, number inputs, tables and
# every text that mentions "queued".
TRAIN_PROBE_JS = r"""() => {""" + PAGE_STATE_JS + r"""
  const numbers = {};
  for (const n of q('[data-testid="stNumberInput"]')) {
    const l = n.querySelector('[data-testid="stWidgetLabel"]'), i = n.querySelector('input');
    if (l && i) numbers[l.textContent.trim()] = i.value;
  }
  const texts = q('[data-testid="stMarkdownContainer"]', main).map(e => e.textContent.trim());
  const tables = q('[data-testid="stDataFrame"]', main).map(d => q('[role="row"]', d).map(
    r => q('th, td, [role="gridcell"], [role="columnheader"]', r).map(c => c.textContent.trim())));
  return {
    ...pageState(),
    errors: q('[data-testid="stAlertContentError"]').map(e => e.textContent.trim().slice(0, 300)),
    numbers, tables,
    runLines: texts.filter(t => /^Run\s*\d{8}-\d{6}-[0-9a-f]{6}/.test(t)),
    queuedTexts: texts.filter(t => /queued/i.test(t)),
  };
}"""


# -- what each trainer does and expects ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainerPlan:
    index: int
    epochs: int  # unique: the page shows it ("epoch e of E", the runs table), so a mixed-up run is visible
    seed: int
    train_images: int


def make_trainer_plans(count: int, train_images: int) -> list[TrainerPlan]:
    return [TrainerPlan(index=k, epochs=k + 1, seed=k, train_images=train_images) for k in range(count)]


@dataclasses.dataclass
class TrainerResult:
    index: int
    outcome: str = "unfinished"  # "finished" | "queued" | "training" (at the deadline) | "wrong" | "error" | …
    reason: str = ""
    run_id: str | None = None
    owner: str | None = None
    steps: dict = dataclasses.field(default_factory=dict)  # page action -> ms (open, set, start)
    queued_ms: float = 0.0  # waiting for a slot (page actions)
    positions: list = dataclasses.field(default_factory=list)  # queue positions the page showed, in order
    time_to_result_s: float | None = None  # from the click on Start to the test accuracy on the page
    accuracy: str | None = None
    folder_check: str = ""  # "" = the run folder agrees; else what disagrees


def _position(text: str) -> int | None:
    m = POSITION.search(text)
    if m:
        return int(m.group(1) or m.group(2))
    rest = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", " ", text)  # an unknown wording: any number but the epochs / the id
    rest = EPOCHS_OF.sub(" ", rest)
    rest = re.sub(r"\d+(?:\.\d+)?\s*(?:s|min|h|%)\b", " ", rest)  # a time or a share is no position
    m = re.search(r"\b(\d+)\b", rest)
    return int(m.group(1)) if m else None


def _runs_table(probe: dict) -> list[dict] | None:
    """The runs table's rows as {column: text} (the table whose header has "run" and "state"), or None."""
    for rows in probe["tables"]:
        if rows and "run" in rows[0] and "state" in rows[0]:
            head = rows[0]
            return [dict(zip(head, r)) for r in rows[1:] if any(r)]
    return None


class Trainer:
    def __init__(self, plan: TrainerPlan, page, base: str, step_timeout: float, registry: dict,
                 epochs_of: dict[int, int]):
        self.plan, self.page, self.base, self.step_timeout = plan, page, base, step_timeout
        self.registry = registry  # run id -> trainer index, filled as the trainers start their runs
        self.epochs_of = epochs_of  # epochs -> trainer index
        self.result = TrainerResult(plan.index)

    async def probe(self) -> dict | None:
        try:
            return await self.page.evaluate(TRAIN_PROBE_JS)
        except Exception as e:  # navigation in flight
            if "navigat" in str(e).lower() or "context was destroyed" in str(e).lower():
                return None
            raise

    def _foreign(self, s: dict) -> str | None:
        """Another trainer's run on this page (its id or its epoch count), as a sentence; None if none shows."""
        me = self.plan
        for line in s["runLines"]:
            m = RUN_LINE.match(line)
            if not m:
                continue
            run_id, rest = m.groups()
            if self.result.run_id and run_id != self.result.run_id:
                who = self.registry.get(run_id)
                return f"the live view shows run {run_id} (trainer {who if who is not None else '?'})"
            e = EPOCHS_OF.search(rest)
            if e and e.group(2).isdigit() and int(e.group(2)) != me.epochs:
                return f"the live view shows a run of {e.group(2)} epochs (trainer {self.epochs_of.get(int(e.group(2)), '?')})"
        for row in _runs_table(s) or []:
            run_id, epochs = row.get("run", ""), row.get("epochs", "")
            if self.result.run_id and run_id and run_id != self.result.run_id:
                who = self.registry.get(run_id)
                return f"the runs table lists run {run_id} (trainer {who if who is not None else '?'})"
            e = re.search(r"of\s+(\d+)", epochs)
            if e and int(e.group(1)) != me.epochs:
                return f"the runs table lists a run of {e.group(1)} epochs (trainer {self.epochs_of.get(int(e.group(1)), '?')})"
        return None

    async def wait(self, what: str, ok, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            s = await self.probe()
            if s is not None:
                last = s
                if s["exception"] or s["traceback"]:
                    raise StepFailed("error", f"{what}: the page shows an exception"
                                     + (f": {s['exceptionText']}" if s["exceptionText"] else " (Traceback)"))
                culprit = self._foreign(s)
                if culprit and s["idle"]:
                    raise StepFailed("wrong", f"{what}: {culprit}")
                if s["idle"] and ok(s):
                    return s
            if time.monotonic() > deadline:
                seen = {k: last[k] for k in ("path", "idle", "metrics", "numbers", "runLines", "errors")} if last \
                    else None
                raise StepFailed("error", f"{what}: timed out after {timeout_s:.0f} s; last seen {seen}")
            await asyncio.sleep(POLL_S)

    async def open(self):
        await self.page.goto(self.base + "/train")
        await self.wait("Train page (LeNet-5 on digits)",
                        lambda s: s["metrics"].get("Trainable parameters") == LENET_PARAMS, self.step_timeout)

    async def set(self):
        me = self.plan
        wanted = {"Epochs": me.epochs, "Training images (0: all)": me.train_images, "Seed": me.seed}
        for label, value in wanted.items():
            box = self.page.get_by_label(label, exact=True)
            await box.fill(str(value))
            await box.press("Enter")
            await asyncio.sleep(POLL_S)  # the rerun the Enter asks for has started before the next look
            await self.wait(f"{label} = {value}", lambda s, lb=label, v=value: s["numbers"].get(lb) == str(v),
                            self.step_timeout)
        await self.wait(f"the settings of trainer {me.index}",
                        lambda s: all(s["numbers"].get(lb) == str(v) for lb, v in wanted.items())
                        and s["metrics"].get("Training images") == f"{me.train_images:,}", self.step_timeout)

    async def start(self):
        me = self.plan
        await self.page.get_by_role("button", name="Start training").click()

        def started(s):
            m = re.search(r"[?&]run=([0-9a-f-]+)", s["search"])
            lines = [RUN_LINE.match(x) for x in s["runLines"]]
            return bool(m and any(x and x.group(1) == m.group(1) for x in lines)) or bool(s["errors"])
        s = await self.wait(f"the run of trainer {me.index} shown", started, self.step_timeout)
        if s["errors"]:
            raise StepFailed("error", f"start: the page refused the run: {s['errors'][0]}")
        self.result.run_id = re.search(r"[?&]run=([0-9a-f-]+)", s["search"]).group(1)
        owner = re.search(r"[?&]owner=([0-9a-f]+)", s["search"])
        self.result.owner = owner.group(1) if owner else None
        self.registry[self.result.run_id] = me.index

    async def watch(self, deadline: float) -> None:
        """Until the page shows the run's test accuracy (and the runs table agrees), or ``deadline``: records
        the queue positions shown; StepFailed for an error or a mixed-up run."""
        me, r = self.plan, self.result
        t0 = time.monotonic()
        last_state, last_epochs, agree_by = None, None, None
        while True:
            s = await self.probe()
            if s is not None:
                if s["exception"] or s["traceback"]:
                    raise StepFailed("error", "watching: the page shows an exception"
                                     + (f": {s['exceptionText']}" if s["exceptionText"] else " (Traceback)"))
                culprit = self._foreign(s)
                if culprit:
                    raise StepFailed("wrong", f"watching: {culprit}")
                mine = [m for m in map(RUN_LINE.match, s["runLines"]) if m and m.group(1) == r.run_id]
                if mine:
                    line = mine[0].group(2)
                    state = STATE.search(line)
                    last_state = state.group(1).lower() if state else None
                    epochs = EPOCHS_OF.search(line)
                    last_epochs = epochs.groups() if epochs else None
                    if last_state == "queued":
                        texts = [line] + [t for t in s["queuedTexts"] if t not in s["runLines"]]
                        pos = next((p for p in map(_position, texts) if p is not None), None)
                        if pos is None:
                            raise StepFailed("error", f"watching: the run is queued but the page gives no position "
                                                      f"({line[:200]!r})")
                        if not r.positions or r.positions[-1] != pos:
                            r.positions.append(pos)
                    elif last_state in ("failed", "stopped", "paused", "interrupted"):
                        raise StepFailed("error", f"watching: the run ended {last_state}: {line[:300]!r}")
                    elif last_state == "finished" and s["idle"] and "Test accuracy" in s["metrics"]:
                        e = EPOCHS_OF.search(line)
                        if not e or e.groups() != (str(me.epochs), str(me.epochs)):
                            raise StepFailed("error", f"watching: finished, but the line says {line[:200]!r}, not "
                                                      f"epoch {me.epochs} of {me.epochs}")
                        if r.time_to_result_s is None:
                            r.time_to_result_s = time.monotonic() - t0
                            r.accuracy = s["metrics"]["Test accuracy"]
                            agree_by = time.monotonic() + 15  # the table is its own fragment: a moment to redraw
                        rows = _runs_table(s) or []
                        want = {"run": r.run_id, "state": "finished", "epochs": f"{me.epochs} of {me.epochs}",
                                "test": f"{r.accuracy} accuracy"}
                        if len(rows) == 1 and all(rows[0].get(k) == v for k, v in want.items()):
                            r.outcome = "finished"
                            return
                        if time.monotonic() > agree_by:
                            raise StepFailed("error", f"watching: the live view says finished with {r.accuracy}, "
                                                      f"the runs table shows {rows}")
            if time.monotonic() > deadline:
                if last_state == "queued" and r.positions:
                    r.outcome = "queued"
                    r.reason = f"still queued at the deadline, position {r.positions[-1]}"
                elif last_state == "running" and last_epochs and last_epochs[1] == str(me.epochs):
                    r.outcome = "training"  # the one slot's run: its page shows it going, epoch e of E
                    r.reason = f"training at the deadline, epoch {last_epochs[0]} of {last_epochs[1]}"
                else:
                    r.outcome = last_state or "unfinished"
                    r.reason = f"{last_state or 'no status line'} at the deadline"
                return
            await asyncio.sleep(WATCH_POLL_S)


# -- the sessions ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BrowseStep:
    session: int
    round: int
    step: str
    status: str  # "ok" | "error" | "wrong" | "skipped"
    ms: float | None
    queued_ms: float
    reason: str = ""
    training: bool = False  # a run was queued or running on the server when the step ended (phase B)


async def _timed(slots: Slots, rank: int, what, timeout: float) -> tuple[str, str, float | None, float]:
    """One page action through a slot: (status, reason, ms, ms waited for the slot)."""
    queued = time.perf_counter()
    await slots.acquire(rank)
    try:
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(what(), timeout=timeout)
            return "ok", "", (time.perf_counter() - t0) * 1000, (t0 - queued) * 1000
        except StepFailed as e:
            return e.status, e.reason, None, (t0 - queued) * 1000
        except asyncio.TimeoutError:
            return "error", f"no answer within {timeout:.0f} s", None, (t0 - queued) * 1000
        except Exception as e:  # Playwright's own timeouts, a closed page, …
            return "error", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", None, (t0 - queued) * 1000
    finally:
        slots.release()


async def browse(session: Session, steps: tuple[str, ...], slots: Slots, step_timeout: float, rounds: int,
                 results: list[BrowseStep], keep_going=lambda: False, training=lambda: False,
                 deadline: float = float("inf")) -> None:
    """``rounds`` rounds of ``steps`` (more while ``keep_going()``), until ``deadline``; a failed step skips the
    rest of its round."""
    rnd = 0
    while (rnd < rounds or keep_going()) and time.monotonic() < deadline:
        failed = False
        for rank, step in enumerate(steps):
            if failed:
                results.append(BrowseStep(session.plan.index, rnd, step, "skipped", None, 0.0, "a step before failed"))
                continue
            status, reason, ms, waited = await _timed(slots, rank, getattr(session, step), step_timeout + 15)
            results.append(BrowseStep(session.plan.index, rnd, step, status, ms, waited,
                                      f"{step}: {reason}" if reason else "", training()))
            failed = status != "ok"
        rnd += 1


async def train(trainer: Trainer, slots: Slots, step_timeout: float, deadline: float) -> None:
    r = trainer.result
    for rank, step in enumerate(("open", "set", "start")):
        status, reason, ms, waited = await _timed(slots, rank, getattr(trainer, step), step_timeout + 15)
        r.queued_ms += waited
        if status != "ok":
            r.outcome, r.reason = status, f"{step}: {reason}"
            return
        r.steps[step] = ms
    try:
        await trainer.watch(deadline)
    except StepFailed as e:
        r.outcome, r.reason = e.status, e.reason
    except Exception as e:
        r.outcome, r.reason = "error", f"watching: {type(e).__name__}: {str(e).splitlines()[0][:300]}"


# -- the run folders at the end ------------------------------------------------------------------------------------
def check_folders(runs_root: Path, trainers: list[TrainerResult], plans: list[TrainerPlan]) -> list[str]:
    """Each trainer's run folder against what its page showed; a sentence per disagreement (also stored on the
    trainer's result), and one for every run no trainer started."""
    problems = []
    by_id = {t.run_id: t for t in trainers if t.run_id}
    run_dirs = [p for p in runs_root.iterdir() if p.is_dir() and RUN_ID.match(p.name)] if runs_root.exists() else []
    for folder in sorted(run_dirs):
        if folder.name in by_id:
            continue
        # a trainer whose "start" step timed out before its page showed the run (already counted as its error)
        # started it if the config is that trainer's: said, not counted twice
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        owner = next((t for t, plan in zip(trainers, plans) if not t.run_id and t.outcome == "error"
                      and t.reason.startswith("start") and config.get("epochs") == plan.epochs
                      and config.get("seed") == plan.seed), None)
        if owner is not None:
            problems.append(f"run {folder.name} is trainer {owner.index}'s, started before its page timed out")
        else:
            problems.append(f"run {folder.name} in the runs folder was started by no trainer")
    for t, plan in zip(trainers, plans):
        if not t.run_id:
            continue
        folder = runs_root / t.run_id
        try:
            status = json.loads((folder / "status.json").read_text())
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as e:
            t.folder_check = f"its run folder cannot be read ({type(e).__name__})"
            problems.append(f"trainer {t.index}: {t.folder_check}")
            continue
        bad = []
        if status.get("owner") != t.owner:
            bad.append(f"owner {status.get('owner')!r}, not its session's {t.owner!r}")
        for key, want in (("epochs", plan.epochs), ("seed", plan.seed), ("train_samples", plan.train_images)):
            if config.get(key) != want:
                bad.append(f"config {key} = {config.get(key)!r}, not {want!r}")
        state = status.get("state")
        if t.outcome == "finished" and state != "finished":
            bad.append(f"the page said finished, status.json says {state!r}")
        # the folders are read after the last browse steps, minutes after the deadline: a run queued or training
        # then may have gone on since (queued → running → finished), but no further
        elif t.outcome == "queued" and state not in ("queued", "running", "finished"):
            bad.append(f"the page said queued, status.json now says {state!r}")
        elif t.outcome == "training" and state not in ("running", "finished"):
            bad.append(f"the page said training, status.json now says {state!r}")
        elif t.outcome not in ACCOUNTED and state not in ("finished", "queued", "running"):
            bad.append(f"state {state!r}")
        if bad:
            t.folder_check = "; ".join(bad)
            problems.append(f"trainer {t.index} (run {t.run_id}): {t.folder_check}")
    return problems


# -- one N -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Phase:
    name: str
    steps: list[BrowseStep]
    wall_s: float
    server_cpu_s: float
    browser_cpu_s: float
    bench_cpu_s: float
    machine_cpu_s: float

    @property
    def others_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.server_cpu_s - self.browser_cpu_s - self.bench_cpu_s)

    @property
    def others_share(self) -> float:
        """The rest of the machine's CPU as a share of all its cores over the phase."""
        return self.others_cpu_s / (self.wall_s * (os.cpu_count() or 1)) if self.wall_s else 0.0

    def latencies(self, step: str | None = None) -> list[float]:
        return sorted(x.ms for x in self.steps if x.status == "ok" and (step is None or x.step == step))

    def count(self, status: str) -> int:
        return sum(x.status == status for x in self.steps)


@dataclasses.dataclass
class NResult:
    n: int
    trainers: list[TrainerResult]
    plans: list[TrainerPlan]
    alone: Phase | None
    training: Phase | None
    folder_problems: list[str]
    rss_before: int
    rss_peak: int
    wall_s: float
    log_path: Path
    runs_root: Path
    warmup: str = ""
    log_notes: list = dataclasses.field(default_factory=list)
    stopped: str = ""
    browser_version: str = "?"

    @property
    def browsers(self) -> int:
        return self.n - len(self.trainers)

    def outcomes(self) -> collections.Counter:
        return collections.Counter(t.outcome for t in self.trainers)

    @property
    def errors(self) -> int:
        """Trainers ending in an error, browse steps in error, run folders that disagree with the pages."""
        phases = [p for p in (self.alone, self.training) if p]
        return (self.outcomes()["error"] + sum(p.count("error") for p in phases)
                + sum(1 for t in self.trainers if t.folder_check) + sum("started by no trainer" in p
                                                                          for p in self.folder_problems))

    @property
    def mixed_up(self) -> int:
        phases = [p for p in (self.alone, self.training) if p]
        return self.outcomes()["wrong"] + sum(p.count("wrong") for p in phases)

    @property
    def accounted(self) -> bool:
        """Every run finished, or was queued with its position (or training, epoch e of E) when the deadline came."""
        return all(t.outcome in ACCOUNTED for t in self.trainers)


def _server_cpu(pid: int) -> float:
    """CPU seconds of the server and of the children it has reaped (its training workers) — utime, stime,
    cutime, cstime — plus its live children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        own = 0.0
    return own + sum(cpu_seconds(p) for p in process_tree(pid) if p != pid)


class Meter:
    """CPU of the server, the browser, the bench and the machine from ``start()`` to ``phase()``."""

    def __init__(self, server: Server):
        self.server = server

    def start(self):
        self.t0 = time.monotonic()
        self.cpu0 = (_server_cpu(self.server.proc.pid), _browser_cpu(self.server), time.process_time(),
                     machine_busy_s())
        return self

    def phase(self, name: str, steps: list[BrowseStep]) -> Phase:
        s, b, me, m = (_server_cpu(self.server.proc.pid), _browser_cpu(self.server), time.process_time(),
                       machine_busy_s())
        s0, b0, me0, m0 = self.cpu0
        return Phase(name, steps, time.monotonic() - self.t0, s - s0, b - b0, me - me0, m - m0)


async def _contexts(browser, count: int, step_timeout: float, opened: list):
    async def one():
        ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
        opened.append(ctx)
        page = await ctx.new_page()
        page.set_default_timeout(step_timeout * 1000)
        return page
    sem = asyncio.Semaphore(8)

    async def guarded():
        async with sem:
            return await one()
    return await asyncio.gather(*(guarded() for _ in range(count)))


async def _rss_watch(server: Server, stop: asyncio.Event, peaks: dict, progress, status) -> None:
    last = time.monotonic()
    while not stop.is_set():
        peaks["rss"] = max(peaks["rss"], rss_bytes(server.proc.pid))
        if time.monotonic() - last >= 20:
            last = time.monotonic()
            progress(f"    {status()}, server {peaks['rss'] / MiB:,.0f} MiB")
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass


async def run_n(browser, n: int, *, browse_steps: tuple[str, ...], rounds: int, train_images: int,
                concurrency: int, step_timeout: float, deadline_a: float, deadline_b: float, log_dir: Path,
                warmup: bool = True, progress=print) -> NResult:
    """A fresh server with a runs folder of its own; warm-up; phase A (browsers alone); phase B (browsers while
    the trainers train); the run folders checked. The server is stopped and the contexts closed in any case."""
    trainers_n, browsers_n = (n + 1) // 2, n // 2
    plans = await asyncio.to_thread(make_plans, browsers_n + 1, "custom")  # + 1: the warm-up's values
    warm_plan, plans = plans[-1], plans[:-1]
    tplans = make_trainer_plans(trainers_n, train_images)
    others = Others(plans + [warm_plan])
    log_path = log_dir / f"server-training-N{n}.log"
    tmp = Path(tempfile.mkdtemp(prefix=f"load-training-N{n}-", dir=log_dir))
    runs_root = tmp / "runs"
    before_env = os.environ.get("EXPLORER_RUNS")
    os.environ["EXPLORER_RUNS"] = str(runs_root)  # the server inherits it: a runs folder of its own per N
    try:
        server = Server(log_path)
    finally:
        if before_env is None:
            os.environ.pop("EXPLORER_RUNS", None)
        else:
            os.environ["EXPLORER_RUNS"] = before_env
    t_all = time.monotonic()
    contexts: list = []
    peaks = {"rss": 0}
    stop = asyncio.Event()
    watcher = None
    try:
        await asyncio.to_thread(server.wait_healthy)
        warm_text = "none"
        if warmup:
            pages = await _contexts(browser, 1, step_timeout * 2, contexts)
            warm: list[BrowseStep] = []
            await browse(Session(warm_plan, pages[0], server.url, others, tmp, step_timeout * 2), browse_steps,
                         Slots(1), step_timeout * 2, 1, warm)
            warm_trainer = Trainer(TrainerPlan(-1, 1, 0, train_images), pages[0], server.url, step_timeout * 2,
                                   {}, {})
            t0 = time.perf_counter()
            try:  # /train with the trainers' number of images: its plan and epoch estimate cached, no run
                await warm_trainer.open()
                box = pages[0].get_by_label("Training images (0: all)", exact=True)
                await box.fill(str(train_images))
                await box.press("Enter")
                await asyncio.sleep(POLL_S)
                await warm_trainer.wait("warm-up /train", lambda s: s["metrics"].get("Training images")
                                        == f"{train_images:,}", step_timeout * 2)
                warm.append(BrowseStep(-1, 0, "train", "ok", (time.perf_counter() - t0) * 1000, 0))
            except Exception as e:
                warm.append(BrowseStep(-1, 0, "train", "error", None, 0, str(e)[:200]))
            await _close_all(contexts)
            contexts.clear()
            warm_text = ", ".join(f"{x.step} {x.status}" + (f" {x.ms:,.0f} ms" if x.ms else "") for x in warm)
            progress(f"  N={n}: warm-up {warm_text}")
        await asyncio.sleep(2)
        rss_before = rss_bytes(server.proc.pid)
        peaks["rss"] = rss_before
        meter = Meter(server)
        alone_steps: list[BrowseStep] = []
        training_steps: list[BrowseStep] = []
        results: list[TrainerResult] = []

        def status():
            c = collections.Counter(t.result.outcome for t in trainer_objs) if trainer_objs else {}
            return (f"N={n}: {time.monotonic() - t_all:,.0f} s, alone {len(alone_steps)} steps, with training "
                    f"{len(training_steps)} steps, trainers {dict(c)}")
        trainer_objs: list[Trainer] = []
        watcher = asyncio.create_task(_rss_watch(server, stop, peaks, progress, status))

        # Phase A: the browsers alone.
        alone = None
        if browsers_n:
            meter.start()
            pages = await _contexts(browser, browsers_n, step_timeout, contexts)
            slots = Slots(concurrency)
            end = time.monotonic() + deadline_a
            await asyncio.gather(*(browse(Session(p, pg, server.url, others, tmp, step_timeout), browse_steps,
                                          slots, step_timeout, rounds, alone_steps, deadline=end)
                                   for p, pg in zip(plans, pages)))
            alone = meter.phase("alone", alone_steps)
            await _close_all(contexts)
            contexts.clear()
            progress(f"  N={n}: phase A (browsers alone) {len(alone_steps)} steps, p50 "
                     f"{_ms(percentile(alone.latencies(), 50))} ms, {alone.wall_s:,.0f} s")

        # Phase B: the same browsers while the trainers train.
        meter.start()
        registry: dict[str, int] = {}
        epochs_of = {p.epochs: p.index for p in tplans}
        tpages = await _contexts(browser, trainers_n, step_timeout, contexts)
        bpages = await _contexts(browser, browsers_n, step_timeout, contexts)
        trainer_objs[:] = [Trainer(p, pg, server.url, step_timeout, registry, epochs_of)
                           for p, pg in zip(tplans, tpages)]
        slots = Slots(concurrency)
        end = time.monotonic() + deadline_b
        training_done = asyncio.Event()

        async def all_trainers():
            try:
                await asyncio.gather(*(train(t, slots, step_timeout, end) for t in trainer_objs))
            finally:
                training_done.set()

        def runs_active() -> bool:  # a run of a trainer is queued or running (read from its folder)
            for run_id in list(registry):
                try:
                    state = json.loads((runs_root / run_id / "status.json").read_text()).get("state")
                except (OSError, ValueError):
                    continue
                if state in ("queued", "running"):
                    return True
            return not training_done.is_set() and not registry  # still setting up: training is coming

        await asyncio.gather(all_trainers(), *(
            browse(Session(p, pg, server.url, others, tmp, step_timeout), browse_steps, slots, step_timeout, rounds,
                   training_steps, keep_going=lambda: not training_done.is_set(), training=runs_active, deadline=end)
            for p, pg in zip(plans, bpages)))
        training = meter.phase("training", training_steps)
        results = [t.result for t in trainer_objs]
        stopped = "" if all(t.outcome in ("finished", "error", "wrong") for t in results) else \
            f"deadline of {deadline_b:.0f} s for phase B hit"
        problems = check_folders(runs_root, results, tplans)
        return NResult(n, results, tplans, alone, training, problems, rss_before, peaks["rss"],
                       time.monotonic() - t_all, log_path, runs_root, warm_text, stopped=stopped)
    finally:
        stop.set()
        if watcher:
            await watcher
        await _close_all(contexts)
        await asyncio.to_thread(server.stop)


async def bench(ns: list[int], *, browse_steps: tuple[str, ...] = BROWSE_STEPS, rounds: int = 2,
                train_images: int = 64, concurrency: int = 4, step_timeout: float = 90.0,
                deadline_a=lambda n: 60 + 6 * n, deadline_b=lambda n: 180 + 15 * n, log_dir: Path,
                warmup: bool = True, progress=print, on_result=None) -> list[NResult]:
    """Every N in turn (a fresh server each), with ONE Chromium; closed in any case."""
    from playwright.async_api import async_playwright

    out: list[NResult] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            for n in ns:
                progress(f"N={n}: starting a fresh server with a runs folder of its own")
                r = await run_n(browser, n, browse_steps=browse_steps, rounds=rounds, train_images=train_images,
                                concurrency=concurrency, step_timeout=step_timeout, deadline_a=deadline_a(n),
                                deadline_b=deadline_b(n), log_dir=log_dir, warmup=warmup, progress=progress)
                r.log_notes = _log_notes(r.log_path)
                r.browser_version = browser.version
                out.append(r)
                c = r.outcomes()
                progress(f"N={n}: runs {dict(c)}, {r.errors} errors, {r.mixed_up} mixed up, {r.wall_s:,.0f} s"
                         + (f" ({r.stopped})" if r.stopped else ""))
                if on_result:
                    on_result(out)
        finally:
            try:
                await asyncio.wait_for(browser.close(), timeout=30)
            except Exception:
                pass
    return out


def run(ns: list[int], *, log_dir: Path | None = None, **kw) -> list[NResult]:
    """The bench from synchronous code (tests/test_load_training.py): one NResult per N."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="explorer-load-training-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(bench(ns, log_dir=log_dir, **kw))


# -- the report ----------------------------------------------------------------------------------------------------
def _p(phase: Phase | None, q: float) -> float | None:
    return percentile(phase.latencies(), q) if phase else None


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or b is None else f"{b / a:.2f}×"


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def report(runs: list[NResult], argv: list[str], *, browse_steps, rounds: int, train_images: int,
           concurrency: int, step_timeout: float, deadlines: str) -> str:
    chromium = runs[0].browser_version if runs else "?"
    lines = [
        "# Load with training: half the sessions train, half browse, one server",
        "",
        f"{machine_line()}, Chromium {chromium} (headless, one browser, one context per session)  ",
        f"Command: `{' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'bench/load_training.py'] + argv)}`  ",
        f"A fresh server and runs folder per N. ⌈N/2⌉ trainers: LeNet-5 on digits, {train_images} training "
        f"images, trainer k: epochs k + 1, seed k (runs train one at a time in the server's workers). ⌊N/2⌋ "
        f"browsers: {' → '.join(browse_steps)}, {rounds} rounds alone (A), then again while the runs train (B, at "
        f"least {rounds} rounds, until the trainers are done). Steps through a pool of {concurrency} slots; step "
        f"timeout {step_timeout:.0f} s; deadlines {deadlines}.",
        "",
        "Targets: 0 errors, 0 runs mixed up between sessions, every run finished, or queued with its position or "
        "training (epoch e of E shown) when the deadline came. "
        "Latency: browse steps, from the action until the page is idle with the expected value (ok steps; the "
        "wait for a slot not included). \"Rest of the machine\": CPU used by other processes on this shared VM, as "
        "a share of all its cores over phase B.",
        "",
        "| N | trainers / browsers | runs finished | queued with position | training at the deadline | errors | mixed up | browse p50 / p95 ms "
        "alone | browse p50 / p95 ms while training | ratio p50 / p95 | time to result p50 / max s | largest "
        "queue position shown | server RSS before / peak MiB | rest of the machine | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        c = r.outcomes()
        a50, a95, b50, b95 = _p(r.alone, 50), _p(r.alone, 95), _p(r.training, 50), _p(r.training, 95)
        ttr = sorted(t.time_to_result_s for t in r.trainers if t.time_to_result_s is not None)
        pos = max((p for t in r.trainers for p in t.positions), default=None)
        other = f"{r.training.others_share:.0%}" if r.training else "—"
        lines.append(
            f"| {r.n} | {len(r.trainers)} / {r.browsers} | {c['finished']} of {len(r.trainers)} | {c['queued']} "
            f"| {c['training']} | {r.errors} | {r.mixed_up} | {_ms(a50)} / {_ms(a95)} | {_ms(b50)} / {_ms(b95)} "
            f"| {_ratio(a50, b50)} / {_ratio(a95, b95)} | {_s(percentile(ttr, 50))} / {_s(ttr[-1] if ttr else None)} "
            f"| {pos if pos is not None else '—'} | {r.rss_before / MiB:,.0f} / {r.rss_peak / MiB:,.0f} "
            f"| {other} | {r.wall_s:,.0f} |")
    lines += ["", "Per phase:", "",
              "| N | phase | browse steps ok / error / wrong / skipped | steps while a run was active | "
              + " | ".join(f"{s} p50 / p95 ms" for s in BROWSE_STEPS) + " | wall s | CPU s: server + workers / "
              "browser / bench / rest of the machine |",
              "|---|---|---|---|" + "---|" * len(BROWSE_STEPS) + "---|---|"]
    for r in runs:
        for ph in (r.alone, r.training):
            if ph is None:
                continue
            cells = []
            for st in BROWSE_STEPS:
                lat = ph.latencies(st)
                cells.append(f"{_ms(percentile(lat, 50))} / {_ms(percentile(lat, 95))} ({len(lat)})" if lat else "—")
            active = sum(x.training for x in ph.steps if x.status == "ok")
            lines.append(f"| {r.n} | {'A, alone' if ph.name == 'alone' else 'B, with training'} | {ph.count('ok')} / "
                         f"{ph.count('error')} / {ph.count('wrong')} / {ph.count('skipped')} | {active} | "
                         + " | ".join(cells) + f" | {ph.wall_s:,.0f} | {ph.server_cpu_s:,.0f} / "
                         f"{ph.browser_cpu_s:,.0f} / {ph.bench_cpu_s:,.0f} / {ph.others_cpu_s:,.0f} |")
    for r in runs:
        lines += ["", f"Trainers at N = {r.n} (warm-up: {r.warmup}):", "",
                  "| trainer | epochs / seed | outcome | run | open / set / start ms | queue positions shown | time "
                  "to result s | test accuracy | run folder |", "|---|---|---|---|---|---|---|---|---|"]
        for t, p in zip(r.trainers, r.plans):
            steps = " / ".join(_ms(t.steps.get(s)) for s in ("open", "set", "start"))
            positions = " → ".join(map(str, t.positions)) if t.positions else "—"
            why = f" ({t.reason[:300]})" if t.reason else ""
            lines.append(f"| {t.index} | {p.epochs} / {p.seed} | {t.outcome}{why} | {t.run_id or '—'} | {steps} "
                         f"| {positions} | {_s(t.time_to_result_s)} | {t.accuracy or '—'} "
                         f"| {t.folder_check or 'agrees' if t.run_id else '—'} |")
        bad = [x for ph in (r.alone, r.training) if ph for x in ph.steps if x.status in ("error", "wrong")]
        if bad or r.folder_problems or r.stopped:
            lines += ["", f"What went wrong at N = {r.n}:", ""]
            groups: dict = collections.defaultdict(list)
            for x in bad:
                groups[(x.status, x.step, re.sub(r"\d[\d,.]*", "#", re.sub(r"last seen \{.*", "…", x.reason)))
                       ].append(x)
            for (status, step, _), xs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
                lines.append(f"- {len(xs)}× {status} at {step}; e.g. session {xs[0].session}: {xs[0].reason[:400]}")
            lines += [f"- run folders: {p}" for p in r.folder_problems]
            if r.stopped:
                lines.append(f"- {r.stopped}")
        if r.log_notes:
            lines += ["", f"Server log at N = {r.n} (`{r.log_path}`), lines with Traceback / Error / Warning:", "",
                      "```"] + r.log_notes + ["```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+",
                    help=f"N values (default {' '.join(map(str, DEFAULT_SESSIONS))})")
    ap.add_argument("--quick", action="store_true", help=f"N = {' '.join(map(str, QUICK_SESSIONS))} only")
    ap.add_argument("--browse-steps", nargs="+", choices=list(STEPS), default=list(BROWSE_STEPS),
                    help="the browsers' steps, in bench/load.py's order (Layers needs Compose before it)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the browse steps per browser and phase")
    ap.add_argument("--train-images", type=int, default=64, help="training images per run")
    ap.add_argument("--concurrency", type=int, default=4, help="page actions in flight at most (0 = no cap)")
    ap.add_argument("--step-timeout", type=float, default=90.0, help="seconds per page action")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds for phase B per N (default 180 + 15·N); phase A gets 60 + 6·N")
    ap.add_argument("--no-warmup", action="store_true", help="the sessions meet the server's cold caches")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load_training.md")
    ap.add_argument("--log-dir", type=Path, default=None, help="where the server logs and runs go (default: temp)")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    ns = args.sessions or (list(QUICK_SESSIONS) if args.quick else list(DEFAULT_SESSIONS))
    if any(n < 1 for n in ns):
        ap.error("--sessions takes positive numbers")
    steps = tuple(s for s in STEPS if s in args.browse_steps)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="explorer-load-training-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"server logs and runs folders in {log_dir}")

    def on_term(signum, frame):  # `finally` blocks close the browser and stop the server
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    deadline_b = (lambda n: args.deadline) if args.deadline is not None else (lambda n: 180 + 15 * n)
    deadlines = (f"A 60 + 6·N s, B {args.deadline:.0f} s" if args.deadline is not None
                 else "A 60 + 6·N s, B 180 + 15·N s")
    opts = dict(browse_steps=steps, rounds=args.rounds, train_images=args.train_images,
                concurrency=args.concurrency, step_timeout=args.step_timeout, deadlines=deadlines)

    def write(runs):  # after every N, so a later failure keeps the rows already measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(runs, argv, **opts))

    try:
        runs = run(ns, browse_steps=steps, rounds=args.rounds, train_images=args.train_images,
                   concurrency=args.concurrency, step_timeout=args.step_timeout, deadline_b=deadline_b,
                   log_dir=log_dir, warmup=not args.no_warmup, on_result=write)
    except KeyboardInterrupt:
        print(f"interrupted: contexts and browser closed, server stopped; rows measured so far are in {args.out}",
              file=sys.stderr)
        return 130
    text = report(runs, argv, **opts)
    print(text)
    print(f"written to {args.out}")
    return 0 if all(r.errors == 0 and r.mixed_up == 0 and r.accounted for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
