"""The training loop: one function, `fit`, plus the (distributed) evaluation.

Per optimizer update s (0-based): lr = peak_lr * schedule(s); `batch_size / (micro_batch_size x
world_size)` micro-batches of forward/backward per process under autocast, gradients synchronised on
the last one only; the pre-clip global grad norm is checked (training/nonfinite.py) and the gradient
clipped; AdamW steps. Logged `step` counts completed updates, so the event at step k carries the LR
of update k-1 (0-based) -- exactly peak_lr * schedule(k - 1). `train/loss` is the mean training loss
over the updates since the previous train event (all ranks, all micro-batches), `grad_norm` the last
update's. Every logged number is the same at any world size (up to float summation order).
Every update's gradient norms (pre-clip l2 and l1) go to `grad_norms.bin` (training/rundir.py) for
the schedule refinement of analysis/refine.py: kept on the device and written at log events, so
they cost no extra synchronisation. A reactive schedule (`schedule.reactive`, e.g. step decay on
plateau) observes every periodic validation loss; its state travels in the checkpoints.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from data.loader import BatchLoader, eval_batches, num_windows
from training import checkpoint, preemption
from training.distributed import World, all_reduce_sum, any_rank, barrier
from training.metrics import MetricsLogger, mfu, peak_flops, plot_loss_curve
from training.nonfinite import NonFiniteGuard
from training.optim import set_lr
from training.parallelize import Prepared, accumulation_steps, grad_norm_value
from training.progress import Progress
from training.rundir import GRAD_NORM_DTYPE, append_grad_norms

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(prepared: Prepared, batches, device: torch.device, world: World = World(),
             progress: Progress | None = None, desc: str = "val", total: int | None = None) -> float:
    """Mean next-token loss over `batches` (an iterable, streamed: the whole validation split is never
    held at once), weighted by sequences (the last may be short). Batch i is evaluated by rank
    i mod world_size and the sums all-reduced: the single-process value, split. Every rank runs the
    same number of forwards (FSDP gathers parameters in each); a rank out of batches repeats the
    first one with weight 0. `total`: the number of batches, for the progress lines."""
    model = prepared.model
    was_training = model.training
    model.eval()
    loss_sum, count, seen, spare = torch.zeros((), dtype=torch.float64, device=device), 0, 0, None
    for i, (x, y) in enumerate(progress.evaluating(batches, total=total, desc=desc) if progress else batches):
        seen, spare = seen + 1, spare or (x, y)
        if i % world.size == world.rank:
            with prepared.autocast:
                loss = model(x.to(device), y.to(device))
            loss_sum += loss.double() * x.shape[0]
            count += x.shape[0]
    for _ in range(-(-seen // world.size) - len(range(world.rank, seen, world.size))):
        with prepared.autocast:
            model(spare[0].to(device), spare[1].to(device))
    model.train(was_training)
    sums = torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=device)])
    total_loss, total_count = all_reduce_sum(sums, world).tolist()
    return total_loss / total_count


class GradNormRecorder:
    """Each update's (l2, l1) gradient norms, held on the device until `flush` writes them (rank 0)."""

    def __init__(self, enabled: bool, run_dir: Path, world: World):
        self.enabled, self.run_dir, self.world = enabled, run_dir, world
        self.pending: list[tuple[int, torch.Tensor]] = []

    def record(self, step: int, l2: torch.Tensor, params) -> None:
        if self.enabled:
            grads = [p.grad for p in params if p.grad is not None]
            l1 = grad_norm_value(torch.nn.utils.get_total_norm(grads, 1.0))  # all ranks: a collective under FSDP
            self.pending.append((step, torch.stack([l2.detach().float(), l1.float()])))

    def flush(self) -> None:
        if not self.pending:
            return
        norms = torch.stack([n for _, n in self.pending]).cpu().numpy()
        if self.world.main:
            records = np.empty(len(self.pending), dtype=GRAD_NORM_DTYPE)
            records["step"], records["l2"], records["l1"] = [s for s, _ in self.pending], norms[:, 0], norms[:, 1]
            append_grad_norms(self.run_dir, records)
        self.pending = []


def fit(cfg: DictConfig, run_dir: Path, prepared: Prepared, optimizer, schedule, data, logger: MetricsLogger,
        device: torch.device, world: World = World(), start: dict | None = None, resumed: bool = False) -> dict:
    """Train until trainer.max_steps. `start`: a checkpoint state to continue from (own resume or a
    branch, `resumed` tells which). Only rank 0's `logger` writes. Returns a summary dict."""
    t = cfg.trainer
    model, raw_model = prepared.model, prepared.raw
    peak_lr = float(cfg.optimizer.lr)
    accum = accumulation_steps(t.batch_size, t.micro_batch_size, world.size)
    tokens_per_step = t.batch_size * t.seq_len
    loader = BatchLoader(data.train, t.micro_batch_size, t.seq_len, seed=cfg.seed, rank=world.rank,
                         world_size=world.size)
    val_batches = list(eval_batches(data.val, t.eval_batch_size, t.seq_len, t.eval_batches))

    step, tokens = 0, 0
    if start is not None:
        checkpoint.restore(start, raw_model, optimizer, loader, schedule)
        step, tokens = int(start["step"]), int(start["tokens"])
    if step >= t.max_steps and resumed:
        log.info("Run already finished at step %d (trainer.max_steps=%d); nothing to do.", step, t.max_steps)
        return {"step": step, "tokens": tokens, "run_dir": str(run_dir)}

    flops_per_token = raw_model.flops_per_token(t.seq_len)
    peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, t.peak_flops)
    peak = peak * world.size if peak else None  # MFU per accelerator: the run's FLOP/s over all of them
    guard = NonFiniteGuard(t, device, world, run_dir)
    norms = GradNormRecorder(bool(t.log_grad_norms), run_dir, world)
    reactive = getattr(schedule, "reactive", False)

    def save() -> Path | None:
        guard.check(step, lr, params=raw_model.parameters())  # never write a non-finite state
        norms.flush()  # the norms of every step the checkpoint covers are on disk with it
        state = checkpoint.capture(raw_model, optimizer, loader, step, tokens, schedule)  # collective under FSDP
        return checkpoint.save(run_dir, state, cfg, keep=t.keep_checkpoints) if world.main else None

    def validate(batches) -> float:
        return evaluate(prepared, batches, device, world)

    if not resumed and t.eval_interval:  # the curve's first point (a branch: the parent's level)
        logger.log({"step": step, "tokens": tokens, "val/loss": validate(val_batches)})

    model.train()
    progress = Progress(total=t.max_steps, initial=step, log_interval=t.log_interval,
                        bar=bool(t.progress) and world.main)
    clock, clock_tokens = time.perf_counter(), tokens
    loss_sum, loss_updates = torch.zeros((), device=device), 0  # training loss since the last train event
    lr = peak_lr * schedule(step)
    # Preemption (training/preemption.py): a signal only sets a flag; the step in flight finishes.
    with preemption.StopOnSignal() as stop:
        while step < t.max_steps:
            lr = peak_lr * schedule(step)
            set_lr(optimizer, lr)
            update_loss = torch.zeros((), device=device)
            for micro in range(accum):
                x, y = loader.next_batch()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with prepared.gradient_sync(micro == accum - 1):
                    with prepared.autocast:
                        loss = model(x, y)
                    (loss / accum).backward()
                update_loss += loss.detach()
            grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(raw_model.parameters(),
                                                                       t.grad_clip or float("inf")))
            norms.record(step + 1, grad_norm, raw_model.parameters())
            if guard.admit(grad_norm, step):
                optimizer.step()
                loss_sum += update_loss / accum
                loss_updates += 1
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += tokens_per_step
            progress.update(step)

            checkpoint_due = step == t.max_steps or (t.checkpoint_interval and step % t.checkpoint_interval == 0)
            if step % t.log_interval == 0 or checkpoint_due:
                # One device sync per log event, not per step; the mean over ranks and updates.
                train_loss = all_reduce_sum(loss_sum, world).item() / world.size / max(loss_updates, 1)
                guard.check(step, lr, loss=train_loss)
                elapsed = time.perf_counter() - clock
                tok_per_s = (tokens - clock_tokens) / elapsed if elapsed > 0 else None
                event = {"step": step, "tokens": tokens, "train/loss": train_loss if loss_updates else None,
                         "lr": lr, "grad_norm": grad_norm.item(), "tok_per_s": tok_per_s,
                         "mfu": mfu(flops_per_token, tok_per_s, peak) if tok_per_s else None}
                logger.log(event | ({"skipped_updates": guard.skipped} if guard.skipped else {}))
                progress.report(event)
                norms.flush()
                loss_sum, loss_updates = torch.zeros((), device=device), 0
                clock, clock_tokens = time.perf_counter(), tokens
            if t.eval_interval and step % t.eval_interval == 0 and step < t.max_steps:
                val = validate(val_batches)
                logger.log({"step": step, "tokens": tokens, "val/loss": val})
                progress.report({"step": step, "val/loss": val})
                if reactive:  # e.g. step decay on plateau: the LR of the next updates may change
                    schedule.observe(step, val)
                clock, clock_tokens = time.perf_counter(), tokens  # evaluation time is not throughput
            if checkpoint_due and step < t.max_steps:
                save()
                clock, clock_tokens = time.perf_counter(), tokens
            # SIGTERM / SIGUSR1 (to any rank): every rank stops after this step, rank 0 checkpoints it.
            if step < t.max_steps and any_rank(stop.requested, device, world):
                progress.close()
                if not checkpoint_due:
                    save()
                barrier(world)  # no rank exits (and makes the launcher tear the group down) before the save
                stop.exit(checkpoint.checkpoint_dir(run_dir, step), peers=world.size > 1)

    if t.eval_interval:
        logger.log({"step": step, "tokens": tokens, "val/loss": validate(val_batches)})
    full_val = evaluate(prepared, eval_batches(data.val, t.eval_batch_size, t.seq_len, None), device, world,
                        progress, "final val", total=-(-num_windows(data.val, t.seq_len) // t.eval_batch_size))
    progress.close()
    progress.report({"step": step, "final/val_loss": full_val})
    logger.log({"step": step, "tokens": tokens, "final/val_loss": full_val})
    last = save()
    if world.main:
        plot_loss_curve(run_dir)
        log.info("Finished %d steps (%d tokens): final val loss %.4f on the whole validation split; %s",
                 step, tokens, full_val, last)
    return {"step": step, "tokens": tokens, "final_val_loss": full_val, "checkpoint": str(last),
            "run_dir": str(run_dir)}
