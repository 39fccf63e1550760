"""Starter files for authors: a commented scenario template and a culture profile.

Each starter is valid as written (`culturesim scenarios check` and `culturesim cultures check`
pass on it), so an author starts from something that runs and changes it step by step, with the
checks telling them at once, by file and line, when an edit breaks it.
"""

from __future__ import annotations

import re

_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_CODE = re.compile(r"^[A-Z]{3}$")

SCENARIO_STARTER = """\
---
# A culturesim scenario: YAML front matter, then a Jinja2 body split into sections.
# Check it with `culturesim scenarios check {filename}`; render it with
# `culturesim scenarios render {id} --scenario-dir {folder} --culture JPN`.
id: {id}
title: A favour asked between colleagues      # one line, shown in lists and reports
situation: workplace hierarchy                 # the kind of social situation
relationship: colleagues
participants:                                  # two or more roles; each gets a persona
  - role: asker
    persona: {{age: [25, 40]}}                 # constraints on the sampled persona
  - role: senior
    persona: {{age: [45, 65]}}
variables:                                     # values the body can use; set with --var
  favour: {{type: choice, values: [covering a weekend shift, reviewing a report], default: covering a weekend shift, sample: true}}
turns: {{limit: 10, policy: round_robin}}       # round_robin, random, graph or model
cultures: all                                  # or a list of culture codes
tags: [workplace, favour]                      # select with --scenarios tag:workplace
---
{{# The body renders once in a sandbox: an undefined name is an error, reported with its line.
   In scope: every variable, `culture` (with `.cues`), `cast.<role>` (name, age, occupation,
   ...), `place`, and the shared macros. -#}}
{{% import "_macros.jinja2" as m %}}
## setting
At the end of a long week in {{{{ place }}}}, {{{{ m.who(cast.asker) }}}} stops by the desk of
{{{{ m.who(cast.senior) }}}} to ask about {{{{ favour }}}}.
## goal asker
Get {{{{ cast.senior.name }}}} to agree to {{{{ favour }}}} without seeming to presume on them.
## secret asker
You promised your family you would be away that weekend, before asking anyone.
## goal senior
Keep your own plans, but without refusing in a way that costs {{{{ cast.asker.name }}}} face.
## secret senior
You were told this morning that one of you two will be moved to another team.
"""

CULTURE_STARTER = """\
# A culture profile for culturesim. Check it with `culturesim cultures check {filename}`;
# use it with `--culture-dir {folder}`. Replace every example value with real data for the
# culture, and cite your sources for the scores in a comment.
code: {code}                  # ISO 3166-1 alpha-3, upper case
name: {name}                  # as it reads in a sentence
demonym: {name}an             # "a/an <demonym> person"; set `article:` when the vowel rule is wrong
definite_article: false       # true when the name takes "the" (the Netherlands)
languages: [Example]
region: Example region
# Hofstede's six dimensions, 0-100; leave out a dimension with no published score.
hofstede:
  power_distance: 50
  individualism: 50
  masculinity: 50
  uncertainty_avoidance: 50
  long_term_orientation: 50
  indulgence: 50
# Inglehart-Welzel cultural map, roughly -2.5 to 2.5.
inglehart_welzel:
  traditional_secular: 0.0
  survival_self_expression: 0.0
# Persona pools: common names, typical occupations and places.
given_names:
  female: [Ana, Maria, Sara]
  male: [Jon, Luka, Petar]
family_names: [Example, Sample, Model]
name_order: given_family      # or family_given
occupations: [teacher, nurse, shop owner, engineer]
places: [a cafe in the capital, a family home in a small town, an office downtown]
"""


def starter_template(template_id: str, folder: str = ".") -> str:
    """A commented starter scenario with the given id; valid as written."""
    if not _ID.match(template_id):
        raise ValueError(
            f"scenario name {template_id!r}: use lower case letters, digits, '_' or '-', "
            "starting with a letter or digit (e.g. favour_at_work)"
        )
    filename = f"{folder}/{template_id}.scenario.jinja2"
    return SCENARIO_STARTER.format(id=template_id, filename=filename, folder=folder)


def starter_culture(code: str, folder: str = ".") -> str:
    """A commented starter culture profile with the given code; valid as written."""
    if not _CODE.match(code):
        raise ValueError(f"culture code {code!r}: use three upper-case letters (ISO alpha-3)")
    filename = f"{folder}/{code}.yaml"
    return CULTURE_STARTER.format(code=code, name=code.title(), filename=filename, folder=folder)
