"""What the sharing pass leaves in output_dir: sharing.json, examples.npz, figures/*.png, its report section
(sections/sharing.md, composed into report.md), flags.txt; and what every pass's JSON carries about the run
(`with_provenance`: schema version, package versions, device kind)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis import (
    atomic_path,
    overlap_result,
    plot_all,
    summarize,
    write_json_atomic,
    write_text_atomic,
)
from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES
from jaxneurons.analysis.controls import DEFAULT_DRAWS, control_summary
from jaxneurons.analysis.frequency import frequency_summary
from jaxneurons.analysis.report import FIGURES_DIR, sharing_section, write_section
from jaxneurons.analysis.statistics import accuracy_detail, mark_uninformative, predicted_options
from jaxneurons.pipeline.scoring import accuracy_per_language, judge
from jaxneurons.pipeline.state import RunState

SHARING_FILE = "sharing.json"
EXAMPLES_FILE = "examples.npz"
FLAGS_FILE = "flags.txt"
SCHEMA_VERSION = 3  # of sharing.json, attribution.json, interventions.json (absent before 3)
VERSIONED_PACKAGES = ("jax", "flax", "transformers")


def provenance() -> dict:
    """schema_version, versions {jax, flax, transformers, jaxneurons} and device_kind of this process."""
    import jax

    import jaxneurons

    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["jaxneurons"] = jaxneurons.__version__
    return {"schema_version": SCHEMA_VERSION, "versions": versions, "device_kind": jax.devices()[0].device_kind}


def with_provenance(result: dict) -> dict:
    """result with `provenance()`'s keys added (those it has already are kept: a saved result stays as run)."""
    return {**provenance(), **result}


def write_result_json(path: str | os.PathLike, result: dict) -> dict:
    """Write a pass's JSON (sharing.json, attribution.json, interventions.json) with its provenance; returns
    what was written."""
    result = with_provenance(result)
    write_json_atomic(path, result)
    return result


def write_flags(output_dir: str | os.PathLike, flags_text: str) -> str:
    """flags.txt: the run's flags as a flagfile (`--flagfile=flags.txt` reruns it)."""
    return write_text_atomic(os.path.join(output_dir, FLAGS_FILE), flags_text.rstrip("\n") + "\n")


def summarize_sharing(state: RunState, *, task, examples: Sequence, languages: Sequence[str],
                      thresholds: Sequence[float], run_facts: dict, bootstrap: int = DEFAULT_RESAMPLES,
                      control_draws: int = DEFAULT_DRAWS, control_seed: int = 0) -> dict:
    """The sharing dict of sharing.json from a finished state (pure: judges the answers, writes nothing).

    run_facts: the keys sharing.json carries besides the statistics (model, task, neuron position, ...).
    bootstrap: resamples for the 95% intervals (0: none). control_draws, control_seed: the grouping controls'
    regroupings ("controls", from the state's first examples; None when it kept none).
    """
    correct_en, predicted_en = judge_state(state, task, examples, languages)
    neurons_per_layer = state.overlap.first_code.shape[-1]
    sharing = summarize(state.category_counts_eklc, state.activated_eknl, thresholds, languages, neurons_per_layer,
                        correct_bn=correct_en, overlap_kcl=np.asarray(overlap_result(state.overlap)),
                        bootstrap=bootstrap)
    sharing.update(run_facts)
    sharing.update(
        languages=list(languages),
        num_examples=len(examples),
        num_layers=int(state.category_counts_eklc.shape[2]),
        neurons_per_layer=int(neurons_per_layer),
        accuracy=accuracy_per_language(correct_en, languages),
        accuracy_detail=accuracy_detail(correct_en, predicted_en, _num_options(examples, languages, task.scoring),
                                        languages, _option_names(examples, languages), bootstrap),
        bootstrap=bootstrap,
        padding_ratio=state.padding_ratio,
        examples_per_second=len(examples) / state.elapsed_s if state.elapsed_s > 0 else None,
    )
    sharing["controls"] = None if not len(state.control_unit_enlf) else control_summary(
        state.control_bits_enlb, state.control_unit_enlf, draws=control_draws, seed=control_seed,
        bootstrap=bootstrap, num_items_run=len(examples))
    sharing["overlap_frequency"] = frequency_summary(state.all_shared_elb, neurons_per_layer, bool(bootstrap))
    mark_uninformative(sharing, sharing["accuracy_detail"])
    return sharing


def write_sharing(output_dir: str | os.PathLike, sharing: dict, state: RunState, *, task, examples: Sequence,
                  languages: Sequence[str], thresholds: Sequence[float], figures: bool = True) -> dict:
    """Write the sharing pass's files: figures/*.png, examples.npz, sharing.json and its report section.

    Returns sharing with "figures" (name -> path relative to output_dir) added, as written to sharing.json.
    """
    correct_en, predicted_en = judge_state(state, task, examples, languages)
    arrays = example_arrays(state, examples, languages, thresholds, correct_en, predicted_en)
    return write_sharing_files(output_dir, sharing, arrays, figures)


def write_sharing_files(output_dir: str | os.PathLike, sharing: dict, arrays: dict[str, np.ndarray],
                        figures: bool = True) -> dict:
    """`write_sharing` from the summary and the per-example arrays of `example_arrays` (a result's `save`)."""
    paths = plot_all(sharing, os.path.join(output_dir, FIGURES_DIR)) if figures else {}
    sharing = {**sharing, "figures": {name: os.path.relpath(path, output_dir) for name, path in paths.items()}}
    write_example_arrays(output_dir, arrays)
    sharing = write_result_json(os.path.join(output_dir, SHARING_FILE), sharing)
    write_section(output_dir, "sharing", sharing_section(sharing, paths, output_dir))
    return sharing


def judge_state(state: RunState, task, examples: Sequence, languages: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(correct [E, N], predicted option [E, N], -1 for open answers) from a state's scores."""
    correct_en = judge(task, state.option_logprobs_eno, state.greedy_match_en, examples, languages)
    predicted_en = predicted_options(state.option_logprobs_eno) if task.scoring == "options" \
        else np.full(correct_en.shape, -1)
    return correct_en, predicted_en


def write_examples(output_dir: str | os.PathLike, state: RunState, examples: Sequence, languages: Sequence[str],
                   thresholds: Sequence[float], correct_en: np.ndarray, predicted_en: np.ndarray | None = None) -> str:
    """examples.npz: the per-example arrays, in the caller's example order (no pickled objects)."""
    return write_example_arrays(output_dir, example_arrays(state, examples, languages, thresholds, correct_en,
                                                           predicted_en))


def example_arrays(state: RunState, examples: Sequence, languages: Sequence[str], thresholds: Sequence[float],
                   correct_en: np.ndarray, predicted_en: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays of examples.npz, in the caller's example order."""
    return {
        "category_counts": state.category_counts_eklc,  # [E, K, L, 4] int32, order of analysis.CATEGORIES
        "activated": state.activated_eknl,  # [E, K, N, L] int32
        "correct": correct_en,  # [E, N] bool
        "predicted": (np.full(correct_en.shape, -1) if predicted_en is None else predicted_en).astype(np.int32),
        # [E, N] the predicted option (argmax of option_logprobs), -1 for open answers
        "gold_logprob": state.gold_logprob_en,  # [E, N] float32
        "greedy_match": state.greedy_match_en,  # [E, N] bool
        "option_logprobs": state.option_logprobs_eno,  # [E, N, O] float32, NaN where an example has fewer
        "ids": np.array([ex.id for ex in examples], dtype=str),
        "thresholds": np.asarray(thresholds, np.float32),
        "languages": np.array(list(languages), dtype=str),
    }


def write_example_arrays(output_dir: str | os.PathLike, arrays: dict[str, np.ndarray]) -> str:
    """Write examples.npz (atomically, no pickled objects); returns its path."""
    path = os.path.join(output_dir, EXAMPLES_FILE)
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _num_options(examples: Sequence, languages: Sequence[str], scoring: str) -> np.ndarray:
    """[E, N] the number of answer options (0 for open answers, where chance is not defined)."""
    if scoring != "options":
        return np.zeros((len(examples), len(languages)), np.int64)
    return np.array([[len(ex.options[lang]) for lang in languages] for ex in examples], np.int64)


def _option_names(examples: Sequence, languages: Sequence[str]) -> dict | None:
    """language -> the option texts, when every example has the same ones (to name the majority answer)."""
    if not examples or examples[0].options is None:
        return None
    return {lang: examples[0].options[lang] for lang in languages
            if all(ex.options[lang] == examples[0].options[lang] for ex in examples)}
