"""Examples x languages as padded batches: few compiled shapes, little padding, deterministic.

Every example contributes one row per language; all N rows of an example sit in the same batch, so the
step can reshape the recorded neurons to [B, N, L, F]. Examples are sorted by their longest tokenized row
(longest first, so a batch that does not fit in memory fails at once), grouped by `batch_size`, and each
batch is padded to a length bucket. The last batch is filled with copies of its first example marked
invalid, so it has the same shape as the others. The plan depends only on the tokens and the settings:
a resumed run rebuilds exactly the same batches.

With packing (neuron position "last" only), the rows of a batch are not padded one by one: they are laid one
after another into `bins` rows of `length` tokens (best fit, in the plan's order), each sequence attending
only to itself, and every batch of the run has the same shape, so the step compiles once. A batch then takes
as many examples as fit (at most 2 x `batch_size`), and only the bins' ends are padded.

Each row is a prompt followed by a continuation (an answer option). Because attention is causal, the
neurons at the prompt's last token do not see the continuation, so one forward gives both the neurons and
the logits that score the continuation (logits only at the tokens that predict it). The logits
at the prompt's last token also score the first token of every other option: a slot whose continuations
are all one token long ("true" / "false") needs no forward of its own. Non-gold options are ordered
longest first, so the multi-token ones share as few extra forwards as possible.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jaxneurons.lm import pad_rows
from jaxneurons.pipeline.errors import PipelineInputError

POSITIONS = ("last", "any_token")  # the paper's neuron position: the prompt's last token, or activated at any token
PADDING_SIDES = ("right", "left")
MIN_LENGTH_BUCKET = 16
ROWS_PER_BIN = 3  # packing: average rows a bin is sized for
PACK_LOOKAHEAD = 32  # packing: examples considered for each batch's gaps


@dataclasses.dataclass(frozen=True)
class TokenizedRow:
    """One example in one language: prompt tokens and its continuations, the gold one first."""

    prompt: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    option_index: tuple[int, ...]  # the option each continuation is (0 for open answers)
    readout_extra: int = 0  # the neurons are read this many tokens after the prompt's end (into the gold answer)

    @property
    def longest(self) -> int:
        return len(self.prompt) + max(len(c) for c in self.continuations)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """One padded forward over the R = B * N rows of a batch (numpy arrays, ready for the device)."""

    ids_rt: np.ndarray
    mask_rt: np.ndarray
    record_index_r: np.ndarray  # where the neurons are read: the prompt's last token (or the gold answer's)
    logit_index_rj: np.ndarray  # the tokens whose logits predict the continuation's tokens
    targets_rj: np.ndarray  # the continuation's tokens
    target_mask_rj: np.ndarray  # False past a continuation's end (and for rows with none)
    real_tokens: int  # tokens of valid rows; the rest of ids_rt is padding
    # Packed: ids_rt, mask_rt (segment ids) are [bins, length], record_index_r [bins, segments] and
    # logit_index_rj [bins, segments * k]; row r's results are at segment slot row_slot_r[r].
    row_slot_r: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "real_tokens" and getattr(self, f.name) is not None}

    @property
    def padded_tokens(self) -> int:
        return int(self.ids_rt.size)


@dataclasses.dataclass(frozen=True)
class Batch:
    """Everything one step needs. Slot s scores continuation s of every row (slot 0: the gold answer)."""

    index: int
    example_index_b: np.ndarray  # original example index of each batch example; dummies repeat the first
    valid_b: np.ndarray  # False for the dummy examples that fill the last batch
    neuron_inputs: Inputs  # at the last token it also scores slot 0 in full
    scoring_inputs: tuple[Inputs, ...]  # logits only, one per slot in scoring_slots
    scoring_slots: tuple[int, ...]  # the slots with a multi-token continuation (other than "last"'s slot 0)
    option_index_sr: np.ndarray  # [S, R] option index scored in slot s for row r, -1 where none
    first_tokens_rs: np.ndarray  # [R, S] first token of each slot's continuation (0 where none)

    @property
    def all_inputs(self) -> tuple[Inputs, ...]:
        return (self.neuron_inputs, *self.scoring_inputs)


def bucket_length(n: int, minimum: int = MIN_LENGTH_BUCKET) -> int:
    """Smallest of {2^k, 3 * 2^(k-1)} >= max(n, minimum): at most 1/3 padding, two shapes per octave."""
    n = max(int(n), minimum, 1)
    power = 1
    while power < n:
        if power >= 2 and power * 3 // 2 >= n:
            return power * 3 // 2
        power *= 2
    return power


@dataclasses.dataclass(frozen=True)
class Packing:
    """The one shape of every packed forward of a run: `bins` rows of `length` tokens, each holding at most
    `segments` sequences, and the continuation slots that get a scoring forward of their own."""

    bins: int
    length: int
    segments: int
    scoring_slots: tuple[int, ...]


class _Bins:
    """Best-fit placement of sequences into a batch's bins."""

    def __init__(self, packing: Packing):
        self.free = [packing.length] * packing.bins
        self.count = [0] * packing.bins
        self.segments = packing.segments

    def copy(self) -> "_Bins":
        other = copy.copy(self)
        other.free, other.count = list(self.free), list(self.count)
        return other

    def place(self, lengths: Sequence[int]) -> list[int] | None:
        """The bin of each sequence, in order; None (and nothing placed) unless all of them fit."""
        free, count, where = list(self.free), list(self.count), []
        for n in lengths:
            fits = [(f, i) for i, f in enumerate(free) if f >= n and count[i] < self.segments]
            if not fits:
                return None
            b = min(fits)[1]  # best fit: the fullest bin that still holds it
            free[b], count[b] = free[b] - n, count[b] + 1
            where.append(b)
        self.free, self.count = free, count
        return where


def tokenize_examples(tokenizer, examples: Sequence, languages: Sequence[str], scoring: str
                      ) -> list[list[TokenizedRow]]:
    """[E][N] TokenizedRow. Prompts get the tokenizer's special tokens (BOS), continuations none."""
    _check_examples(examples, languages, scoring)
    prompts = [ex.prompts[lang] for ex in examples for lang in languages]
    prompt_ids = _encode(tokenizer, prompts, add_special_tokens=True)
    texts = sorted({text for ex in examples for lang in languages
                    for text in _continuation_texts(ex, lang, scoring)[0]})
    continuation_ids = dict(zip(texts, _encode(tokenizer, texts, add_special_tokens=False)))
    rows, i = [], 0
    for ex in examples:
        row = []
        for lang in languages:
            conts, option_index = _continuation_texts(ex, lang, scoring)
            tokens = tuple(continuation_ids[t] for t in conts)
            if any(len(t) == 0 for t in tokens):
                raise PipelineInputError(f"example {ex.id!r} ({lang}): an answer continuation tokenizes to no tokens")
            extra = len(tokens[0]) if ex.readout == "answer" else 0
            row.append(_longest_first(TokenizedRow(prompt_ids[i], tokens, option_index, extra)))
            i += 1
        rows.append(row)
    return rows


def _encode(tokenizer, texts: list[str], add_special_tokens: bool) -> list[tuple[int, ...]]:
    if not texts:
        return []
    return [tuple(int(t) for t in ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]


def _continuation_texts(ex, lang: str, scoring: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The continuations to score, gold first, and their option indices."""
    if scoring == "greedy":
        return (ex.answers[lang],), (0,)
    options, gold = ex.options[lang], ex.gold[lang]
    order = (gold, *(o for o in range(len(options)) if o != gold))
    return tuple(options[o] for o in order), order


def _longest_first(row: TokenizedRow) -> TokenizedRow:
    """Non-gold continuations sorted by token length, longest first (stable): multi-token ones share slots."""
    rest = sorted(range(1, len(row.continuations)), key=lambda i: -len(row.continuations[i]))
    order = (0, *rest)
    return TokenizedRow(row.prompt, tuple(row.continuations[i] for i in order),
                        tuple(row.option_index[i] for i in order), row.readout_extra)


def _check_examples(examples: Sequence, languages: Sequence[str], scoring: str) -> None:
    if not examples:
        raise PipelineInputError("no examples to analyse (check --num_examples, the split and the data files)")
    if not languages:
        raise PipelineInputError("no languages given")
    if scoring not in ("options", "greedy"):
        raise PipelineInputError(f"unknown scoring {scoring!r}; expected 'options' or 'greedy'")
    for ex in examples:
        missing = [lang for lang in languages if lang not in ex.prompts]
        if missing:
            raise PipelineInputError(f"example {ex.id!r} has no prompt in {missing}")
        if scoring == "options":
            bad = [lang for lang in languages if not (ex.options and ex.options.get(lang)
                                                      and 0 <= ex.gold[lang] < len(ex.options[lang]))]
            if bad:
                raise PipelineInputError(f"example {ex.id!r}: options task without valid options/gold in {bad}")


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """The deterministic schedule of a run: which examples go together, and their padded arrays."""

    rows: list[list[TokenizedRow]]  # [E][N], the caller's example order
    order: np.ndarray  # [E] example indices in processing order (longest first)
    starts: np.ndarray  # [batches + 1] where each batch begins in `order`
    batch_size: int  # examples per batch (the last, or with packing any, is filled with dummies)
    neuron_position: str  # "last" or "any_token" (POSITIONS)
    padding_side: str
    pad_id: int
    packing: Packing | None = None

    @property
    def num_examples(self) -> int:
        return len(self.rows)

    @property
    def num_languages(self) -> int:
        return len(self.rows[0])

    @property
    def num_batches(self) -> int:
        return len(self.starts) - 1

    @property
    def num_slots(self) -> int:
        return max(len(row.continuations) for ex in self.rows for row in ex)

    def examples_in(self, index: int) -> np.ndarray:
        """Original indices of the real examples of batch `index`."""
        return self.order[self.starts[index]:self.starts[index + 1]]

    def batch_examples(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(example index [B], valid [B]) of batch `index`: its real examples, then copies of the first marked
        invalid (dummies), so every batch has batch_size examples."""
        real = self.examples_in(index)
        example_index_b = np.concatenate([real, np.full(self.batch_size - len(real), real[0])]).astype(np.int64)
        return example_index_b, np.arange(self.batch_size) < len(real)

    def batch(self, index: int) -> Batch:
        """Batch `index` with its padded forwards (built on demand: the plan holds only tokens)."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        example_index_b, valid_b = self.batch_examples(index)
        rows = [row for e in example_index_b for row in self.rows[e]]
        valid_r = np.repeat(valid_b, self.num_languages)
        num_slots = max(len(r.continuations) for r in rows)

        def slot(s: int) -> list[tuple[int, ...] | None]:
            return [r.continuations[s] if s < len(r.continuations) else None for r in rows]

        if self.packing is not None:
            k = bucket_length(max(len(c) for ex in self.rows for r in ex for c in r.continuations), minimum=1)
            build = lambda conts, readout=False: _build_packed(rows, conts, valid_r, self.pad_id, self.packing, k,
                                                                 readout)
            neuron, scoring_slots = build(slot(0), True), self.packing.scoring_slots
        else:
            length = bucket_length(max(r.longest for r in rows))
            k = bucket_length(max(len(c) for r in rows for c in r.continuations), minimum=1)
            build = lambda conts, readout=False: _build_inputs(rows, conts, valid_r, self.pad_id,
                                                                  self.padding_side, length, k, readout)
            multi_token = [any(c is not None and len(c) > 1 for c in slot(s)) for s in range(num_slots)]
            if self.neuron_position == "last":
                neuron = build(slot(0), True)
                scoring_slots = tuple(s for s in range(1, num_slots) if multi_token[s])
            else:  # neurons over the prompt only: the max over tokens must not see the answer
                neuron = _build_inputs(rows, [None] * len(rows), valid_r, self.pad_id, self.padding_side,
                                        bucket_length(max(len(r.prompt) for r in rows)), 1)
                scoring_slots = tuple(s for s in range(num_slots) if multi_token[s])
        scoring = tuple(build(slot(s)) for s in scoring_slots)
        option_index_sr = np.array([[r.option_index[s] if s < len(r.option_index) else -1 for r in rows]
                                    for s in range(num_slots)], dtype=np.int32)
        first_tokens_rs = np.array([[c[0] if c else 0 for c in slot(s)] for s in range(num_slots)],
                                   dtype=np.int32).T
        return Batch(index, example_index_b, valid_b, neuron, scoring, scoring_slots, option_index_sr,
                     first_tokens_rs)


def record_at(neuron_position: str) -> str:
    """The `Record.at` that reads the paper's neuron position: the last token, or the max over the prompt's tokens
    (a neuron is activated at any token iff its max over them is > tau)."""
    return {"last": "last", "any_token": "max"}[neuron_position]


def check_layout(batch_size: int, neuron_position: str, padding_side: str, pack: bool) -> None:
    """PipelineInputError naming the batch setting that a plan cannot use."""
    if batch_size < 1:
        raise PipelineInputError(f"batch_size must be >= 1, got {batch_size}")
    if neuron_position not in POSITIONS:
        hint = " ('all' is now 'any_token')" if neuron_position == "all" else ""
        raise PipelineInputError(f"neuron_position must be one of {POSITIONS}, got {neuron_position!r}{hint}")
    if padding_side not in PADDING_SIDES:
        raise PipelineInputError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    if pack and neuron_position != "last":
        raise PipelineInputError("packing needs neuron_position='last' (a max over tokens would mix the packed "
                                 "sequences); run neuron_position='any_token' without packing")


def plan_batches(rows: list[list[TokenizedRow]], batch_size: int, neuron_position: str, padding_side: str,
                 pad_id: int, pack: bool = False, bins_multiple: int = 1) -> BatchPlan:
    """Sort examples by their longest row (longest first, stable) and group them into batches.

    pack: lay each batch's rows one after another into bins (neuron position "last" only; see the module's
    docstring). The bins hold as many tokens as `batch_size` average examples, and a batch takes up to
    2 x batch_size examples, so short examples share a step: of the next `PACK_LOOKAHEAD` examples in order,
    each that still fits. bins_multiple: the bin count is rounded up to a multiple of this (a mesh's data
    axis).
    """
    check_layout(batch_size, neuron_position, padding_side, pack)
    if neuron_position != "last" and any(r.readout_extra for ex in rows for r in ex):
        raise PipelineInputError("this formulation reads the neurons at the end of the gold answer, which needs "
                                 "neuron_position='last' (--neuron_position=last), or choose another --prompt_format")
    longest_e = np.array([max(row.longest for row in ex) for ex in rows])
    order = np.argsort(-longest_e, kind="stable")
    if not pack:
        starts = np.minimum(np.arange(0, len(rows) + batch_size, batch_size), len(rows))
        return BatchPlan(rows, order, starts, batch_size, neuron_position, padding_side, pad_id)
    packing = _packing(rows, batch_size, bins_multiple)
    max_examples, pending, order, starts = 2 * batch_size, list(order), [], [0]
    while pending:  # fill a batch from the next PACK_LOOKAHEAD examples: shorter ones fill the gaps
        bins, taken = {s: _Bins(packing) for s in (0, *packing.scoring_slots)}, []
        for e in pending[:PACK_LOOKAHEAD]:
            if len(taken) < max_examples and _place_example(rows[e], bins):
                taken.append(e)
        if not taken:  # cannot happen: `_packing` sizes the bins to hold any one example
            raise AssertionError(f"example {pending[0]} does not fit in empty bins {packing}")
        order += taken
        starts.append(len(order))
        taken = set(taken)
        pending = [e for e in pending if e not in taken]
    return BatchPlan(rows, np.array(order), np.array(starts), max_examples, neuron_position, padding_side, pad_id,
                     packing)


def _packing(rows: list[list[TokenizedRow]], batch_size: int, bins_multiple: int) -> Packing:
    """Bins that hold the longest row and about `ROWS_PER_BIN` average rows (attention inside a bin costs in
    proportion to its length, so longer bins waste less padding but compute more scores), as many as hold
    `batch_size` average examples."""
    lengths = [len(r.prompt) + len(r.continuations[0]) for ex in rows for r in ex]
    mean = sum(lengths) / len(lengths)
    length = bucket_length(max(max(r.longest for ex in rows for r in ex), ROWS_PER_BIN * mean))
    slots = tuple(s for s in range(1, max(len(r.continuations) for ex in rows for r in ex))
                  if any(len(r.continuations) > s and len(r.continuations[s]) > 1 for ex in rows for r in ex))
    segments = max(1, math.ceil(2 * length / mean))
    alone = Packing(len(rows[0]), length, segments, slots)  # N bins always hold one example
    largest = 0
    for example in rows:
        bins = {s: _Bins(alone) for s in (0, *slots)}
        _place_example(example, bins)
        largest = max(largest, *(sum(c > 0 for c in b.count) for b in bins.values()))
    bins = max(largest, math.ceil((batch_size + 0.5) * len(rows[0]) * mean / length))  # + half: gaps
    return Packing(-(-bins // bins_multiple) * bins_multiple, length, segments, slots)


def _place_example(example: list[TokenizedRow], bins: dict[int, _Bins]) -> bool:
    """Place an example's rows in every forward's bins (all or none); False if they do not fit."""
    trial = {s: b.copy() for s, b in bins.items()}
    for s, b in trial.items():
        lengths = [len(r.prompt) + len(r.continuations[s]) for r in example if len(r.continuations) > s]
        if b.place(lengths) is None:
            return False
    bins.update(trial)
    return True


def gold_inputs(rows: Sequence[TokenizedRow], pad_id: int, k: int | None = None) -> Inputs:
    """One forward over `rows`, each its prompt followed by its gold continuation (slot 0): the neuron forward a
    plan without packing builds at the last token (right padding to the rows' length bucket).

    k: the continuation length the targets are padded to (default: the bucket of the longest gold continuation);
    a caller that wants one shape for many batches passes the longest of them all.
    """
    gold = [row.continuations[0] for row in rows]
    longest = max(len(c) for c in gold)
    k = bucket_length(longest, minimum=1) if k is None else k
    if k < longest:
        raise ValueError(f"k={k} is shorter than the longest gold continuation ({longest} tokens)")
    length = bucket_length(max(len(row.prompt) + len(c) for row, c in zip(rows, gold)))
    return _build_inputs(list(rows), gold, np.ones(len(rows), bool), pad_id, "right", length, k, readout=True)


def _build_packed(rows: list[TokenizedRow], conts: list[tuple[int, ...] | None], valid_r: np.ndarray,
                  pad_id: int, packing: Packing, k: int, readout: bool = False) -> Inputs:
    """Lay the valid rows that have a continuation one after another into the bins (best fit, row order:
    the placement the plan made). readout: the neurons are read `readout_extra` tokens into the (gold) answer."""
    bins_n, length, segs = packing.bins, packing.length, packing.segments
    ids = np.full((bins_n, length), pad_id, np.int32)
    segments = np.zeros((bins_n, length), np.int32)
    record_index = np.zeros((bins_n, segs), np.int32)
    logit_index = np.zeros((bins_n, segs * k), np.int32)
    row_slot_r = np.zeros(len(rows), np.int32)
    targets_rj = np.zeros((len(rows), k), np.int32)
    target_mask_rj = np.zeros((len(rows), k), bool)
    placed = [r for r, c in enumerate(conts) if valid_r[r] and c is not None]
    sequences = [rows[r].prompt + conts[r] for r in placed]
    where = _Bins(packing).place([len(q) for q in sequences])
    if where is None:
        raise AssertionError("a planned batch does not fit its bins")  # the plan placed these same rows
    fill, count = [0] * bins_n, [0] * bins_n
    for r, seq, b in zip(placed, sequences, where):
        start, j, n = fill[b], count[b], len(conts[r])
        ids[b, start:start + len(seq)] = seq
        segments[b, start:start + len(seq)] = j + 1
        prompt_end = start + len(rows[r].prompt) - 1
        record_index[b, j] = prompt_end + (rows[r].readout_extra if readout else 0)
        logit_index[b, j * k:(j + 1) * k] = prompt_end + np.minimum(np.arange(k), n - 1)
        row_slot_r[r] = b * segs + j
        targets_rj[r, :n], target_mask_rj[r, :n] = conts[r], True
        fill[b], count[b] = start + len(seq), j + 1
    return Inputs(ids, segments, record_index, logit_index, targets_rj, target_mask_rj,
                   sum(len(q) for q in sequences), row_slot_r)


def _build_inputs(rows: list[TokenizedRow], conts: list[tuple[int, ...] | None], valid_r: np.ndarray,
                   pad_id: int, side: str, length: int, k: int, readout: bool = False) -> Inputs:
    """Pad prompt + continuation rows to `length`; continuation targets padded to `k`."""
    conts = [c or () for c in conts]
    sequences = [row.prompt + c for row, c in zip(rows, conts)]
    ids_rt, mask_rt = pad_rows(sequences, pad_id, side, length=length)
    offset_r = np.array([length - len(s) if side == "left" else 0 for s in sequences])
    prompt_end_r = offset_r + np.array([len(row.prompt) for row in rows]) - 1
    record_index_r = prompt_end_r + (np.array([row.readout_extra for row in rows]) if readout else 0)
    logit_index_rj = np.repeat(prompt_end_r[:, None], k, axis=1)
    targets_rj = np.zeros((len(rows), k), np.int32)
    target_mask_rj = np.zeros((len(rows), k), bool)
    for r, c in enumerate(conts):
        n = len(c)
        logit_index_rj[r, :n] += np.arange(n)  # position p predicts token p + 1
        targets_rj[r, :n] = c
        target_mask_rj[r, :n] = True
    real = int(sum(len(s) for s, v in zip(sequences, valid_r) if v))
    return Inputs(ids_rt, mask_rt, record_index_r.astype(np.int32), logit_index_rj.astype(np.int32),
                   targets_rj, target_mask_rj, real)
