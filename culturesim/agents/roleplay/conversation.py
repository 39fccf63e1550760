"""One conversation: persona agents on autogen, CLCA's action protocol, turn policies, stops.

Each Episode runs as an autogen `GroupChat`: one `ConversableAgent` per participant (its
system prompt rendered from `roleplay/system.jinja2`), a silent narrator that opens the scene,
and a `GroupChatManager` that broadcasts every turn. The speaker-selection function is ours:
it applies the turn policy and the stop conditions, and ends the chat by returning no speaker.

* round_robin: strict alternation in role order (CLCA's).
* random: a seeded choice among the others still present.
* graph: a seeded choice among the current speaker's successors in the social graph.
* model: autogen's own model-selected speaker ("auto"), through the same model client.

Stop conditions: someone leaves a two-party scene, or all but one have left; the turn limit;
repetition (two consecutive utterances whose similarity is at least `repetition_threshold`);
a scenario stop phrase in an utterance; a malformed turn that its one correction did not fix.

Every model call carries a seed derived from the dialogue seed, the turn and the attempt, so a
dialogue is reproducible whatever else runs beside it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import autogen
from autogen.io.base import IOStream

from culturesim.agents.roleplay.autogen_client import bound_client, llm_config
from culturesim.agents.roleplay.protocol import parse_turn
from culturesim.agents.roleplay.settings import SimulateSection
from culturesim.models.base import Chat
from culturesim.models.batcher import Batcher
from culturesim.models.corrections import generate_until_valid
from culturesim.prompt_library import PromptLibrary
from culturesim.records import Episode, Persona, Turn, derive_seed
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.graphs import graph_from_edges
from culturesim.scenarios.templates import _culture_view

NARRATOR = "narrator"
ACTIONS = ("none", "non-verbal", "speak", "leave")
# Structured mode scores the actions as words that continue a sentence: SmolLM2 puts about 14%
# of its probability on these after "I choose to", against 0.1% on the bare labels after
# "ACTION:" (measured on the borrow_money scene).
ACTION_CHOICE_PREFILL = "I choose to"
ACTION_PHRASES = {
    "none": " do nothing",
    "non-verbal": " make a gesture",
    "speak": " speak",
    "leave": " leave",
}
# autogen logs an INFO line per agent about custom clients; a simulation creates thousands.
logging.getLogger("autogen.oai.client").setLevel(logging.WARNING)


class _Silent(IOStream):
    """autogen prints every message; a simulation of many chats must not."""

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        return None

    def send(self, message: Any) -> None:
        return None

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return ""


@dataclass
class ConversationState:
    """What has happened so far in one conversation."""

    turns: list[Turn] = field(default_factory=list)
    left: set[str] = field(default_factory=set)
    stop_reason: str = ""
    retries: int = 0


class Conversation:
    """Runs one dialogue sample of an Episode on autogen and returns its turns."""

    def __init__(
        self,
        episode: Episode,
        batcher: Batcher,
        *,
        seed: int,
        settings: SimulateSection | None = None,
        library: PromptLibrary | None = None,
        cultures: dict[str, Any] | None = None,
        on_turn: Callable[[Turn], None] | None = None,
    ) -> None:
        """`on_turn(turn)` is called as each turn is played (intent labels start from it while
        the dialogue goes on)."""
        self.episode = episode
        self.on_turn = on_turn
        self.scenario = episode.scenario
        self.batcher = batcher
        self.seed = seed
        self.settings = settings or SimulateSection()
        self.library = library or PromptLibrary()
        known = cultures or load_cultures()
        self.roles = [r.name for r in self.scenario.roles]
        self.persona = {r: p for r, p in zip(self.roles, episode.personas, strict=True)}
        self.culture_views = {r.name: _culture_view(known[r.culture]) for r in self.scenario.roles}
        self.graph = graph_from_edges(self.roles, self.scenario.edges)
        self.turn_limit = min(
            self.scenario.turn_limit, self.settings.max_turns or self.scenario.turn_limit
        )
        self.client_class = bound_client(batcher)
        self.state = ConversationState()
        self.rng = random.Random(derive_seed(seed, "speakers", digits=12))

    # ------------------------------------------------------------------ prompts

    def system_prompt(self, role: str) -> str:
        me = self.persona[role]
        others = []
        for other in self.roles:
            if other == role:
                continue
            edge = self.graph.get_edge_data(role, other) or {}
            person = self.persona[other]
            others.append(
                {
                    "name": person.name,
                    "age": person.age,
                    "occupation": person.occupation,
                    "culture_name": self.culture_views[other]["demonym"],
                    "relationship": edge.get("relationship", ""),
                }
            )
        return self.library.render(
            "roleplay/system.jinja2",
            me=me.model_dump(),
            role=self.scenario.role(role).model_dump(),
            my_culture=self.culture_views[role],
            scenario=self.scenario.model_dump(),
            others=others,
        )

    def view(self, persona: Persona, action: str, utterance: str) -> str:
        return self.library.render(
            "transcript/turn.jinja2",
            speaker_name=persona.name,
            action=action,
            utterance=utterance,
            malformed=False,
        )

    # ------------------------------------------------------------------ agents

    def _make_agent(self, role: str) -> autogen.ConversableAgent:
        agent = autogen.ConversableAgent(
            role,
            system_message=self.system_prompt(role),
            llm_config=llm_config(self.batcher.model_id),
            human_input_mode="NEVER",
        )
        agent.register_model_client(self.client_class)  # type: ignore[arg-type]

        def reply(
            recipient: autogen.ConversableAgent,
            messages: list[dict[str, Any]] | None = None,
            sender: Any = None,
            config: Any = None,
        ) -> tuple[bool, str]:
            return True, self._take_turn(recipient, role, messages or [])

        agent.register_reply([autogen.Agent, None], reply, position=0)
        return agent

    def _take_turn(
        self, agent: autogen.ConversableAgent, role: str, messages: list[dict[str, Any]]
    ) -> str:
        me = self.persona[role]
        index = len(self.state.turns)
        asks = [
            {"role": "user", "content": self.library.render("roleplay/turn.jinja2", me=me, first=f)}
            for f in (True, False)
        ]
        history = [{"role": "system", "content": agent.system_message}]
        answered = 0
        for message in messages:
            # Each of my earlier replies follows the ask it answered, so this turn's prompt is
            # the last turn's prompt with the new messages appended: its prefix is reused.
            if message.get("role") == "assistant":
                history.append(asks[answered > 0])
                answered += 1
            history.append(message)
        ask = asks[answered > 0]

        def generate(pending: Sequence[Chat], indices: Sequence[int], attempt: int) -> list[str]:
            messages = list(pending[0])
            turn_seed = derive_seed(self.seed, index, attempt)
            prefill = self.settings.prefill
            stop: tuple[str, ...] = ()
            if self.settings.action_mode == "structured":
                action = self._choose_action(list(map(dict, messages)), turn_seed)
                # Speech opens a quotation, so the model speaks in character, not about itself.
                prefill = self.library.render("roleplay/action_prefill.jinja2", action=action)
                stop = ("\n", '"') if action == "speak" else ("\n",)
            if prefill:
                messages.append({"role": "assistant", "content": prefill})
            response = agent.client.create(  # type: ignore[union-attr]
                messages=messages,
                seed=turn_seed,
                temperature=self.settings.temperature,
                top_p=self.settings.top_p,
                max_tokens=self.settings.max_new_tokens,
                stop=stop,
                cache=None,
            )
            text = agent.client.extract_text_or_completion_object(response)[0]  # type: ignore[union-attr]
            return [prefill + str(text)]

        def correction(i: int, problem: str) -> str:
            return self.library.render("roleplay/correction.jinja2", me=me, problem=problem)

        (outcome,) = generate_until_valid(
            [[*history, ask]],  # type: ignore[list-item]
            generate,
            lambda i, raw: parse_turn(raw, (me.name,)),
            correction,
            max_attempts=2,
        )
        self.state.retries += len(outcome.replies) > 1
        raw = outcome.replies[-1]
        parsed = outcome.result
        if parsed is None:
            self.state.stop_reason = "malformed"
            return self._played(
                Turn(index=index, speaker=role, action="none", malformed=True, raw=raw),
                self.library.render(
                    "transcript/turn.jinja2",
                    speaker_name=me.name,
                    action="none",
                    utterance="",
                    malformed=True,
                ),
            )
        if parsed.action == "leave":
            self.state.left.add(role)
        return self._played(
            Turn(
                index=index, speaker=role, action=parsed.action, utterance=parsed.utterance, raw=raw
            ),
            self.view(me, parsed.action, parsed.utterance),
        )

    def _played(self, turn: Turn, view: str) -> str:
        """Record a turn and tell `on_turn`; returns the view."""
        self.state.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn)
        return view

    def _choose_action(self, messages: list[dict[str, Any]], seed: int) -> str:
        """Structured mode: the action is drawn from the model's own probabilities of the labels.

        Small models rarely write the ACTION/OUTPUT form unprompted; scoring the four labels
        after "ACTION:" keeps the choice the model's while the form is ours. At temperature 0
        the most likely action is taken.
        """
        from culturesim.agents.roleplay.autogen_client import to_chat

        chat: Chat = [
            *to_chat(messages),
            {"role": "assistant", "content": ACTION_CHOICE_PREFILL},
        ]
        allowed = [
            a
            for a in ACTIONS
            if a != "leave" or len(self.state.turns) >= self.settings.allow_leave_after
        ]
        phrases = [ACTION_PHRASES[a] for a in allowed]
        logprobs = self.batcher.submit_score(chat, phrases).result()
        if self.settings.temperature == 0:
            return allowed[max(range(len(allowed)), key=lambda i: logprobs[i])]
        scaled = [lp / self.settings.temperature for lp in logprobs]
        top = max(scaled)
        weights = [math.exp(v - top) for v in scaled]
        return random.Random(seed).choices(allowed, weights=weights)[0]

    # ------------------------------------------------------------------ turn policy and stops

    def _stop_reason(self) -> str:
        state = self.state
        if state.stop_reason:
            return state.stop_reason
        if len(state.turns) >= self.turn_limit:
            return "turn_limit"
        present = [r for r in self.roles if r not in state.left]
        if state.left and len(self.roles) == 2:
            return "left"
        if len(present) <= 1:
            return "all_left"
        spoken = [t for t in state.turns if t.action in ("speak", "non-verbal")]
        last = state.turns[-1] if state.turns else None
        if last is not None and last.action == "speak":
            lowered = last.utterance.lower()
            if any(p.lower() in lowered for p in self.scenario.stop_phrases):
                return "stop_phrase"
        if len(spoken) >= 2 and spoken[-1] is last:
            a, b = spoken[-2].utterance.lower(), spoken[-1].utterance.lower()
            if SequenceMatcher(None, a, b).ratio() >= self.settings.repetition_threshold:
                return "repetition"
        return ""

    def _select(self, last: autogen.Agent, chat: autogen.GroupChat) -> Any:
        reason = self._stop_reason()
        if reason:
            self.state.stop_reason = reason
            return None
        present = [r for r in self.roles if r not in self.state.left]
        agents = {a.name: a for a in chat.agents}
        policy = self.scenario.turn_policy
        previous = last.name if last.name in self.roles else None
        if previous is None:
            return agents[present[0]]
        if policy == "round_robin":
            start = self.roles.index(previous)
            order = self.roles[start + 1 :] + self.roles[: start + 1]
            return agents[next(r for r in order if r in present)]
        if policy == "graph":
            options = [r for r in self.graph.successors(previous) if r in present]
        else:
            options = [r for r in present if r != previous]
        if policy == "model":
            return "auto"
        if not options:
            options = [r for r in present if r != previous] or present
        return agents[self.rng.choice(sorted(options))]

    # ------------------------------------------------------------------ running

    def run(self) -> ConversationState:
        with IOStream.set_default(_Silent()):
            agents = [self._make_agent(role) for role in self.roles]
            narrator = autogen.ConversableAgent(
                NARRATOR, llm_config=False, human_input_mode="NEVER"
            )
            chat = autogen.GroupChat(
                agents=[narrator, *agents],
                messages=[],
                max_round=self.turn_limit + 2,
                speaker_selection_method=self._select,
                send_introductions=False,
                select_speaker_auto_model_client_cls=self.client_class,  # type: ignore[arg-type]
                select_speaker_auto_llm_config=llm_config(self.batcher.model_id),
            )
            manager_config: Any = False
            if self.scenario.turn_policy == "model":
                manager_config = llm_config(self.batcher.model_id)
            manager = autogen.GroupChatManager(chat, llm_config=manager_config)
            if manager_config:
                manager.register_model_client(self.client_class)  # type: ignore[arg-type]
            opening = self.library.render("roleplay/opening.jinja2", scenario=self.scenario)
            narrator.initiate_chat(manager, message=opening, silent=True)
        if not self.state.stop_reason:
            self.state.stop_reason = self._stop_reason() or "turn_limit"
        return self.state
