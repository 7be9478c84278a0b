"""A domain-free trainer. It knows a network, a source of (positions, values) draws and a
TrainConfig; it never knows what the values mean.

Per step and item: draw max_context + queries points, keep a log-uniform number |S| of them as
context (padding masked), and minimise the exact negative log-likelihood of the query values.
Runs unchanged under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU). Every
step's randomness is derived from (seed, step, rank), so ``resume`` repeats an uninterrupted run
bit for bit.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from spatialgen.adapters.base import TrainingSource
from spatialgen.config import TrainConfig
from spatialgen.errors import CheckpointError, ConfigError, InputError, TrainingDiverged, shortened
from spatialgen.io.atomic import atomic_path
from spatialgen.model import PixelTransformer


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto", *, fallback_hint: str = "--device auto") -> torch.device:
    """``auto`` -> cuda, mps or cpu, whichever is here; a named device must exist (InputError if not)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"device '{name}' is not available on this machine (try {fallback_hint})")
    if device.type == "mps" and not _mps_available():
        raise InputError(f"device 'mps' is not available on this machine (try {fallback_hint})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


@dataclass
class Batch:
    context_positions: torch.Tensor  # (B, K, dx)
    context_values: torch.Tensor  # (B, K, dv)
    context_mask: torch.Tensor  # (B, K) True = a real sample
    query_positions: torch.Tensor  # (B, Q, dx)
    query_values: torch.Tensor  # (B, Q, dv)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in vars(self).values()))


def context_sizes(generator: torch.Generator, batch: int, low: int, high: int) -> torch.Tensor:
    """|S| per item, log-uniform in [max(low, 1), high]; with low = 0, one item in 20 gets K = 0."""
    lo = max(low, 1)
    u = torch.rand(batch, generator=generator)
    sizes = torch.exp(math.log(lo) + u * (math.log(high + 1) - math.log(lo))).floor().long().clamp(lo, high)
    if low == 0:
        sizes = torch.where(torch.rand(batch, generator=generator) < 0.05, 0, sizes)
    return sizes


def make_batch(source: TrainingSource, generator: torch.Generator, config: TrainConfig, batch: int) -> Batch:
    K, Q = config.max_context, config.queries
    positions, values = source.draw(generator, batch, K + Q)
    sizes = context_sizes(generator, batch, config.min_context, K)
    used = int(sizes.max())  # padding beyond the largest context in the batch would be masked anyway
    mask = torch.arange(used)[None, :] < sizes[:, None]  # points are i.i.d., so the first |S| are a random set
    targets = values[:, K:]
    if source.target_limit is not None:  # contexts may say more than a prediction holds (see TrainingSource)
        targets = targets.clamp(-source.target_limit, source.target_limit)
    return Batch(positions[:, :used], values[:, :used], mask, positions[:, K:], targets)


def nll_loss(network: torch.nn.Module, head_output: torch.Tensor, query_values: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (nats per query point) in normalised units."""
    inner = network.module if isinstance(network, DistributedDataParallel) else network
    return -inner.distribution(head_output).log_prob(query_values).mean()


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_learning_rate`` at ``steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_learning_rate + 0.5 * (config.learning_rate - config.min_learning_rate) * (1 + math.cos(math.pi * progress))


def make_optimizer(network: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in network.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in network.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95))


def world_size() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank under torchrun (0 for a single process)."""
    return int(os.environ.get("RANK", "0"))


class Distributed:
    """Rank and world size from torchrun's environment; a no-op for a single process."""

    def __init__(self, device: torch.device):
        self.world_size = world_size()
        self.rank = process_rank()
        self.enabled = self.world_size > 1
        self.device = device
        if self.enabled and device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float32, device=self.device)  # nccl reduces CUDA tensors only
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank: all ranks then stop together, none waits forever."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return bool(tensor.item() > 0)

    def close(self, *, wait_for_peers: bool) -> None:
        """Leave the process group; with ``wait_for_peers``, all together.

        Wait only when every rank is known to be at the same point (the run finished, or diverged:
        both are collective decisions): a rank tearing down its connections while another is still
        busy (rank 0 saving and plotting) makes gloo abort that process with SIGABRT. A rank that
        failed alone must not wait: its barrier could pair with a peer's training all-reduce.
        """
        if not (self.enabled and dist.is_initialized()):
            return
        try:
            if wait_for_peers:
                dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)
        except RuntimeError as exc:  # a peer is gone: close anyway; the error in flight matters more
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"warning: not every process reached the end ({shortened(first, 120)})", file=sys.stderr)
        finally:
            dist.destroy_process_group()


class Trainer:
    """Trains ``network`` on draws from ``source``; ``save`` writes a model checkpoint (rank 0)."""

    def __init__(
        self,
        config: TrainConfig,
        network: PixelTransformer,
        source: TrainingSource,
        *,
        out_dir: str | Path,
        save: Callable[[Path, PixelTransformer, int], None],
        device: torch.device | None = None,
    ):
        self.config = config
        self.device = device or resolve_device(config.device, fallback_hint="--set train.device=auto")
        if config.batch_size % world_size():  # before the process group starts: nothing to tear down
            raise ConfigError(f"train.batch_size {config.batch_size} is not divisible by {world_size()} processes")
        self.distributed = Distributed(self.device)
        self.device = self.distributed.device
        self.network = network.to(self.device)
        self.model = (
            DistributedDataParallel(self.network, device_ids=[self.device] if self.device.type == "cuda" else None)
            if self.distributed.enabled
            else self.network
        )
        self.source = source
        self.out_dir = Path(out_dir)
        self.save = save
        self.optimizer = make_optimizer(self.network, config)
        self.step = 0
        self.history: list[tuple[int, float, float]] = []  # (step, loss, learning rate)

    # --- state ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.safetensors"

    @property
    def state_path(self) -> Path:
        return self.out_dir / "last.trainer.pt"

    def save_state(self) -> None:
        if not self.distributed.is_main:
            return
        self.save(self.checkpoint_path, self.network, self.step)
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "history": self.history}
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)
        self._write_history()

    def load_state(self, weights: dict[str, torch.Tensor]) -> None:
        if not self.state_path.is_file():
            raise CheckpointError(f"cannot resume: {self.state_path} not found")
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
            self.network.load_state_dict(weights)
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.history = [tuple(row) for row in state["history"]]
        except Exception as exc:  # unpickling, truncation, missing keys, shape mismatches
            detail = str(exc).strip().splitlines()
            raise CheckpointError(
                f"cannot resume from {self.out_dir} (was the model config changed?): {type(exc).__name__}: "
                f"{shortened(detail[-1] if detail else '', 120)}"
            ) from None

    def _train_until(self, last: int) -> None:
        from spatialgen.io.progress import TrainingProgress

        with TrainingProgress(total=self.config.steps, start=self.step, enabled=self.distributed.is_main) as progress:
            seconds, tick = 0.0, time.perf_counter()
            while self.step < last:
                loss = self.distributed.mean(self.train_step())
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    self.history.append((self.step, loss, learning_rate(self.config, self.step - 1)))
                now = time.perf_counter()
                # average the seconds per step, not steps per second: step times vary with the
                # context size, and a mean of rates is biased towards the fast steps (the ETA too short)
                seconds = now - tick if seconds == 0 else 0.98 * seconds + 0.02 * (now - tick)
                tick = now
                progress.update(self.step, loss=loss, rate=1 / max(seconds, 1e-9))
                if self.step % self.config.checkpoint_every == 0 and self.step < last:
                    self.save_state()

    def _save_on_interrupt(self) -> None:
        """Keep the steps done so far: an interrupted run continues with ``--resume``."""
        if self.step > 0 and self.distributed.is_main:
            self.save_state()
            print(f"saved step {self.step} to {self.checkpoint_path} (continue with --resume)", file=sys.stderr)

    def _write_history(self) -> None:
        with atomic_path(self.out_dir / "loss.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "loss_nats_per_point", "learning_rate"])
            writer.writerows(self.history)

    # --- loop ----------------------------------------------------------------------------------
    def step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + step * 7919 + self.distributed.rank)

    def train_step(self) -> float:
        config = self.config
        per_rank = config.batch_size // self.distributed.world_size
        batch = make_batch(self.source, self.step_generator(self.step), config, per_rank).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.step)
        head = self.model(batch.context_positions, batch.context_values, batch.query_positions, batch.context_mask)
        loss = nll_loss(self.model, head, batch.query_values)
        finite = bool(torch.isfinite(loss))
        if not self.distributed.all_true(finite):  # stop before the weights are spoilt; every rank stops
            saved = f"; the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path.is_file() else ""
            where = f"the loss is {loss.item()}" if not finite else "another process's loss is not finite"
            raise TrainingDiverged(
                f"training diverged: {where} at step {self.step + 1} "
                f"(try a lower train.learning_rate or a higher train.warmup_steps){saved}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
        if not torch.isfinite(norm):
            raise TrainingDiverged(f"training diverged: non-finite gradients at step {self.step + 1} (try a lower train.learning_rate)")
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def fit(self, *, stop_at: int | None = None) -> list[tuple[int, float, float]]:
        """Train until ``config.steps`` (or ``stop_at``, to pause early); returns the loss history."""
        last = self.config.steps if stop_at is None else min(self.config.steps, stop_at)
        self.network.train()
        try:
            self._train_until(last)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, or SIGTERM from kill / a scheduler (bar stopped first)
            self._save_on_interrupt()
            raise
        self.save_state()
        self.network.eval()
        return self.history


def train(config, out_dir: str | Path, *, resume: bool = False, stop_at: int | None = None) -> Path:
    """Train the model ``config`` describes; write checkpoints, loss.csv and loss.png to ``out_dir``.

    Returns the path of the final checkpoint.
    """
    from spatialgen.adapters import get_adapter
    from spatialgen.checkpoint import build_network, read_checkpoint, save_checkpoint
    from spatialgen.config import config_to_toml
    from spatialgen.io.plots import plot_loss

    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    out_dir = Path(out_dir)
    initial = initial_weights(config, out_dir) if config.train.init_from and not resume else None  # before the slow data
    adapter = get_adapter(config.adapter)
    source = adapter.training_source("train")
    torch.manual_seed(config.train.seed)  # identical initial weights on every rank and every run
    network = build_network(config, adapter, bin_centres=adapter.bin_centres(config.model.bins))

    def save(path: Path, model: PixelTransformer, step: int) -> None:
        save_checkpoint(path, model, config, step=step)

    trainer = Trainer(config.train, network, source, out_dir=out_dir, save=save)
    all_ranks_stopped_here = False
    try:  # from here on the process group (if any) is closed however the run ends
        if resume:
            _, weights, _ = read_checkpoint(trainer.checkpoint_path)
            trainer.load_state(weights)
        else:
            if initial is not None:
                try:
                    network.load_state_dict(initial)
                except RuntimeError:  # same [model], other value or position sizes
                    raise CheckpointError(f"cannot start from {config.train.init_from}: its tensors do not fit this config's model") from None
            if trainer.distributed.is_main:
                with atomic_path(out_dir / "config.toml") as tmp:
                    tmp.write_text(config_to_toml(config))
        trainer.fit(stop_at=stop_at)
        all_ranks_stopped_here = True
    except TrainingDiverged:
        all_ranks_stopped_here = True  # the finiteness checks are collective: every rank stops at this step
        raise
    finally:  # an interrupted or diverged run gets its loss curve too
        try:
            if trainer.distributed.is_main and trainer.history:
                plot_loss(trainer.history, out_dir / "loss.png", title=f"{config.adapter.name}-{getattr(config.adapter, 'dataset', '')}")
        except Exception as exc:  # never hide the error in flight, nor a finished run, behind a failed plot
            print(f"warning: loss.png not written ({type(exc).__name__}: {shortened(str(exc), 80)})", file=sys.stderr)
        finally:
            trainer.distributed.close(wait_for_peers=all_ranks_stopped_here)
    return trainer.checkpoint_path


def initial_weights(config, out_dir: Path) -> dict[str, torch.Tensor]:
    """The weights ``train.init_from`` names, for fine-tuning: same [model] config, another run."""
    from spatialgen.checkpoint import read_checkpoint

    path = Path(config.train.init_from)
    if (out_dir / "last.safetensors").exists() and path.exists() and os.path.samefile(path, out_dir / "last.safetensors"):
        raise InputError(f"train.init_from is this run's own checkpoint ({path}): use --resume, or another --out")
    source_config, weights, _ = read_checkpoint(path)
    if source_config.adapter.name != config.adapter.name:
        raise CheckpointError(f"cannot start from {path}: it is a model for '{source_config.adapter.name}' data, not '{config.adapter.name}'")
    if source_config.model != config.model:
        raise CheckpointError(f"cannot start from {path}: its [model] differs from this config's (fine-tuning keeps the model)")
    return weights
