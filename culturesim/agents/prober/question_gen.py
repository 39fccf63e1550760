"""Self-instruct question generation, as CultureSPA does it, with the filters it lacked.

Per request: k examples of the topic (up to `max_generated_examples` already generated, the rest
seeds, shuffled) in the published prompt, asking for one new multiple-choice question as JSON.
The assistant's turn is prefilled with `{"Question": "` by default: small models then continue
the JSON instead of chatting about it (pass `prefill=""` to send the bare prompt).

`scales` sets the answer format asked for, request by request in turn: `None` lets the model
write the options (as published); N asks for a question answered on a 1..N rating scale, whose
options are then the numbers 1..N and whose anchors the model writes after it, "(1 = ...,
N = ...)", as the WVS states its scales. Small models asked freely write two to four options; a survey
scored by the published formula is weighted towards its 10-point scales (the norm grows with the
option count), so a loop that never asks for them never teaches them.

Every output goes through, in order: JSON parsing (tolerant of extra text and Python quoting),
validation (2–11 distinct, non-empty options; numeric scales must state their anchors), exact
dedup, near-duplicate dedup by sentence embeddings, and decontamination against an evaluation
set. Each rejection is counted by reason; nothing is dropped without a count.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.progress import Progress

from culturesim.jsonish import first_json_object
from culturesim.models.base import Chat, GenerationParams, LanguageModel
from culturesim.models.embeddings import (
    DECONTAMINATION_THRESHOLD,
    QUESTION_DEDUP_THRESHOLD,
    Embedder,
    normalise_text,
)
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Question, derive_seed
from culturesim.store import RunStore
from culturesim.survey.topics import Topic

JSON_PREFILL = '{"Question": "'
_LABEL = re.compile(r"^\s*(?:\(?[0-9]{1,2}[.):]|\(?[A-Ka-k][.)])\s+")
_NUMBER = re.compile(r"^\s*-?\d+\s*$")
_WORD = re.compile(r"[^\W\d_]{2,}")  # a word of two or more letters, in any script
_SCALE_ENDS = re.compile(r"\(1 = [^)]*\)\s*$")


@dataclass(frozen=True)
class ParsedQuestion:
    text: str
    options: tuple[str, ...]


@dataclass
class GenerationStats:
    requested: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {"requested": self.requested, "kept": self.kept, "rejected": dict(self.rejected)}


class InvalidQuestion(ValueError):
    """A generated question failed validation; `reason` is a short, countable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_question(text: str) -> ParsedQuestion:
    """Extract and validate one multiple-choice question from a model's output."""
    data = first_json_object(text)
    if data is None:
        raise InvalidQuestion("no_json", text[:80])
    fields = {str(k).strip().strip(":").strip().lower(): v for k, v in data.items()}
    question, options = fields.get("question"), fields.get("options")
    if not isinstance(question, str) or len(question.strip()) < 10:
        raise InvalidQuestion("no_question")
    asked = _SCALE_ENDS.sub("", question)  # the words of the question, not its scale's ends
    if not _has_words(asked):  # "1,10", "23,000,0011", "Security"
        raise InvalidQuestion("no_question", asked[:40])
    if not isinstance(options, list) or not all(isinstance(o, str | int | float) for o in options):
        raise InvalidQuestion("options_not_a_list")
    cleaned = [str(o).strip() for o in options]
    if cleaned and all(_LABEL.match(o) for o in cleaned):  # "1. Agree" -> "Agree"
        cleaned = [_LABEL.sub("", o).strip() for o in cleaned]
    if any(not o for o in cleaned):
        raise InvalidQuestion("empty_option")
    if not 2 <= len(cleaned) <= 11:
        raise InvalidQuestion("option_count", str(len(cleaned)))
    if len({o.lower() for o in cleaned}) != len(cleaned):
        raise InvalidQuestion("duplicate_options")
    if all(_NUMBER.match(o) for o in cleaned):
        low, high = cleaned[0], cleaned[-1]
        if low not in question or high not in question:
            raise InvalidQuestion("scale_without_anchors", f"{low}..{high}")
    return ParsedQuestion(question.strip(), tuple(cleaned))


def _has_words(text: str) -> bool:
    """Three words of letters, or, in a script written without spaces, six letters."""
    if " " not in text.strip():
        return len(re.findall(r"[^\W\d_]", text)) >= 6 and not text.isascii()
    return len(_WORD.findall(text)) >= 3


class QuestionGenerator:
    """Generates questions per topic into a run store, resumably."""

    def __init__(
        self,
        model: LanguageModel,
        store: RunStore,
        *,
        library: PromptLibrary | None = None,
        embedder: Embedder | None = None,
        examples: int = 5,
        max_generated_examples: int = 2,
        temperature: float = 0.9,
        top_p: float = 0.95,
        max_new_tokens: int = 160,
        prefill: str = JSON_PREFILL,
        structured: bool = True,
        dedup_threshold: float = QUESTION_DEDUP_THRESHOLD,
        decontaminate_against: Sequence[str] = (),
        decontamination_threshold: float = DECONTAMINATION_THRESHOLD,
        seed: int = 0,
        scales: Sequence[int | None] = (None,),
        anchor_pairs: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not scales:
            raise ValueError("scales: give at least one format (None for free options)")
        for scale in scales:
            if scale is not None and not 3 <= scale <= 11:
                raise ValueError(f"scales: a rating scale has 3 to 11 points, not {scale}")
        if not structured and any(scale is not None for scale in scales):
            raise ValueError("scales: rating scales need structured generation")
        self.scales = tuple(scales)
        self.anchor_pairs = tuple(anchor_pairs)  # empty: the model writes each end itself
        self.model = model
        self.store = store
        self.library = library or PromptLibrary()
        self.embedder = embedder
        self.examples = examples
        self.max_generated_examples = max_generated_examples
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.prefill = prefill
        self.structured = structured
        self.dedup_threshold = dedup_threshold
        self.eval_texts = list(decontaminate_against)
        self.decontamination_threshold = decontamination_threshold
        self.seed = seed

    def scale_for(self, attempt: int) -> int | None:
        """The answer format of a topic's `attempt`-th request (so a resumed run asks the same)."""
        return self.scales[attempt % len(self.scales)]

    def prompt(self, topic: Topic, examples: Sequence[Question], scale: int | None = None) -> Chat:
        user = self.library.render(
            "prober/generate.jinja2",
            topic=topic.name,
            examples=[{"question": q.text, "options": list(q.options)} for q in examples],
            scale=scale,
        )
        chat: Chat = [
            {"role": "system", "content": self.library.render("prober/system.jinja2")},
            {"role": "user", "content": user},
        ]
        if self.prefill:
            chat.append({"role": "assistant", "content": self.prefill})
        return chat

    def pick_examples(
        self, seeds: Sequence[Question], generated: Sequence[Question], rng: random.Random
    ) -> list[Question]:
        """Up to `max_generated_examples` generated questions, the rest seeds, shuffled."""
        chosen = rng.sample(list(generated), min(len(generated), self.max_generated_examples))
        chosen += rng.sample(list(seeds), min(len(seeds), self.examples - len(chosen)))
        rng.shuffle(chosen)
        return chosen

    def run(
        self,
        topics: Sequence[Topic],
        seeds: dict[str, list[Question]],
        per_topic: int,
        *,
        max_rounds: int = 5,
        show_progress: bool = True,
    ) -> dict[str, GenerationStats]:
        """Generate until every topic has `per_topic` kept questions or rounds run out."""
        kept = [q for q in self.store.read(Question) if q.source == "generated"]
        attempts: Counter[str] = Counter()
        stats = {t.name: GenerationStats() for t in topics}
        for row in self.store.read_json("generation_log"):
            attempts[row["topic"]] += int(row["requested"])
            if row["topic"] in stats:
                stats[row["topic"]].requested += int(row["requested"])
                stats[row["topic"]].kept += int(row["kept"])
                stats[row["topic"]].rejected.update(row["rejected"])
        eval_vectors = (
            self.embedder.encode(self.eval_texts) if self.embedder and self.eval_texts else None
        )
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("generating questions", total=per_topic * len(topics))
            for _ in range(max_rounds):
                have = Counter(q.topic for q in kept)
                progress.update(task, completed=sum(min(have[t.name], per_topic) for t in topics))
                needs = {
                    t.name: per_topic - have[t.name] for t in topics if have[t.name] < per_topic
                }
                if not needs:
                    break
                requests: list[tuple[Topic, list[Question], Chat, int, int | None]] = []
                for topic in topics:
                    generated = [q for q in kept if q.topic == topic.name]
                    for _ in range(needs.get(topic.name, 0)):
                        attempt = attempts[topic.name]
                        attempts[topic.name] += 1
                        request_seed = derive_seed(self.seed, topic.name, attempt)
                        examples = self.pick_examples(
                            seeds.get(topic.name, []), generated, random.Random(request_seed)
                        )
                        scale = self.scale_for(attempt)
                        chat = self.prompt(topic, examples, scale)
                        requests.append((topic, examples, chat, request_seed, scale))
                texts = self._complete([(r[2], r[3], r[4]) for r in requests])
                round_stats = {t: GenerationStats() for t in needs}
                fresh: list[Question] = []
                for (topic, examples, _, _, _), text in zip(requests, texts, strict=True):
                    record = round_stats[topic.name]
                    record.requested += 1
                    try:
                        parsed = parse_question(text)
                        question = Question(
                            topic=topic.name,
                            text=parsed.text,
                            options=parsed.options,
                            source="generated",
                            parent_ids=tuple(e.id for e in examples),
                        )
                        self._check_new(
                            question, [*self._all_seeds(seeds), *kept, *fresh], eval_vectors
                        )
                    except InvalidQuestion as error:
                        record.rejected[error.reason] += 1
                        continue
                    record.kept += 1
                    fresh.append(question)
                self.store.append_many(fresh)
                self.store.append_json(
                    "generation_log", [{"topic": t, **s.as_dict()} for t, s in round_stats.items()]
                )
                kept += fresh
                for name, s in round_stats.items():
                    stats[name].requested += s.requested
                    stats[name].kept += s.kept
                    stats[name].rejected.update(s.rejected)
            have = Counter(q.topic for q in kept)
            progress.update(task, completed=sum(min(have[t.name], per_topic) for t in topics))
        return stats

    def _complete(self, requests: Sequence[tuple[Chat, int, int | None]]) -> list[str]:
        """Full replies (prefill included) for (chat, seed, scale) requests, in two or three batches.

        Structured mode writes the JSON skeleton itself: the question text is generated up to
        its closing quote, then the options list up to its closing bracket. The model still
        chooses every word; it just cannot forget a bracket or copy the instruction's
        `[..., ...]` placeholder, which is most of what a small model gets wrong. A rating-scale
        request's second part is its anchors instead, `(1 = ..., N = ...)` after the question
        as the WVS writes them, and its options are the numbers 1..N.
        """

        def params(seed: int, stop: tuple[str, ...], tokens: int) -> GenerationParams:
            return GenerationParams(tokens, self.temperature, self.top_p, stop=stop, seed=seed)

        if not self.structured:
            replies = self.model.generate(
                [chat for chat, _, _ in requests],
                [params(seed, (), self.max_new_tokens) for _, seed, _ in requests],
            )
            return [self.prefill + r.text for r in replies]
        base = [[m for m in chat if m["role"] != "assistant"] for chat, _, _ in requests]
        questions = self.model.generate(
            [[*chat, {"role": "assistant", "content": JSON_PREFILL}] for chat in base],
            [params(seed, ('"',), self.max_new_tokens // 2) for _, seed, _ in requests],
        )
        free = [i for i, (_, _, scale) in enumerate(requests) if not scale]
        scaled = [i for i, (_, _, scale) in enumerate(requests) if scale]
        texts: list[str] = [""] * len(requests)
        if free:
            heads = {
                i: self.library.render(
                    "prober/options_prefill.jinja2",
                    prefill=JSON_PREFILL,
                    question=questions[i].text.strip(),
                )
                for i in free
            }
            options = self.model.generate(
                [[*base[i], {"role": "assistant", "content": heads[i]}] for i in free],
                [params(requests[i][1] + 1, ("]",), self.max_new_tokens) for i in free],
            )
            for i, o in zip(free, options, strict=True):
                texts[i] = heads[i] + o.text + "]}"
        if scaled:
            replies_scaled = self._anchored(
                [questions[i].text.strip() for i in scaled],
                [base[i] for i in scaled],
                [(requests[i][1], int(requests[i][2] or 0)) for i in scaled],
                params,
            )
            for i, reply in zip(scaled, replies_scaled, strict=True):
                texts[i] = reply
        return texts

    def _anchored(
        self,
        questions: list[str],
        chats: list[Chat],
        seeds_and_scales: list[tuple[int, int]],
        params: Callable[[int, tuple[str, ...], int], GenerationParams],
    ) -> list[str]:
        """Rating-scale replies: the model names each end in turn, `(1 = ..., N = ...)`, or
        chooses the pair of ends from `anchor_pairs`."""
        if self.anchor_pairs:
            return self.choose_anchors(questions, [n for _, n in seeds_and_scales])
        tokens = self.max_new_tokens // 4

        def continue_with(heads: list[str], stop: tuple[str, ...], offset: int) -> list[str]:
            replies = self.model.generate(
                [
                    [*c, {"role": "assistant", "content": JSON_PREFILL + h}]
                    for c, h in zip(chats, heads, strict=True)
                ],
                [params(seed + offset, stop, tokens) for seed, _ in seeds_and_scales],
            )
            # Cut at the first stop too: a backend may return text past it.
            return [
                re.split("|".join(map(re.escape, (*stop, "\n"))), r.text)[0].strip()
                for r in replies
            ]

        low_heads = [
            self.library.render("prober/scale_anchors.jinja2", question=q, scale=n, low=None)
            for q, (_, n) in zip(questions, seeds_and_scales, strict=True)
        ]
        lows = continue_with(low_heads, (",", ")", '"'), 1)
        high_heads = [
            self.library.render("prober/scale_anchors.jinja2", question=q, scale=n, low=low)
            for q, (_, n), low in zip(questions, seeds_and_scales, lows, strict=True)
        ]
        highs = continue_with(high_heads, (",", ")", '"'), 2)
        return [
            self._scale_reply(head, high, n)
            for head, high, (_, n) in zip(high_heads, highs, seeds_and_scales, strict=True)
        ]

    @staticmethod
    def _scale_reply(head: str, high: str, scale: int) -> str:
        """The full JSON reply of a scale question: `head` ends at "N = ", the options are 1..N."""
        options = '", "'.join(str(k) for k in range(1, scale + 1))
        return f'{JSON_PREFILL}{head}{high})", "Options": ["{options}"]}}'

    def choose_anchors(self, questions: list[str], scales: list[int]) -> list[str]:
        """Each question's ends, the pair of `anchor_pairs` the model finds most likely after it.

        The likelihood is taken against the same request with a blank question (pointwise
        mutual information): otherwise short, common ends ("never, very often") win whatever
        the question asks. The request is a short one of its own (`prober/scale_ends.jinja2`),
        not the generation prompt: every pair is scored twice per question, and the examples
        of the generation prompt would multiply the cost without telling the model more.
        """

        def scores(texts: list[str], ends_of: list[int]) -> list[list[float]]:
            chats: list[Chat] = [
                [
                    {
                        "role": "user",
                        "content": self.library.render(
                            "prober/scale_ends.jinja2", question=q, scale=n
                        ),
                    },
                    {"role": "assistant", "content": "1 ="},
                ]
                for q, n in zip(texts, ends_of, strict=True)
            ]
            return self.model.score(
                chats,
                [[f" {low}, {n} = {high}" for low, high in self.anchor_pairs] for n in ends_of],
            )

        given = scores(questions, scales)
        # The blank request depends on the scale alone: score it once per scale.
        distinct = sorted(set(scales))
        blank = dict(zip(distinct, scores([""] * len(distinct), distinct), strict=True))
        replies = []
        for question, n, with_question in zip(questions, scales, given, strict=True):
            gain = [a - b for a, b in zip(with_question, blank[n], strict=True)]
            low, high = self.anchor_pairs[max(range(len(gain)), key=gain.__getitem__)]
            head = self.library.render(
                "prober/scale_anchors.jinja2", question=question, scale=n, low=low
            )
            replies.append(self._scale_reply(head, high, n))
        return replies

    @staticmethod
    def _all_seeds(seeds: dict[str, list[Question]]) -> list[Question]:
        return [q for group in seeds.values() for q in group]

    def _check_new(
        self, question: Question, existing: Sequence[Question], eval_vectors: object
    ) -> None:
        key = normalise_text(question.text)
        if any(normalise_text(q.text) == key for q in existing):
            raise InvalidQuestion("exact_duplicate")
        if self.embedder is None:
            return
        if existing:
            similarity = self.embedder.max_similarity(question.text, [q.text for q in existing])
            if similarity >= self.dedup_threshold:
                raise InvalidQuestion("near_duplicate", f"{similarity:.2f}")
        if eval_vectors is not None:
            similarity = self.embedder.max_similarity_to(question.text, eval_vectors)
            if similarity >= self.decontamination_threshold:
                raise InvalidQuestion("decontaminated", f"{similarity:.2f}")
