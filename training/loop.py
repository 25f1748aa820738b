"""The training loop: one function, `fit`, plus evaluation and restoring from a checkpoint.

Per optimizer update s (0-based): lr = peak_lr * schedule(s); `batch_size / micro_batch_size`
micro-batches of forward/backward under autocast; the pre-clip global grad norm is recorded and the
gradient clipped; AdamW steps. Logged `step` counts completed updates, so the event at step k
carries the LR of update k-1 (0-based) -- exactly peak_lr * schedule(k - 1).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from data.loader import BatchLoader, eval_batches
from training import checkpoint, preemption
from training.metrics import MetricsLogger, mfu, peak_flops, plot_loss_curve
from training.optim import set_lr
from training.setup import autocast_context

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model, batches, device: torch.device, autocast) -> float:
    """Mean next-token loss over the given batches, weighted by sequences (the last may be short)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast:
            loss = model(x.to(device), y.to(device))
        total += loss.item() * x.shape[0]
        count += x.shape[0]
    model.train(was_training)
    return total / count


def restore(state: dict, model, optimizer, loader: BatchLoader) -> None:
    """Load a checkpoint's full state into freshly built parts (model already on its device)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(
            f"The checkpoint's weights do not fit this model ({str(err).splitlines()[0]}...). "
            f"Use the same model config as the run that wrote it."
        ) from err
    optimizer.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["loader"])
    checkpoint.set_rng_state(state["rng"])


def _check_finite(loss: float, step: int, lr: float, run_dir: Path) -> None:
    if not math.isfinite(loss):
        good = checkpoint.latest_checkpoint(run_dir)
        raise FloatingPointError(
            f"Training loss is {loss} at step {step} (lr {lr:.3g}); stopped before saving anything. "
            f"Last good checkpoint: {good or '(none)'}. Lower optimizer.lr or warm up longer "
            f"(trainer.warmup_steps), then resume from that checkpoint (trainer.init_from=...)."
        )


def fit(cfg: DictConfig, run_dir: Path, model, optimizer, schedule, data, logger: MetricsLogger,
        device: torch.device, start: dict | None = None, resumed: bool = False) -> dict:
    """Train until trainer.max_steps. `start`: a checkpoint state to continue from (own resume or a
    branch, `resumed` tells which). Returns a summary dict."""
    t = cfg.trainer
    raw_model = model
    peak_lr = float(cfg.optimizer.lr)
    accum = t.batch_size // t.micro_batch_size
    tokens_per_step = t.batch_size * t.seq_len
    autocast = autocast_context(device, t.precision)
    loader = BatchLoader(data.train, t.micro_batch_size, t.seq_len, seed=cfg.seed)
    val_batches = list(eval_batches(data.val, t.eval_batch_size, t.seq_len, t.eval_batches))

    step, tokens = 0, 0
    if start is not None:
        restore(start, raw_model, optimizer, loader)
        step, tokens = int(start["step"]), int(start["tokens"])
    if step >= t.max_steps and resumed:
        log.info("Run already finished at step %d (trainer.max_steps=%d); nothing to do.", step, t.max_steps)
        return {"step": step, "tokens": tokens, "run_dir": str(run_dir)}

    if t.compile is True or (t.compile == "auto" and device.type == "cuda"):
        model = torch.compile(model)
    flops_per_token = raw_model.flops_per_token(t.seq_len)
    peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, t.peak_flops)

    def save() -> Path:
        state = {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "tokens": tokens, "loader": loader.state_dict(), "rng": checkpoint.rng_state()}
        return checkpoint.save(run_dir, state, cfg, keep=t.keep_checkpoints)

    if not resumed and t.eval_interval:  # the curve's first point (a branch: the parent's level)
        logger.log({"step": step, "tokens": tokens, "val/loss": evaluate(model, val_batches, device, autocast)})

    model.train()
    bar = tqdm(total=t.max_steps, initial=step, disable=not t.progress, dynamic_ncols=True, desc="train")
    clock, clock_tokens = time.perf_counter(), tokens
    # Preemption (training/preemption.py): a signal only sets a flag; the step in flight finishes.
    with preemption.StopOnSignal() as stop:
        while step < t.max_steps:
            lr = peak_lr * schedule(step)
            set_lr(optimizer, lr)
            loss_sum = torch.zeros((), device=device)
            for _ in range(accum):
                x, y = loader.next_batch()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast:
                    loss = model(x, y)
                (loss / accum).backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), t.grad_clip or math.inf)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += tokens_per_step
            bar.update(1)

            checkpoint_due = step == t.max_steps or (t.checkpoint_interval and step % t.checkpoint_interval == 0)
            if step % t.log_interval == 0 or checkpoint_due:
                train_loss = (loss_sum / accum).item()  # one device sync per log event, not per step
                _check_finite(train_loss, step, lr, run_dir)
                elapsed = time.perf_counter() - clock
                tok_per_s = (tokens - clock_tokens) / elapsed if elapsed > 0 else None
                logger.log({"step": step, "tokens": tokens, "train/loss": train_loss, "lr": lr,
                            "grad_norm": grad_norm.item(), "tok_per_s": tok_per_s,
                            "mfu": mfu(flops_per_token, tok_per_s, peak) if tok_per_s else None})
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s or 0:,.0f}")
                clock, clock_tokens = time.perf_counter(), tokens
            if t.eval_interval and step % t.eval_interval == 0 and step < t.max_steps:
                val = evaluate(model, val_batches, device, autocast)
                logger.log({"step": step, "tokens": tokens, "val/loss": val})
                bar.write(f"step {step}: val/loss {val:.4f}")
                clock, clock_tokens = time.perf_counter(), tokens  # evaluation time is not throughput
            if checkpoint_due and step < t.max_steps:
                save()
                clock, clock_tokens = time.perf_counter(), tokens
            if stop.requested and step < t.max_steps:  # SIGTERM / SIGUSR1: checkpoint this step, exit
                bar.close()
                stop.exit(checkpoint.checkpoint_dir(run_dir, step) if checkpoint_due else save())
    bar.close()

    if t.eval_interval:
        logger.log({"step": step, "tokens": tokens, "val/loss": evaluate(model, val_batches, device, autocast)})
    full_val = evaluate(model, eval_batches(data.val, t.eval_batch_size, t.seq_len, None), device, autocast)
    logger.log({"step": step, "tokens": tokens, "final/val_loss": full_val})
    last = save()
    plot_loss_curve(run_dir)
    log.info("Finished %d steps (%d tokens): final val loss %.4f on the whole validation split; %s",
             step, tokens, full_val, last)
    return {"step": step, "tokens": tokens, "final_val_loss": full_val, "checkpoint": str(last),
            "run_dir": str(run_dir)}
