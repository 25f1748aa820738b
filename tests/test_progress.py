"""training.progress: plain log lines (no carriage return) where stderr is not a terminal or the bar is
off, a tqdm bar on a terminal, ETA from this process's own steps (a fake clock), and evaluation progress."""
import io
import logging
import re

import pytest

from training.progress import Progress, duration


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def train_event(step, **extra):
    return {"step": step, "tokens": 512 * step, "train/loss": 4.51234, "lr": 1.2e-3, "tok_per_s": 12345.4,
            "grad_norm": 0.5, **extra}


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="train")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "train"]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45.4, "45s"), (59.6, "1m00s"), (192, "3m12s"),
                                           (3600, "1h00m00s"), (7507, "2h05m07s"), (-3, "0s")])
def test_duration_format(seconds, text):
    assert duration(seconds) == text


def test_batch_line_format_and_eta_of_a_resumed_run(lines):
    clock, stream = FakeClock(), io.StringIO()
    # Resumed at step 100 of 400: the 100 steps before are not this process's; 20 steps take 96 s.
    with Progress(total=400, initial=100, log_interval=10, stream=stream, clock=clock) as progress:
        for step in range(101, 121):
            clock.now += 4.8
            progress.update(step)
            if step % 10 == 0:
                progress.report(train_event(step, mfu=0.3124))
    # ETA = steps left x 4.8 s: 290 x 4.8 = 1392 s at step 110, 280 x 4.8 = 1344 s at step 120.
    assert lines() == ["step 110/400 | loss 4.5123 | lr 1.20e-03 | 12,345 tok/s | MFU 31.2% | ETA 23m12s",
                       "step 120/400 | loss 4.5123 | lr 1.20e-03 | 12,345 tok/s | MFU 31.2% | ETA 22m24s"]
    assert stream.getvalue() == ""  # nothing drawn: no bar, no carriage return


def test_batch_lines_only_at_the_log_interval_and_the_last_step(lines):
    clock = FakeClock()
    progress = Progress(total=25, initial=0, log_interval=10, stream=io.StringIO(), clock=clock)
    for step in (10, 15, 20, 25):  # 15: the extra train event of a checkpoint step off the interval
        clock.now += 1
        progress.update(step)
        progress.report(train_event(step))
    progress.close()
    assert [line.split(" | ")[0] for line in lines()] == ["step 10/25", "step 20/25", "step 25/25"]
    assert lines()[-1].endswith("ETA 0s")


def test_unknown_values_are_left_out(lines):
    progress = Progress(total=50, initial=0, log_interval=1, stream=io.StringIO(), clock=FakeClock())
    # Before any step there is no rate: no ETA; no MFU on an unknown accelerator; a skipped loss.
    progress.report({"step": 0, "train/loss": None, "lr": 1e-4, "tok_per_s": None, "mfu": None})
    progress.report({"step": 0, "tokens": 0, "val/loss": 9.87654})
    progress.report({"step": 50, "tokens": 0, "final/val_loss": 3.5})
    assert lines() == ["step 0/50 | lr 1.00e-04", "step 0/50 | val/loss 9.8765",
                       "step 50/50 | final/val_loss 3.5000 (whole validation split)"]


def test_no_carriage_return_in_any_batch_output(lines, capsys):
    stream = io.StringIO()
    with Progress(total=100, log_interval=1, stream=stream) as progress:
        for step in range(1, 101):
            progress.update(step)
            progress.report(train_event(step))
        progress.message("checkpoint saved")
        list(progress.evaluating(range(80), desc="val"))
    out, err = capsys.readouterr()
    assert len(lines()) > 100
    assert not any("\r" in text for text in [stream.getvalue(), out, err, *lines()])


def test_bar_off_on_a_terminal_still_logs_lines(lines):
    stream = Terminal()
    with Progress(total=20, log_interval=10, bar=False, stream=stream, clock=FakeClock()) as progress:
        progress.update(10)
        progress.report(train_event(10))
    assert lines() == ["step 10/20 | loss 4.5123 | lr 1.20e-03 | 12,345 tok/s"]
    assert stream.getvalue() == ""


def test_bar_on_a_terminal_draws_tqdm_and_logs_no_train_lines(lines):
    stream = Terminal()
    with Progress(total=20, initial=5, log_interval=5, bar=True, stream=stream) as progress:
        for step in range(6, 21):
            progress.update(step)
            if step % 5 == 0:
                progress.report(train_event(step))
        assert list(progress.evaluating([1, 2, 3], desc="val")) == [1, 2, 3]
        progress.message("val/loss 4.0")
    drawn = stream.getvalue()
    assert "\r" in drawn and "20/20" in drawn and "loss=4.512" in drawn and "tok_s=12,345" in drawn
    assert "val/loss 4.0" in drawn  # the message is written by the bar (no console handler here) ...
    assert lines() == ["val/loss 4.0"]  # ... and logged; the train events are the bar's postfix only


def test_bar_routes_console_logging_above_itself_and_restores_it(monkeypatch):
    """Under Hydra the root logger prints to the console: while the bar lives, those records go through
    tqdm.write (the bar is cleared and redrawn around them), and the handler comes back after."""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    console = logging.StreamHandler(terminal)
    console.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    monkeypatch.setattr(logging.root, "handlers", [console])
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    with Progress(total=10, log_interval=1) as progress:  # default stream: sys.stderr
        assert console not in logging.root.handlers
        progress.update(3)
        progress.message("step 3: val/loss 4.2")
    assert logging.root.handlers == [console]
    drawn = terminal.getvalue()
    assert "[train] step 3: val/loss 4.2\n" in drawn and drawn.count("step 3: val/loss") == 1
    assert re.search(r"0/10.*\r +\r\[train\] step 3", drawn)  # the drawn bar was erased for the record


@pytest.mark.parametrize("batches, expected", [
    (8, []),                                                           # a few batches: nothing extra
    (20, ["val: 20 batches", "val: 20 batches in 40s"]),
    (100, ["val: 100 batches", *(f"val: {n}/100 batches ({n}%), {duration(2 * n)}" for n in range(10, 100, 10)),
           "val: 100 batches in 3m20s"]),
])
def test_evaluation_progress_in_batch_logs(lines, batches, expected):
    clock = FakeClock()
    progress = Progress(total=10, log_interval=1, stream=io.StringIO(), clock=clock)
    seen = []
    for batch in progress.evaluating(iter(range(batches)), total=batches, desc="val"):
        clock.now += 2  # each batch takes 2 s
        seen.append(batch)
    assert seen == list(range(batches)) and lines() == expected


def test_evaluation_of_unknown_length_logs_start_and_end(lines):
    progress = Progress(total=10, log_interval=1, stream=io.StringIO(), clock=FakeClock())
    assert sum(progress.evaluating((b for b in range(7)), desc="final")) == 21
    assert lines() == ["final: an unknown number of batches", "final: 7 batches in 0s"]


@pytest.mark.parametrize("kwargs", [{"total": -1}, {"total": 10, "initial": -2}, {"total": 10, "log_interval": 0}])
def test_bad_arguments_name_the_problem(kwargs):
    with pytest.raises(ValueError, match="log_interval >= 1"):
        Progress(**{"initial": 0, "log_interval": 1, **kwargs})
