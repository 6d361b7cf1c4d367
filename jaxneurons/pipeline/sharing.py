"""`run_sharing_analysis`: the whole sharing analysis of one model on one task, resumable.

>>> lm = jaxneurons.load_model("smollm2-135m")
>>> task = jaxneurons.tasks.get_task("builtin_nli")
>>> examples = task.load(["en", "de", "zh"]).examples
>>> sharing = run_sharing_analysis(lm, task, examples, ["en", "de", "zh"], "runs/nli")
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from jax.sharding import Mesh

from jaxneurons import distributed
from jaxneurons.analysis import OverlapState
from jaxneurons.analysis.frequency import all_shared_bits
from jaxneurons.lm import LanguageModel
from jaxneurons.models.decoder import Record
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.batching import (Batch, BatchPlan, check_layout, plan_batches, record_at,
                                          tokenize_examples)
from jaxneurons.pipeline.checks import check_at_least_zero, check_positive, check_thresholds
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import pass_identity
from jaxneurons.pipeline.outputs import (example_arrays, judge_state, summarize_sharing, with_provenance,
                                         write_flags, write_sharing_files)
from jaxneurons.pipeline.runner import checkpoint_dir, run_pass
from jaxneurons.pipeline.scoring import record_scores, slot_scores
from jaxneurons.pipeline.state import RunState, load_state, new_state, save_state
from jaxneurons.pipeline.step import scoring_step, sharing_step

DEFAULT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


@dataclasses.dataclass(frozen=True)
class SharingConfig:
    """The sharing pass's settings (analyze.py's flags of the same names); validated when built."""

    batch_size: int = 8  # examples per step, each with one row per language (rounded up to the mesh's data axis)
    neuron_position: str = "last"  # the prompt's last token, or activated at any prompt token ("any_token")
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS  # activation thresholds tau; must include 0, the paper's
    pack: bool | None = None  # rows laid one after another into bins (default: at the last token)
    padding_side: str = "right"  # "right" or "left"; results do not depend on it
    bootstrap: int = 1000  # resamples for the 95% intervals over examples (0: none), seeded
    prompt_format: str | None = None  # the task formulation the examples were loaded with (recorded)
    prompt_suffix: str = ""  # text appended to every prompt when loading (recorded)
    control_items: int = 200  # grouping controls (analysis.controls) on the first this many examples (0: none)
    control_draws: int = 5  # random regroupings of the items per control
    control_seed: int = 0  # seeds the regroupings
    checkpoint_every: int = dataclasses.field(default=10, metadata={"identity": False})  # batches per save

    def __post_init__(self):
        object.__setattr__(self, "thresholds", tuple(check_thresholds(self.thresholds)))
        if self.pack is None:
            object.__setattr__(self, "pack", self.neuron_position == "last")
        check_layout(self.batch_size, self.neuron_position, self.padding_side, self.pack)
        check_positive(checkpoint_every=self.checkpoint_every, control_draws=self.control_draws)
        check_at_least_zero(bootstrap=self.bootstrap, control_items=self.control_items, control_seed=self.control_seed)


def run_sharing_analysis(
    lm: LanguageModel,
    task,
    examples: Sequence,
    languages: Sequence[str],
    output_dir: str | os.PathLike | None,
    config: SharingConfig = SharingConfig(),
    *,
    resume: bool = False,
    progress: bool = True,
    skipped: dict | None = None,
    flags_text: str | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    figures: bool = True,
    mesh: Mesh | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> dict:
    """Categorize the FFN neurons of every example across its languages, score the answers, write results.

    Args:
      lm: the model (its tokenizer is used).
      task: a `jaxneurons.tasks.Task` (its `scoring` and `is_correct`); examples: its ParallelExamples.
      languages: the N languages to analyse, each present in every example.
      output_dir: receives sharing.json, examples.npz, figures/, report.md, state.npz (and flags.txt); None runs
        in memory: no file, no checkpoint (no resume).
      config: the pass's settings (`SharingConfig`); with the weights and examples, the run's identity.
      resume: continue from output_dir/state.npz; a state of another identity is refused (ResumeMismatchError).
      skipped: the task loader's skipped items by reason, recorded in sharing.json.
      flags_text: the launcher's flags as a flagfile, written to flags.txt.
      on_batch_end: called with (batch index, number of batches) after each batch is recorded.
      figures: write figures/*.png (False saves a few seconds, e.g. in tests).
      mesh: a `distributed.make_mesh` mesh (default: `distributed.default_mesh()`, None = one device):
        examples over `data`, weights over `fsdp`; batch_size is rounded up to a multiple of `data`.
      process_index, process_count: this process's share of the batches (default: `distributed.process_layout`);
        with several processes each runs the batches i with i % count == index, keeps its state in
        output_dir/process_{index}_of_{count}/, and process 0 alone writes the merged results.
    Returns:
      the dict written to sharing.json (every process returns it).
    """
    return run_sharing_pass(lm, task, examples, languages, output_dir, config, resume=resume, progress=progress,
                            skipped=skipped, flags_text=flags_text, on_batch_end=on_batch_end, figures=figures,
                            mesh=mesh, process_index=process_index, process_count=process_count)[0]


def run_sharing_pass(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str],
                     output_dir: str | os.PathLike | None, config: SharingConfig = SharingConfig(), *,
                     resume: bool = False, progress: bool = True, skipped: dict | None = None,
                     flags_text: str | None = None, on_batch_end: Callable[[int, int], None] | None = None,
                     figures: bool = True, mesh: Mesh | None = None, process_index: int | None = None,
                     process_count: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """`run_sharing_analysis`, returning (the sharing.json dict, the per-example arrays of examples.npz)."""
    languages, thresholds = list(languages), list(config.thresholds)
    placement = distributed.placement(mesh)
    process_index, process_count = distributed.process_layout(process_index, process_count)
    split = distributed.batch_split(placement.mesh, process_index, process_count)  # (0, 1) across processes
    batch_size = placement.round_batch_size(config.batch_size)
    rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    plan = plan_batches(rows, batch_size, config.neuron_position, config.padding_side, lm.pad_id, pack=config.pack,
                        bins_multiple=placement.data_size)
    identity = pass_identity("sharing", config, lm, examples, plan.rows, task=task.name, languages=languages,
                             batch_size_used=plan.batch_size, packing=repr(plan.packing))
    state_dir, own_identity = checkpoint_dir(output_dir, identity, process_index, process_count, resume,
                                             lockstep=split[1] == 1)
    state = load_state(state_dir, own_identity) if resume else None
    if state is None:
        state = new_state(own_identity, plan.num_examples, len(thresholds), plan.num_languages,
                          lm.config.num_layers, lm.config.neurons_per_layer, plan.num_slots, config.control_items)
    if flags_text is not None and process_index == 0 and output_dir is not None:
        write_flags(output_dir, flags_text)
    state = sharing_batches(lm, plan, state, thresholds, state_dir, progress, config.checkpoint_every,
                            on_batch_end, placement=placement, process_index=split[0], process_count=split[1])
    if split[1] > 1:
        state = merge.gather_states(state, plan, identity, output_dir, process_index, process_count)
    facts = {"model": lm.source or lm.config.family, "task": task.name, "neuron_position": config.neuron_position,
             "skipped": dict(skipped or {}), "batch_size": batch_size,
             "packing": dataclasses.asdict(plan.packing) if plan.packing else None,
             "prompt_format": config.prompt_format, "prompt_suffix": config.prompt_suffix}
    sharing = summarize_sharing(state, task=task, examples=examples, languages=languages, thresholds=thresholds,
                                run_facts=facts, bootstrap=config.bootstrap, control_draws=config.control_draws,
                                control_seed=config.control_seed)
    arrays = example_arrays(state, examples, languages, thresholds, *judge_state(state, task, examples, languages))
    if process_index != 0 or output_dir is None:  # every process returns the summary; process 0 alone writes
        return with_provenance(sharing), arrays
    return write_sharing_files(output_dir, sharing, arrays, figures=figures), arrays


def sharing_batches(lm: LanguageModel, plan: BatchPlan, state: RunState, thresholds: Sequence[float],
                    output_dir: str | os.PathLike | None, progress: bool = True, checkpoint_every: int = 10,
                    on_batch_end: Callable[[int, int], None] | None = None,
                    placement: distributed.Placement | None = None, process_index: int = 0,
                    process_count: int = 1) -> RunState:
    """Run the plan's batches from state.next_batch on, recording into state and saving it as it goes (into
    output_dir; None: saved nowhere).

    placement: where params and batches go (default: `distributed.placement()`, the default mesh's); each
      batch is split over its `data` axis, which plan.batch_size must divide.
    process_index, process_count: run only the batches i with i % process_count == process_index.
    """
    placement = distributed.placement() if placement is None else placement
    if plan.batch_size % placement.data_size:
        raise PipelineInputError(f"batch_size {plan.batch_size} is not a multiple of the mesh's data axis "
                                 f"({placement.data_size})")
    neuron_decoder = lm.decoder(Record(("act",), record_at(plan.neuron_position)), logits="hidden")
    score_decoder = lm.decoder(Record(), logits="hidden")
    params, put = placement.params(lm.params), placement.batch
    thresholds_k, overlap = placement.replicate((np.asarray(thresholds, np.float32), OverlapState(*state.overlap)))

    def step(index: int) -> None:
        nonlocal overlap
        start = time.perf_counter()
        batch = plan.batch(index)
        with placement.context():
            overlap, stats = sharing_step(neuron_decoder, params, overlap, put(batch.neuron_inputs.arrays()),
                                          put(batch.first_tokens_rs), put(batch.valid_b), thresholds_k,
                                          plan.num_languages)
            full = {s: scoring_step(score_decoder, params, put(f.arrays()))
                    for s, f in zip(batch.scoring_slots, batch.scoring_inputs)}
        stats, full = placement.fetch((stats, full))
        record_batch(state, batch, slot_scores(batch, stats, full, plan.neuron_position), stats, plan.num_languages)
        state.elapsed_s += time.perf_counter() - start

    def save(next_batch: int) -> None:
        state.next_batch = next_batch
        state.overlap = OverlapState(*(np.asarray(x) for x in placement.fetch(overlap)))
        if output_dir is not None:
            save_state(output_dir, state)

    run_pass(f"sharing {plan.num_languages} languages", plan, state.next_batch, step, save,
             process_index=process_index, process_count=process_count, checkpoint_every=checkpoint_every,
             progress=progress, on_batch_end=on_batch_end,
             postfix=lambda: {"real tokens": f"{state.padding_ratio:.0%}"})
    state.overlap = OverlapState(*(np.asarray(x) for x in placement.fetch(overlap)))
    return state


def record_batch(state: RunState, batch: Batch, scores: list, stats: dict, num_languages: int) -> None:
    """Copy one batch's counts and scores into the state's per-example arrays (dummy examples dropped)."""
    valid_b = batch.valid_b
    e_v = batch.example_index_b[valid_b]
    state.category_counts_eklc[e_v] = stats["category_counts"][valid_b]
    state.activated_eknl[e_v] = stats["activated"][valid_b]
    state.all_shared_elb[e_v] = all_shared_bits(stats["active_bits"][valid_b])
    kept_b = valid_b & (batch.example_index_b < len(state.control_unit_enlf))  # the controls' first C examples
    state.control_bits_enlb[batch.example_index_b[kept_b]] = stats["active_bits"][kept_b]
    state.control_unit_enlf[batch.example_index_b[kept_b]] = stats["unit"][kept_b]
    record_scores(batch, scores, num_languages, state.option_logprobs_eno, state.greedy_match_en,
                  state.gold_logprob_en)
    state.real_tokens += sum(f.real_tokens for f in batch.all_inputs)
    state.padded_tokens += sum(f.padded_tokens for f in batch.all_inputs)
