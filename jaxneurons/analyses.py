"""Every analysis as one call that returns its result: `sharing`, `attribution`, `deactivation`.

>>> lm = jn.load_model("smollm2-135m")
>>> examples = jn.tasks.get_task("builtin_nli").load(["en", "de", "zh"], prompt_format="paper").examples
>>> result = jn.sharing(lm, examples, bootstrap=200)   # in memory; output_dir="runs/nli" writes what the CLI does
>>> result.to_pandas(); result.plot()

Each runs the same pass code as launchers/analyze.py with the same defaults (the settings are the pass
config's fields: `SharingConfig`, `AttributionConfig`, `InterventionsConfig`) and the same progress bar. With
output_dir the pass writes its files and checkpoints there (resume=True continues an interrupted run); without
it, it runs in memory: no file, no checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from jax.sharding import Mesh

from jaxneurons.lm import LanguageModel
from jaxneurons.pipeline.outputs import with_provenance
from jaxneurons.results import AttributionResult, DeactivationResult, SharingResult, SteeringResult, TemplateResult
from jaxneurons.tasks.base import ParallelExample, Task

CUSTOM_TASK = "custom"


class ExamplesTask(Task):
    """The task of examples that came without one (`task=None`): named "custom", scored by `options` when the
    examples have options (the gold one must score highest), else `greedy` (the gold answer, token for token).
    It only judges: its examples are the caller's, so it loads nothing."""

    name = CUSTOM_TASK
    needs_data_dir = False

    def __init__(self, examples: Sequence[ParallelExample]):
        with_options = {ex.options is not None for ex in examples}
        if len(with_options) > 1:
            raise ValueError("examples: some have options and some do not; give every example options (scored "
                             "by log-likelihood) or none (scored by greedy match), or pass task=")
        self.scoring = "options" if with_options == {True} else "greedy"
        self.languages = tuple(dict.fromkeys(lang for ex in examples for lang in ex.prompts))

    def _load_local(self, languages, split, num_examples, root: Path | None, issues, prompt_format="paper"):
        raise ValueError("the custom task holds the caller's examples and loads none: build examples with "
                         "jn.make_examples or a task's load()")


def sharing(lm: LanguageModel, examples, *, task: Task | None = None, languages: Sequence[str] | None = None,
            output_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
            mesh: Mesh | None = None, skipped: dict | None = None, **settings) -> SharingResult:
    """The sharing analysis (`pipeline.run_sharing_analysis`): the paper's neuron categories per layer and
    language set, with 95% bootstrap intervals, and the accuracy per language.

    Args:
      lm: the model; examples: ParallelExamples (or a task's `load()` result, whose skipped counts are kept).
      task: judges the answers (default: the examples' own, `ExamplesTask`); languages: default, those every
        example has.
      output_dir: write sharing.json, examples.npz, figures/, report.md and checkpoints there (None: in memory).
      resume: continue the run in output_dir; progress: the progress bar; mesh: see `distributed.make_mesh`.
      skipped: items the loader left out, by reason (recorded in the result).
      settings: `SharingConfig` fields (batch_size, thresholds, neuron_position, bootstrap, ...).
    """
    from jaxneurons.pipeline.sharing import SharingConfig, run_sharing_pass

    examples, task, languages, skipped = _inputs(examples, task, languages, skipped)
    config = _config(SharingConfig, "sharing", settings)
    summary, arrays = run_sharing_pass(lm, task, examples, languages, output_dir, config, resume=resume,
                                       progress=progress, skipped=skipped, mesh=mesh)
    return SharingResult(summary, arrays)


def attribution(lm: LanguageModel, examples, *, task: Task | None = None, languages: Sequence[str] | None = None,
                output_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
                mesh: Mesh | None = None, **settings) -> AttributionResult:
    """Attribution x category (`pipeline.run_attribution_analysis`): the share of each layer's top-k neurons,
    by contribution, effective score and integrated gradients, that each category holds, beside |m|-drawn
    nulls. Arguments as in `sharing`; settings: `AttributionConfig` fields (methods, top_k, ig_steps, seeds, ...).
    """
    from jaxneurons.pipeline.attribution import AttributionConfig, run_attribution_analysis

    examples, task, languages, _ = _inputs(examples, task, languages, None)
    config = _config(AttributionConfig, "attribution", settings)
    summary = run_attribution_analysis(lm, task, examples, languages, _folder(output_dir), config, resume=resume,
                                       progress=progress, mesh=mesh)
    return AttributionResult(with_provenance(summary))


def deactivation(lm: LanguageModel, examples, *, task: Task | None = None, languages: Sequence[str] | None = None,
                 output_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
                 mesh: Mesh | None = None, **settings) -> DeactivationResult:
    """Deactivation (`pipeline.run_interventions`): each neuron set zeroed, the accuracy per language and its
    paired change from clean, beside matched controls. Arguments as in `sharing`; settings:
    `InterventionsConfig` fields (kinds, batch_size, every_token, seeds, bootstrap)."""
    from jaxneurons.pipeline.interventions import InterventionsConfig, run_interventions

    examples, task, languages, _ = _inputs(examples, task, languages, None)
    config = _config(InterventionsConfig, "deactivation", settings)
    summary = run_interventions(lm, task, examples, languages, _folder(output_dir), config, resume=resume,
                                progress=progress, mesh=mesh)
    return DeactivationResult(with_provenance(summary))


def steering(lm: LanguageModel, examples, *, task: Task | None = None, languages: Sequence[str] | None = None,
             sets: dict | str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
             resume: bool = False, progress: bool = True, mesh: Mesh | None = None, **settings) -> SteeringResult:
    """Language steering (`pipeline.run_steering`): the examples' prompts in each language generated with
    nothing changed, with each language's neurons zeroed or boosted, and beside random and |m|-matched
    controls; the language of every output, per prompt language and condition, with 95% intervals.

    sets: {lang: {layer: [neuron indices]}}, or a JSON file of that shape (e.g. a LAPE selection); default:
    the neurons most often specific to each language in these examples (`pipeline.steering.specific_sets`).
    settings: `SteeringConfig` fields (actions, controls, boost, seeds, max_new_tokens, batch_size, set_size,
    bootstrap). Other arguments as in `sharing`."""
    from jaxneurons.pipeline.neuron_sets import read_sets
    from jaxneurons.pipeline.steering import SteeringConfig, run_steering, specific_sets

    examples, task, languages, _ = _inputs(examples, task, languages, None)
    config = _config(SteeringConfig, "steering", settings)
    if sets is None:
        sets, origin = specific_sets(lm, examples, languages, config.set_size), "specific"
    elif isinstance(sets, (str, os.PathLike)):
        sets, origin = read_sets(os.fspath(sets), languages, lm.config), os.fspath(sets)
    else:
        origin = "given"
    prompts = {lang: [ex.prompts[lang] for ex in examples] for lang in languages}
    summary = run_steering(lm, prompts, sets, _folder(output_dir), config, resume=resume, progress=progress,
                           mesh=mesh, identity_extra={"task": task.name, "sets_from": origin})
    generations = summary.pop("generations")
    return SteeringResult(with_provenance(summary), generations)


def template_spread(results, *, task: Task | None = None, formulations: dict | None = None,
                    output_dir: str | os.PathLike | None = None) -> TemplateResult:
    """The spread of the sharing headline over prompt templates (`analysis.templates`).

    results: {prompt format: its SharingResult (or sharing.json dict, or run folder)}, e.g.
    ``{f: jn.sharing(lm, task.load(langs, prompt_format=f)) for f in task.formulations["ends_english"]}``;
    task: groups the formats by its `formulations`; formulations: {format: formulation} instead (default: one
    group). output_dir: also write templates.json, templates.md and figures/templates.png there."""
    from jaxneurons.analysis.templates import template_summary, write_templates
    from jaxneurons.results import load_result

    if len(results) < 2:
        raise ValueError(f"template_spread: {len(results)} template(s) given; a spread needs at least 2")
    summaries = {}
    for name, result in results.items():
        if isinstance(result, (str, os.PathLike)):
            result = load_result(result, "sharing")
        summaries[name] = result.summary if isinstance(result, SharingResult) else result
    if formulations is None:
        formulations = task.template_sweep(list(results)) if task is not None else {}
    summary = with_provenance(template_summary(summaries, formulations))
    if output_dir is not None:
        summary = write_templates(os.fspath(output_dir), summary)
    return TemplateResult(summary)


def config_settings(config) -> dict:
    """A pass config's fields as the settings keywords of these calls (what the launcher passes)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _config(config_class, call: str, settings: dict):
    """config_class(**settings); an unknown setting refused with the accepted ones."""
    accepted = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(f"jn.{call}: unknown setting(s) {', '.join(unknown)}; accepted: task, languages, "
                         f"output_dir, resume, progress, mesh and the {config_class.__name__} fields "
                         f"{', '.join(accepted)}")
    return config_class(**settings)


def _inputs(examples, task, languages, skipped):
    """(examples list, task, languages, skipped) with the defaults filled in and checked."""
    if hasattr(examples, "examples"):  # a task's LoadResult
        skipped = {**examples.skipped, **(skipped or {})}
        examples = examples.examples
    examples = list(examples)
    if not examples:
        raise ValueError("examples: none given; pass at least one ParallelExample")
    if languages is None:
        languages = [lang for lang in examples[0].prompts if all(lang in ex.prompts for ex in examples)]
        if not languages:
            raise ValueError("examples: no language is in every example; pass languages= those to analyse")
    languages = [languages] if isinstance(languages, str) else list(languages)
    missing = sorted({lang for ex in examples for lang in languages if lang not in ex.prompts})
    if missing:
        raise ValueError(f"languages: some examples lack {', '.join(missing)}; drop them from languages=")
    return examples, ExamplesTask(examples) if task is None else task, languages, skipped


def _folder(output_dir: str | os.PathLike | None) -> str | None:
    return None if output_dir is None else os.fspath(output_dir)
