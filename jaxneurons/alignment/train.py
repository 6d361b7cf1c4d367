"""Fine-tuning for neuron sharing: optax adamw (warmup-cosine, global-norm clipping), frozen parameters get exactly
zero updates, orbax checkpoints (params, optimizer state, data position) and exact resume.

The data are the sharing pipeline's `TokenizedRow`s (`training_rows`), one per example and language; the
evaluation is the sharing pipeline's own (`experiment.evaluate`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxneurons import distributed
from jaxneurons.alignment.objective import alignment_loss, make_batch, objective_decoder
from jaxneurons.lm import LanguageModel
from jaxneurons.pipeline.batching import TokenizedRow, tokenize_examples


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The alignment fine-tuning's settings (align.py's flags of the same names); validated when built."""

    layers: tuple[int, ...] | None = None  # layers whose MLP trains; None = every layer
    lr: float = 1e-4  # peak learning rate (warmup-cosine)
    warmup: int = 10  # warmup steps
    clip: float = 1.0  # global-norm gradient clipping
    weight_decay: float = 0.0  # AdamW weight decay
    lambda_sharing: float = 1.0  # weight of the sharing loss (the control run uses 0)
    rho: float = 0.5  # fraction of languages that must activate a neuron for it to be a target
    margin: float = 1.0  # hinge margin on the pre-activation
    # a resume may extend the steps (it continues from the last checkpoint), never shorten them
    steps: int = dataclasses.field(default=100, metadata={"identity": False})
    batch_size: int = 4  # parallel examples per step (each with every language)
    seed: int = 0  # data-order seed
    save_every: int = dataclasses.field(default=10, metadata={"identity": False})  # checkpoint interval, steps

    def __post_init__(self):
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        for name in ("steps", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "weight_decay", "lambda_sharing", "margin"):
            if not getattr(self, name) >= 0:  # nan too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")

    def check_layers(self, num_layers: int) -> None:
        """ValueError unless every trained layer exists in a model of num_layers layers."""
        bad = [x for x in self.layers or () if not 0 <= x < num_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range: the model has layers 0..{num_layers - 1}")


def trainable_masks(params, num_layers: int, layers: Sequence[int] | None):
    """(labels: "train"/"freeze" per leaf, row masks [L, 1, ...] for the stacked MLP leaves, 1 elsewhere)."""
    rows = np.zeros((num_layers,), np.float32)
    rows[list(range(num_layers)) if layers is None else list(layers)] = 1.0

    def label(path, leaf):
        keys = [getattr(p, "key", str(p)) for p in path]
        return "train" if len(keys) >= 2 and keys[0] == "layers" and keys[1] == "mlp" else "freeze"

    labels = jax.tree_util.tree_map_with_path(label, params)
    row_mask = jax.tree.map(lambda lab, leaf: jnp.asarray(rows.reshape((-1,) + (1,) * (leaf.ndim - 1)), leaf.dtype)
                            if lab == "train" else None, labels, params)
    return labels, row_mask


def _mask_rows(row_mask) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        return jax.tree.map(lambda u, m: u * m, updates, row_mask), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(params, num_layers: int, cfg: TrainConfig) -> optax.GradientTransformation:
    """Row mask -> {MLP leaves: clip + adamw, everything else: set_to_zero} -> row mask.

    The first row mask keeps frozen layers' gradients out of the clip norm and Adam moments; the last one makes
    their updates (weight decay included) exactly zero.
    """
    labels, row_mask = trainable_masks(params, num_layers, cfg.layers)
    full_mask = jax.tree.map(lambda m, leaf: jnp.ones((), leaf.dtype) if m is None else m, row_mask, params,
                             is_leaf=lambda x: x is None)
    warmup = max(cfg.warmup, 1)  # optax needs a warmup step, and a decay step after the warmup (steps=1, warmup=0)
    schedule = optax.warmup_cosine_decay_schedule(cfg.lr / warmup, cfg.lr, warmup, max(cfg.steps, warmup + 1),
                                                  end_value=cfg.lr * 0.1)
    train = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adamw(schedule, weight_decay=cfg.weight_decay))
    return optax.chain(_mask_rows(full_mask),
                       optax.multi_transform({"train": train, "freeze": optax.set_to_zero()}, labels),
                       _mask_rows(full_mask))


def batch_indices(step: int, num_items: int, batch_size: int, seed: int) -> np.ndarray:
    """The items of step `step`: a stream of per-epoch permutations of the data, a pure function of the step."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_items)
        perm = np.random.default_rng([seed, epoch]).permutation(num_items)
        out.extend(perm[offset:offset + batch_size - len(out)].tolist())
    return np.asarray(out)


_STEP_FNS: dict = {}  # one compiled step for the aligned run and its control (lambda is an argument)


def _train_step(decoder, params, num_layers: int, num_languages: int, cfg: TrainConfig):
    """(optimizer, jitted step) for cfg, reused by every run that differs only in lambda, seed or save_every."""
    key = (decoder, num_layers, num_languages, jax.tree.structure(params),
           tuple(np.shape(x) for x in jax.tree.leaves(params)),
           dataclasses.replace(cfg, lambda_sharing=0.0, seed=0, save_every=1))
    if key not in _STEP_FNS:
        _STEP_FNS.clear()
        optimizer = make_optimizer(params, num_layers, cfg)
        _STEP_FNS[key] = optimizer, _train_step_fn(decoder, optimizer, num_languages)
    return _STEP_FNS[key]


def _train_step_fn(decoder, optimizer, num_languages: int):
    @jax.jit
    def step(params, opt_state, batch, lambda_sharing, rho, margin):
        (loss, aux), grads = jax.value_and_grad(alignment_loss, has_aux=True)(
            params, decoder, batch, lambda_sharing, rho, margin, num_languages=num_languages)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, dict(aux, loss=loss)
    return step


def train(lm: LanguageModel, rows: Sequence[Sequence[TokenizedRow]], cfg: TrainConfig,
          checkpoint_dir: str | None = None, resume: bool = False, stop_after: int | None = None,
          progress: bool = True, answer_len: int | None = None, mesh=None):
    """Train; returns (params, history list of per-step floats).

    rows: [E][N] TokenizedRow, prompt + gold continuation per example and language (`training_rows`).
    answer_len: the continuation length every batch is padded to (default: the longest gold continuation).

    checkpoint_dir: orbax CheckpointManager folder (params, opt_state, step), saved every cfg.save_every steps
    and at the end; resume=True restores its latest step and continues the same data stream.
    stop_after: stop (and save) after this many steps of this call (simulates an interruption).
    mesh: params and batches go where `distributed.placement(mesh)` puts them (default: the default mesh's
      placement; one device without one); cfg.batch_size must then be a multiple of its data axis.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    cfg.check_layers(lm.config.num_layers)
    placement = distributed.placement(mesh)
    distributed.require_process_local(placement.mesh, "alignment training")
    if cfg.batch_size % placement.data_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not a multiple of the mesh's data axis "
                         f"({placement.data_size})")
    decoder = objective_decoder(lm)
    params = placement.params(lm.params)
    optimizer, step_fn = _train_step(decoder, params, lm.config.num_layers, len(rows[0]), cfg)
    opt_state = optimizer.init(params)
    start = 0
    manager = None
    if checkpoint_dir is not None:
        manager = ocp.CheckpointManager(os.path.abspath(checkpoint_dir),
                                        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
        if resume and manager.latest_step() is not None:
            target = {"params": params, "opt_state": opt_state, "step": np.asarray(0, np.int64)}
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
            restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
            params, opt_state, start = restored["params"], restored["opt_state"], int(restored["step"])
            if start > cfg.steps:
                raise ValueError(f"{checkpoint_dir} holds step {start}, past steps={cfg.steps}: a resume can extend "
                                 "the training, not shorten it")
    k_max = answer_len or max(max(len(row.continuations[0]), 1) for example in rows for row in example)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    history = []
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, disable=not progress, desc="align")
    for step in bar:
        idx = batch_indices(step, len(rows), cfg.batch_size, cfg.seed)
        batch = placement.batch(make_batch([rows[i] for i in idx], lm.pad_id, answer_len=k_max))
        with placement.context():
            params, opt_state, aux = step_fn(params, opt_state, batch, jnp.float32(cfg.lambda_sharing),
                                             jnp.float32(cfg.rho), jnp.float32(cfg.margin))
        aux = {k: float(v) for k, v in aux.items()}
        history.append(dict(aux, step=step + 1))
        bar.set_postfix(loss=f"{aux['loss']:.3f}", task=f"{aux['task']:.3f}", share=f"{aux['sharing']:.4f}",
                        all_sh=f"{aux['all_shared_pct']:.1f}%")
        if manager is not None and ((step + 1) % cfg.save_every == 0 or step + 1 == end):
            manager.save(step + 1, args=ocp.args.StandardSave(
                {"params": params, "opt_state": opt_state, "step": np.asarray(step + 1, np.int64)}))
    if manager is not None:
        manager.wait_until_finished()
        manager.close()
    return params, history


def training_rows(lm: LanguageModel, examples: Sequence, languages: Sequence[str]) -> list[list[TokenizedRow]]:
    """[E][N] TokenizedRow: each example's prompt and gold answer (`ParallelExample.answers`, the gold option of
    an options task) per language, tokenized by the sharing pipeline's `tokenize_examples`."""
    return tokenize_examples(lm.tokenizer, examples, languages, "greedy")
