"""`scenarios check` on a large imported folder: culturesim's check against the per-template path.

    .venv/bin/python benchmarks/scenario_check.py [--templates 90] [--agents 40]

Builds a folder the way a Sotopia user gets one: N environments in Sotopia's JSONL export shape
(two goals each, with goal tags) and 40 agent profiles, written to a temporary folder and
imported with `import_sotopia`. Then times, on the same folder:

- culturesim: `check_templates`, as `culturesim scenarios check FOLDER` runs it (every template
  file parsed once, one library renders every check);
- per-template (the baseline, the path `check_templates` took before): for each file, load it
  and build a `ScenarioLibrary` over the built-in library and the folder, which parses every
  template file again, then render it for every culture.

Both render each template for all 20 shipped cultures with a sampled cast. Prints each time,
`speedup = X.XX` (per-template / culturesim), and how many templates each found ok (they must
agree). The target is under 5 s for 90 templates on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from culturesim.scenarios.checks import check_templates, template_files
from culturesim.scenarios.cultures import load_cultures
from culturesim.scenarios.episodes import build_episodes
from culturesim.scenarios.sotopia import import_sotopia
from culturesim.scenarios.templates import ScenarioLibrary, load_template_file

PLACES = ("market stall", "bus stop", "office kitchen", "school gate", "library desk")


def write_sotopia_export(folder: Path, environments: int, agents: int) -> tuple[Path, Path]:
    """Environment and agent profiles in Sotopia's JSONL export shape."""
    env_lines, agent_lines = [], []
    for i in range(environments):
        env_lines.append(
            {
                "env_id": f"01J3BENCHENV{i:014d}",
                "codename": f"bench_scene_{i}",
                "source": "benchmark",
                "scenario": f"Two people meet at a {PLACES[i % len(PLACES)]} (scene {i}) and "
                "have to settle something between them before they part.",
                "agent_goals": [
                    f"Get the other to agree to plan {i} <extra_info>You cannot wait another "
                    "week.</extra_info>",
                    "Agree only to part of it <strategy_hint>Offer something in return."
                    "</strategy_hint>",
                ],
                "relationship": str(i % 6),
                "age_constraint": "[(18, 70), (18, 70)]",
                "occupation_constraint": "nan",
                "agent_constraint": "none",
            }
        )
    for i in range(agents):
        agent_lines.append(
            {
                "agent_id": f"01J3BENCHAGT{i:014d}",
                "first_name": f"Person{i}",
                "last_name": "Example",
                "age": 20 + i % 50,
                "occupation": "teacher",
                "gender": "Woman" if i % 2 else "Man",
                "gender_pronoun": "She/her" if i % 2 else "He/him",
                "public_info": f"Person{i} has lived in the same town all their life.",
                "big_five": "Openness to Experience - High; Conscientiousness - Low",
                "moral_values": ["Care"],
                "schwartz_personal_values": ["Benevolence"],
                "personality_and_values": "Patient and warm.",
                "decision_making_style": "Analytical",
                "secret": "",
                "mbti": "INFJ",
                "model_id": "",
            }
        )
    envs, people = folder / "environments.jsonl", folder / "agents.jsonl"
    envs.write_text("".join(json.dumps(e) + "\n" for e in env_lines), encoding="utf-8")
    people.write_text("".join(json.dumps(a) + "\n" for a in agent_lines), encoding="utf-8")
    return envs, people


def per_template_check(folder: Path) -> int:
    """The check as it was: a library per template file, so every file is parsed per file."""
    files = template_files([folder])
    cultures = load_cultures()
    ok = 0
    for file in files:
        template = load_template_file(file)
        library = ScenarioLibrary([folder])
        codes = sorted(cultures) if template.cultures == "all" else list(template.cultures)
        build_episodes(library, [template], [[cultures[c]] for c in codes])
        ok += 1
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", type=int, default=90)
    parser.add_argument("--agents", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scenario-check-") as tmp:
        root = Path(tmp)
        envs, agents = write_sotopia_export(root, args.templates, args.agents)
        started = time.perf_counter()
        report = import_sotopia(envs, agents, out_dir=root / "imported")
        imported = time.perf_counter() - started
        folder = root / "imported"
        print(f"imported {len(report.written)} templates in {imported:.2f} s")
        load_cultures()  # warm both paths alike (the shipped prompt and culture files)

        started = time.perf_counter()
        results = check_templates([folder])
        ours = time.perf_counter() - started
        ours_ok = sum(r.ok for r in results)

        started = time.perf_counter()
        baseline_ok = per_template_check(folder)
        baseline = time.perf_counter() - started

    cultures = len(load_cultures())
    print(f"templates: {len(results)}, cultures each: {cultures}")
    print(f"culturesim check_templates: {ours:.2f} s ({ours_ok} ok)")
    print(f"per-template library (baseline): {baseline:.2f} s ({baseline_ok} ok)")
    print(f"speedup = {baseline / ours:.2f}")
    print(f"under 5 s: {'yes' if ours < 5 else 'NO'}")
    if ours_ok != baseline_ok:
        raise SystemExit("the two checks disagree on how many templates are ok")


if __name__ == "__main__":
    main()
