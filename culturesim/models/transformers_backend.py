"""In-process backend on Hugging Face transformers: batched generation and exact scoring.

Why a decode loop of our own instead of `model.generate`: every request in a batch carries its
own seed, temperature, top-p, length and stop strings. `generate` shares one RNG and one set of
settings across the batch, so a sampled completion would depend on which other requests it was
batched with. Here each row samples from its own `torch.Generator`, so the same request gives
the same text whatever batch it lands in.

Scoring builds, per prompt, the trie of candidate token prefixes and runs one forward row per
distinct prefix: options "1".."11" need two rows (the prompt, and the prompt + "1"), not eleven,
and the log-probability of every candidate is still exact.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    PreTrainedTokenizerBase,
)

from culturesim.models.base import (
    GREEDY,
    Completion,
    GenerationParams,
    Params,
    Prompt,
    Stopped,
    check_candidates,
    per_prompt_params,
)
from culturesim.models.decoding import DecodingBatch, DecodingRow, Prefilled
from culturesim.models.engine import DecodingEngine
from culturesim.models.prefix_cache import Layers, PrefixCache, common_prefix_length

DEFAULT_PREFIX_CACHE_BYTES = 4 << 30
"""Room for prompts' keys and values: SmolLM2 (fp32) needs 46 KB a token, so about 93,000 tokens.
A simulation keeps every live conversation's agents' prompts and its intent prompts (16 two-party
dialogues at 6 turns: 2.4 GB); at 1 GB they evicted each other and the run took 40% longer."""

SCORE_MAX_PADDING = 0.15
"""The most of a scoring batch's tokens that may be padding (measured: survey prompts of 65 to
146 tokens padded 46% in batches of 32 rows)."""

Node = tuple[int, tuple[int, ...]]
"""A point in a prompt's trie of candidate tokens: (prompt index, the candidate tokens so far)."""


def shared_prefixes(encoded: Sequence[Sequence[int]], min_shared: int) -> list[list[int]]:
    """The longest prefixes that prompts of one batch share with each other, each worth reading
    once instead of once per prompt: a survey style's system prompt, a dialogue's transcript
    under its intent questions, a scene that two agents both see.

    A prefix is kept when at least two prompts share it, it is at least `min_shared` tokens
    long, and it leaves each of them a token of its own (whose logits are the answer). Only
    maximal prefixes are returned: one that another extends is read as part of that one.
    Sorting puts the prompts with the longest common prefix next to each other, so comparing
    neighbours finds, for every prompt, the longest prefix it shares with any other. With
    `min_shared` 0 nothing is shared.
    """
    if min_shared <= 0 or len(encoded) < 2:
        return []
    rows = [tuple(ids) for ids in encoded]
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    longest = [0] * len(rows)
    for a, b in itertools.pairwise(order):
        shared = min(common_prefix_length(rows[a], rows[b]), len(rows[a]) - 1, len(rows[b]) - 1)
        longest[a], longest[b] = max(longest[a], shared), max(longest[b], shared)
    found = sorted({rows[i][:n] for i, n in enumerate(longest) if n >= min_shared})
    return [
        list(prefix)
        for prefix, after in zip(found, [*found[1:], ()], strict=False)
        if after[: len(prefix)] != prefix
    ]


def encode_prompt_with(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, *, where: str = "the model"
) -> list[int]:
    """Token ids for a prompt: chats get the chat template and the assistant header.

    A chat whose last message is the assistant's is a prefill: the model continues that
    message (no end-of-turn is added), which lets scoring put an answer prefix in its mouth.
    Training code that must see exactly the tokens scoring sees (the survey teacher) calls
    this too.
    """
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if tokenizer.chat_template is None:
        raise ValueError(f"{where} has no chat template; pass raw text prompts instead of chats")
    prefill = prompt[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in prompt],
        add_generation_prompt=not prefill,
        continue_final_message=prefill,
        tokenize=False,
    )
    return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])


def encode_candidate_with(tokenizer: PreTrainedTokenizerBase, candidate: str) -> list[int]:
    """A scored continuation's token ids (no special tokens)."""
    ids = list(tokenizer(candidate, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError(f"candidate {candidate!r} encodes to no tokens")
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-aligned in one batch (ids, attention mask), so every row's last token is at
    the last position; inference and the survey teacher's training both batch this way."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention[i, width - len(row) :] = 1
    return input_ids, attention


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def length_buckets(
    lengths: Sequence[int],
    extra_tokens: Sequence[int],
    max_batch_size: int,
    token_budget: int,
    max_padding: float = 1.0,
) -> Iterator[list[int]]:
    """Group indices into batches of similar length whose padded size fits the token budget.

    Sorting by length keeps padding small; the budget bounds memory (rows × padded length).
    A single request larger than the budget still gets a batch of its own. `max_padding` caps
    the share of a batch's tokens that are padding: a forward pass costs what its padded
    tokens cost, so scoring (one pass per batch) splits a batch rather than pad it, while
    generation (one decoding loop per batch) keeps the default and its rows together.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    widest = 0
    real = 0
    for index in order:
        width = lengths[index] + extra_tokens[index]
        new_widest = max(widest, width)
        padded = (len(batch) + 1) * lengths[index]  # ascending order: the newest is the longest
        too_padded = padded > 0 and 1 - (real + lengths[index]) / padded > max_padding
        if batch and (
            len(batch) >= max_batch_size
            or (len(batch) + 1) * new_widest > token_budget
            or too_padded
        ):
            yield batch
            batch, new_widest, real = [], width, 0
        batch.append(index)
        widest = new_widest
        real += lengths[index]
    if batch:
        yield batch


def _row_layers(cache: Any, row: int, mask: torch.Tensor) -> Layers:
    """One row's keys and values at its real (unmasked) positions, copied out of a batch."""
    real = mask.bool()
    return [
        (layer.keys[row : row + 1, :, real], layer.values[row : row + 1, :, real])
        for layer in cache.layers
    ]


def _left_padded_layers(
    template: Layers, rows: Sequence[tuple[Layers | None, int]], width: int, count: int
) -> Layers:
    """Per layer, a (count, heads, width, dim) batch holding each row's first n cached
    positions right-aligned (zeros before them, masked out by the caller)."""
    layers: Layers = []
    for layer, (keys, values) in enumerate(template):
        shape = (count, keys.shape[1], width, keys.shape[3])
        # Only the holes are zeroed (they must be finite under the mask): filling the whole
        # batch first would write every position twice.
        batch_keys, batch_values = keys.new_empty(shape), values.new_empty(shape)
        for i, (entry, n) in enumerate(rows):
            n = n if entry is not None else 0
            batch_keys[i, :, : width - n] = 0
            batch_values[i, :, : width - n] = 0
            if n:
                assert entry is not None
                batch_keys[i, :, width - n :] = entry[layer][0][0, :, :n]
                batch_values[i, :, width - n :] = entry[layer][1][0, :, :n]
        layers.append((batch_keys, batch_values))
    return layers


class TransformersModel:
    """A causal LM in this process. Safe to call from several threads (calls are serialised)."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        model_id: str,
        *,
        max_batch_size: int = 32,
        token_budget: int = 32768,
        min_shared_prefix: int = 16,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._model_id = model_id
        self.max_batch_size = max_batch_size
        self.token_budget = token_budget
        self.min_shared_prefix = min_shared_prefix
        self.prefix_cache = PrefixCache(prefix_cache_bytes, slack_tokens=min_shared_prefix)
        self._lock = threading.RLock()
        self._engine: DecodingEngine | None = None
        self._engine_lock = threading.Lock()
        self._stop_events: set[threading.Event] = set()
        self._stop_lock = threading.Lock()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id: int = int(tokenizer.pad_token_id)
        self.eos_token_ids = self._collect_eos_ids()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        model_id: str | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        adapter: str | Path | None = None,
        merge_adapter: bool = False,
        **kwargs: Any,
    ) -> TransformersModel:
        """Load a local model directory (or a hub id where the network allows)."""
        target = pick_device(device)
        if dtype is None:
            dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, attn_implementation="sdpa"
        )
        model = model.to(target)
        name = model_id or f"hf:{path}"
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            if merge_adapter:
                model = model.merge_and_unload()
            name = f"{name}+adapter:{adapter}@{adapter_digest(Path(adapter))}"
        return cls(model, tokenizer, name, **kwargs)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _collect_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(config_eos, int):
            ids.add(config_eos)
        elif isinstance(config_eos, list):
            ids.update(int(i) for i in config_eos)
        return ids

    # ------------------------------------------------------------------ encoding

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids for a prompt (see `encode_prompt_with`)."""
        return encode_prompt_with(self.tokenizer, prompt, where=self.model_id)

    def encode_candidate(self, candidate: str) -> list[int]:
        return encode_candidate_with(self.tokenizer, candidate)

    def _decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def _left_padded(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention = left_pad(rows, self.pad_token_id)
        return input_ids.to(self.device), attention.to(self.device)

    # ------------------------------------------------------------------ generate

    def generate(self, prompts: Sequence[Prompt], params: Params = GREEDY) -> list[Completion]:
        """Completions for the prompts. They decode in the model's one running batch (see
        `engine`), together with whatever other threads are generating now."""
        settings = per_prompt_params(params, len(prompts))
        encoded = [self.encode_prompt(p) for p in prompts]
        with self._stoppable() as stop:
            rows = [
                DecodingRow(
                    prompt=ids,
                    settings=s,
                    generator=None if s.greedy else torch.Generator().manual_seed(_seed_of(s, ids)),
                    future=Future(),
                    stop=stop,
                )
                for ids, s in zip(encoded, settings, strict=True)
            ]
            self.engine.submit(rows)
            return [row.future.result() for row in rows]

    @property
    def engine(self) -> DecodingEngine:
        """The thread that runs this model (started on first use)."""
        with self._engine_lock:
            if self._engine is None:
                batch = DecodingBatch(
                    self.model, self._decode, self.eos_token_ids, max_rows=self.max_batch_size
                )
                self._engine = DecodingEngine(
                    batch, self._prefill, self._lock, self.max_batch_size, self.token_budget
                )
            return self._engine

    def stop_running(self) -> None:
        """End the calls running or waiting now at their next step; they raise `Stopped`."""
        with self._stop_lock:
            for event in self._stop_events:
                event.set()

    @contextmanager
    def _stoppable(self) -> Iterator[threading.Event]:
        """An event for one call, registered before it waits for the model lock, so a stop
        reaches calls queued behind the running one too."""
        event = threading.Event()
        with self._stop_lock:
            self._stop_events.add(event)
        try:
            yield event
        finally:
            with self._stop_lock:
                self._stop_events.discard(event)

    def _prefill(
        self, rows: Sequence[Sequence[int]], *, count: bool = True
    ) -> list[tuple[list[int], Prefilled]]:
        """Read the rows' prompts, computing only what the prefix cache lacks, and return the
        states to continue from: per group of rows (their indices in `rows`), next-token logits
        and one cache holding their prompts.

        Rows whose new tokens are of similar length are read together (padding is compute
        that buys nothing). The groups stay apart: merging their caches into one batch would
        copy every key and value (7 s of a 126 s simulation benchmark); the decoding batch
        takes each group into its slots directly, and scoring walks each group's trie.
        """
        self._read_shared_prefixes(rows)
        found = [self.prefix_cache.lookup(row, count=count) for row in rows]
        groups = length_buckets(
            [len(row) - length for row, (length, _) in zip(rows, found, strict=True)],
            [length for length, _ in found],
            self.max_batch_size,
            self.token_budget,
            max_padding=SCORE_MAX_PADDING,
        )
        return [
            (group, self._read([rows[i] for i in group], [found[i] for i in group]))
            for group in groups
        ]

    def _read(
        self, rows: Sequence[Sequence[int]], found: Sequence[tuple[int, Layers | None]]
    ) -> Prefilled:
        """One forward pass over rows with their cached prefixes (see `_prefill`).

        Row i is laid out as [holes][its cached prefix][holes][its new tokens]: cached prefixes
        are right-aligned to the widest, new tokens left-padded, holes masked out, positions
        counted over real tokens only, so each row sees exactly its own prompt.
        """
        widest = max(length for length, _ in found)
        input_ids, suffix_mask = self._left_padded(
            [row[length:] for row, (length, _) in zip(rows, found, strict=True)]
        )
        reused = torch.tensor([length for length, _ in found], device=self.device)[:, None]
        positions = (reused + suffix_mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        attention = suffix_mask
        if widest:
            template = next(entry for _, entry in found if entry is not None)
            cache = DynamicCache(
                _left_padded_layers(
                    template, [(entry, length) for length, entry in found], widest, len(rows)
                )
            )
            prefix_mask = torch.zeros(
                len(rows), widest, dtype=suffix_mask.dtype, device=self.device
            )
            for i, (length, _) in enumerate(found):
                if length:
                    prefix_mask[i, widest - length :] = 1
            attention = torch.cat([prefix_mask, suffix_mask], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if self.prefix_cache.enabled:
            for i, row in enumerate(rows):
                self.prefix_cache.put(row, _row_layers(out.past_key_values, i, attention[i]))
        return Prefilled(out.logits[:, -1, :], out.past_key_values, attention, positions[:, -1:])

    # ------------------------------------------------------------------ score

    def count_prompt_tokens(self, prompts: Sequence[Prompt]) -> int:
        """Tokens the prompts take, for usage metering of score calls."""
        return sum(len(self.encode_prompt(p)) for p in prompts)

    def score(
        self, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        check_candidates(prompts, candidates)
        encoded_prompts = [self.encode_prompt(p) for p in prompts]
        encoded_candidates = [[self.encode_candidate(c) for c in cs] for cs in candidates]
        # The trie of candidate tokens: for each (prompt, token prefix), the next tokens asked for.
        children: dict[Node, set[int]] = {}
        for p, options in enumerate(encoded_candidates):
            for ids in options:
                for j in range(len(ids)):
                    children.setdefault((p, tuple(ids[:j])), set()).add(ids[j])
        with self._stoppable() as stop:
            # Scoring runs on the engine's thread, between two decoding steps.
            logprob_of = self.engine.call(
                lambda: self._score_prompts(encoded_prompts, children, stop)
            )
        return [
            [
                sum(logprob_of[(p, tuple(ids[:j]))][ids[j]] for j in range(len(ids)))
                for ids in options
            ]
            for p, options in enumerate(encoded_candidates)
        ]

    def _score_prompts(
        self,
        encoded_prompts: list[list[int]],
        children: dict[Node, set[int]],
        stop: threading.Event,
    ) -> dict[Node, dict[int, float]]:
        logprob_of: dict[Node, dict[int, float]] = {}
        # A prefix several prompts share (a survey style's system prompt) is read once.
        self._read_shared_prefixes(encoded_prompts)
        reused = [self.prefix_cache.lookup(ids, count=False)[0] for ids in encoded_prompts]
        for bucket in length_buckets(
            [len(ids) - r for ids, r in zip(encoded_prompts, reused, strict=True)],
            reused,
            self.max_batch_size,
            self.token_budget,
            max_padding=SCORE_MAX_PADDING,
        ):
            if stop.is_set():
                raise Stopped("the run was stopped")
            rows = [(p, encoded_prompts[p]) for p in bucket]
            logprob_of.update(self._score_rows(rows, children))
        return logprob_of

    def _read_shared_prefixes(self, rows: Sequence[Sequence[int]]) -> None:
        """Put the prefixes that these rows share with each other (see `shared_prefixes`) in
        the prefix cache, where the cache lacks at least `min_shared_prefix` tokens of them.

        They are read together in one `_prefill`, which first does the same for the prefixes
        they share among themselves (the scene under several transcripts), so each shared
        token is computed once. The recursion ends: every level's prefixes are shorter.
        """
        if not self.prefix_cache.enabled:
            return
        missing = []
        for prefix in shared_prefixes(rows, self.min_shared_prefix):
            cached, _ = self.prefix_cache.lookup([*prefix, -1], count=False)
            if len(prefix) - cached >= self.min_shared_prefix:
                missing.append(prefix)
        if missing:
            self._prefill(missing, count=False)

    def _score_rows(
        self, rows: list[tuple[int, list[int]]], children: dict[Node, set[int]]
    ) -> dict[Node, dict[int, float]]:
        """Next-token log-probabilities at every trie node of these prompts.

        The prompts are read in one batch, reusing cached prefixes (see `_prefill`). A
        candidate's second token then costs one decoding step on that prompt's cache, not
        another pass over the whole prompt.
        """
        found: dict[Node, dict[int, float]] = {}
        for group, read in self._prefill([ids for _, ids in rows]):
            found.update(self._walk_trie(read, [rows[i][0] for i in group], children))
        return found

    def _walk_trie(
        self, read: Prefilled, prompts: list[int], children: dict[Node, set[int]]
    ) -> dict[Node, dict[int, float]]:
        """Log-probabilities at the trie nodes of prompts read together (see `_score_rows`)."""
        cache, logits, attention, positions = (
            read.cache,
            read.logits,
            read.attention,
            read.positions,
        )
        found: dict[Node, dict[int, float]] = {}
        frontier: list[Node] = [(p, ()) for p in prompts]
        while True:
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, node in enumerate(frontier):
                found[node] = {t: float(logprobs[row, t]) for t in children[node]}
            # One step deeper in the trie: each child node that is itself asked about.
            step = [
                (row, (p, (*tokens, t)))
                for row, (p, tokens) in enumerate(frontier)
                for t in sorted(children[(p, tokens)])
                if (p, (*tokens, t)) in children
            ]
            if not step:
                return found
            index = torch.tensor([row for row, _ in step], device=self.device)
            cache.batch_select_indices(index)
            attention = torch.cat(
                [attention[index], torch.ones_like(attention[index][:, :1])], dim=1
            )
            positions = positions[index] + 1
            frontier = [node for _, node in step]
            out = self.model(
                input_ids=torch.tensor(
                    [[node[1][-1]] for node in frontier], dtype=torch.long, device=self.device
                ),
                attention_mask=attention,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]

    # ------------------------------------------------------------------ for the HTTP server

    def prompt_token_logprobs(self, text: str) -> list[tuple[str, int, float | None]]:
        """Each token of a raw text with its character offset and log P(token | before).

        The first token has no context and gets None, as OpenAI-style echo responses do.
        """
        encoded = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        ids: list[int] = list(encoded["input_ids"])
        offsets = [int(start) for start, _ in encoded["offset_mapping"]]
        values: list[float | None] = [None]
        if len(ids) > 1:
            with self._lock, torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                values += [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
        pieces = [text[start:end] for start, end in encoded["offset_mapping"]]
        return list(zip(pieces, offsets, values, strict=True))

    def top_next_tokens(self, prompt: Prompt, k: int) -> list[tuple[str, float]]:
        """The k most likely first tokens of the reply, with their log-probabilities."""
        ids = self.encode_prompt(prompt)
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device), logits_to_keep=1)
            logprobs = torch.log_softmax(logits.logits[0, -1].float(), dim=-1)
            values, tokens = logprobs.topk(k)
        return [
            (self._decode([int(t)], skip_special_tokens=False), float(v))
            for t, v in zip(tokens.tolist(), values.tolist(), strict=True)
        ]


def _seed_of(params: GenerationParams, row: Sequence[int]) -> int:
    """A request's seed; unseeded sampling still gets a fixed seed derived from the prompt."""
    if params.seed is not None:
        return params.seed
    return hash(tuple(row)) & 0x7FFFFFFF


def adapter_digest(folder: Path) -> str:
    """A short hash of an adapter's weights, part of the model id.

    Caches and stored answers are keyed by model id; an adapter retrained in the same folder
    (a forced teacher or train stage) must not be served the previous weights' answers.
    """
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("adapter_model.*")):
        with weights.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]
