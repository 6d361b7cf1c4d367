"""What both launchers share: checks of every flag's value, configs built from flags, checks of the model and
of the examples' lengths before its (slow) load, the claim of the output folder, a timed model load, one-line
errors (a traceback only with --debug), and the checkpoint library's INFO logs kept out of the progress bars."""

from __future__ import annotations

import dataclasses
import logging as py_logging
import math
import sys
import time
from collections.abc import Callable, Sequence

from absl import flags, logging

# Bad input a user can fix: one line each. Anything else is a bug and keeps its traceback.
BAD_INPUT = (ValueError, OSError, ImportError)


def run_guarded(body: Callable[[], None], debug: bool) -> None:
    """Run a launcher's body; bad input ends with one line 'error: ...' (exit 1), or its traceback with --debug."""
    from jaxneurons.tasks import HubUnavailableError

    try:
        body()
    except (*BAD_INPUT, HubUnavailableError) as e:
        if debug:
            raise
        sys.exit(f"error: {e}")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a float flag accepts: finite, from `low` (excluded when `low_open`) up to `high`."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return math.isfinite(value) and above and value <= self.high

    def __str__(self) -> str:
        if self.high < math.inf:
            return f"a finite number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low > -math.inf:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        return "a finite number"


POSITIVE = Bounds(0.0, low_open=True)
AT_LEAST_ZERO = Bounds(0.0)
QUOTES = ('"', "'")


def launcher_module(flag_name: str) -> str:
    """The module absl files the launcher's flag `flag_name` under: the script's path when run as a script, else
    the module that defined it (or imported the launcher's file)."""
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if any(flag.name == flag_name for flag in defined):
            return module
    raise KeyError(f"no module defines the flag --{flag_name}")


def check_flag_values(module_name: str, bounds: dict[str, Bounds]) -> None:
    """Every flag of the launcher `module_name` (see launcher_module): a string (or list) value loses one pair of
    matching surrounding quotes, which a flagfile keeps (a warning names the flag); a float value must be finite
    and within its `bounds` (default: any finite number), else ValueError naming the flag and the accepted values."""
    for flag in flags.FLAGS.get_flags_for_module(module_name):
        value = flag.value
        if isinstance(value, float):
            limits = bounds.get(flag.name, Bounds())
            if not limits.admits(value):
                raise ValueError(f"--{flag.name}={value:g} must be {limits}")
        elif isinstance(value, (str, list)) and value:
            unquoted = strip_quotes(value)
            if unquoted != value:
                logging.warning("--%s: dropped the quotes around %r (a flagfile keeps quote marks in a value)",
                                flag.name, value)
                setattr(flags.FLAGS, flag.name, unquoted)


def rename_flag(old: str, new: str, values: dict | None = None) -> None:
    """A flag given by its old name: its value (mapped through `values`) moves to `new`, with a warning that names
    both; the old flag is left unset. Both given: ValueError."""
    given = flags.FLAGS[old].value
    if given is None:
        return
    if flags.FLAGS[new].present:
        raise ValueError(f"--{old} is the old name of --{new}: give --{new} alone")
    value = (values or {}).get(given, given)
    logging.warning("--%s is deprecated and goes in the next release: read as --%s=%s", old, new, value)
    setattr(flags.FLAGS, new, value)
    setattr(flags.FLAGS, old, None)


def strip_quotes(value: str | list[str]) -> str | list[str]:
    """`value` without one pair of matching quotes around it. A list: absl reads '"en,de"' as the one item 'en,de'
    (and '"en' 'de"' from a list quoted otherwise): its items without quotes, split at commas (no list flag of
    the launchers has an item with a comma)."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            return value
        items = [strip_quotes(item) for item in strip_quotes(",".join(value)).split(",")]
        return items if items != value else value
    if len(value) >= 2 and value[0] in QUOTES and value[-1] == value[0]:
        return value[1:-1]
    return value


def build_config(config_class, **fields: tuple[str, object]):
    """config_class(field=value, ...) from {field: (flag name, value)}; an invalid value's error names its flag."""
    try:
        return config_class(**{name: value for name, (_, value) in fields.items()})
    except ValueError as e:
        text = str(e)
        flag = next((flag for name, (flag, _) in sorted(fields.items(), key=lambda kv: -len(kv[0]))
                     if text.startswith(name) or text.startswith(flag)), None)
        raise ValueError(f"--{flag}: {text}" if flag else text) from None


def identity_free(*config_classes) -> set[str]:
    """The config fields that do not change results (metadata identity=False): their flags, of the same names,
    stay out of a run's identity."""
    return {f.name for config_class in config_classes for f in dataclasses.fields(config_class)
            if not f.metadata.get("identity", True)}


def folder_identity(module_name: str, excluded: set[str]) -> dict:
    """The launcher's flags that change results, as {--name: value}: what its output folder belongs to."""
    own = flags.FLAGS.get_flags_for_module(module_name)
    return {"launcher": module_name.rsplit("/", 1)[-1],
            **{f"--{f.name}": f.value for f in own if f.name not in excluded}}


def check_model(source: str, tokenizer: str | None):
    """The model's config, read without its weights; FileNotFoundError when it has no tokenizer to use."""
    from jaxneurons.loading import has_tokenizer, read_model_config

    config = read_model_config(source)
    if tokenizer is None and not has_tokenizer(source):
        raise FileNotFoundError(f"--model={source} has no tokenizer files (tokenizer.json, tokenizer_config.json, "
                                "tokenizer.model): pass --tokenizer= a zoo name, .gguf file or folder holding this "
                                "model's tokenizer")
    return config


LONGER_THAN_CONTEXT = "longer_than_context"  # the reason skipped examples are counted under


def check_context(examples: Sequence, languages: Sequence[str], model: str, tokenizer: str | None,
                  skip: bool = False, hint: str = "pass --on_error=skip to drop such examples") -> tuple[list, int]:
    """(the examples whose every language fits the model's context, how many were dropped), before the model
    loads: each prompt (with its special tokens) plus its longest answer continuation is tokenized with the
    model's tokenizer (or `tokenizer`'s) and set against the context the model's config states. An example that
    does not fit raises ValueError naming it, its language and both lengths (a forward that long would try to
    allocate the attention of the whole sequence); with `skip` it is dropped instead. No stated context: no check."""
    from jaxneurons.loading import load_tokenizer, read_max_context

    context = read_max_context(model)
    if context is None or not examples:
        return list(examples), 0
    tok = load_tokenizer(tokenizer or model)
    if tok is None:
        return list(examples), 0
    lengths = sequence_lengths(tok, examples, languages)
    kept = []
    for ex, row in zip(examples, lengths):
        too_long = next(((lang, n) for lang, n in zip(languages, row) if n > context), None)
        if too_long is None:
            kept.append(ex)
        elif not skip:
            raise ValueError(f"example {ex.id!r} ({too_long[0]}) is {too_long[1]} tokens long (prompt and longest "
                             f"answer), longer than the {context} tokens of --model={model}'s context; {hint}")
    if len(kept) < len(examples):
        logging.warning("dropped %d example(s) longer than the model's context (%d tokens)", len(examples) - len(kept),
                        context)
    return kept, len(examples) - len(kept)


def sequence_lengths(tokenizer, examples: Sequence, languages: Sequence[str]) -> list[list[int]]:
    """[E][N] tokens of each prompt (special tokens included) plus its longest answer continuation."""
    def answers(ex, lang: str) -> Sequence[str]:
        return ex.options[lang] if ex.options is not None else (ex.answers[lang],)

    def count(texts: list[str], special: bool) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]] if texts else []

    prompts = count([ex.prompts[lang] for ex in examples for lang in languages], True)
    texts = sorted({a for ex in examples for lang in languages for a in answers(ex, lang)})
    answer_len = dict(zip(texts, count(texts, False)))
    flat = iter(prompts)
    return [[next(flat) + max(answer_len[a] for a in answers(ex, lang)) for lang in languages] for ex in examples]


def load_model_timed(source: str, **kwargs):
    """jaxneurons.load_model with a log line before and after (the load takes up to a minute or two)."""
    import jaxneurons

    logging.info("loading the model %s ...", source)
    start = time.perf_counter()
    lm = jaxneurons.load_model(source, **kwargs)
    logging.info("loaded %s in %.1f s (%d layers x %d neurons)", source, time.perf_counter() - start,
                 lm.config.num_layers, lm.config.neurons_per_layer)
    return lm


class _NoCheckpointInfo(py_logging.Filter):
    """Drops orbax's INFO records (hundreds per alignment run, printed into the progress bar)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname.replace("\\", "/")


def quiet_checkpoint_logs() -> None:
    """Keep orbax's INFO logs out of the terminal (its warnings and errors still show)."""
    logging.get_absl_handler().addFilter(_NoCheckpointInfo())
