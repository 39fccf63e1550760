"""Interop with Sotopia (and CLCA's Sotopia-style scenarios): their records to culturesim
templates and back.

Sotopia (https://github.com/sotopia-lab/sotopia) describes a social task as an
EnvironmentProfile (a scenario, one goal per agent, a relationship code and some constraints),
the people who play it as AgentProfiles, and which agents play which environment as
EnvAgentComboStorage pairings. The package is split by job:

    schemas     the record models, reading every shape Sotopia writes into one canonical form,
                and writing them back in the export or the database shape
    reading     files, folders and streams record by record: a bad record is skipped and
                reported (or refused, strictly), never the whole file for it
    goals       goal tags (<extra_info>, <strategy_hint>, <clarification_hint>) as a
                participant's private information and hints
    people      agent profiles as persona constraints, Big Five levels and values included
    importing   records to template files, with pairings, stable ids and a report
    exporting   templates to records, giving back what import read unless it was edited
    clca        CLCA's role-play scenario lines to template files
"""

from culturesim.scenarios.sotopia.clca import ClcaScenario, import_clca
from culturesim.scenarios.sotopia.exporting import (
    export_agents,
    export_environment,
    export_sotopia,
    original_records,
)
from culturesim.scenarios.sotopia.goals import Goal, join_goal, split_goal
from culturesim.scenarios.sotopia.importing import (
    ImportReport,
    assign_agents,
    default_template_id,
    import_environment,
    import_sotopia,
    slugify,
    template_ids,
)
from culturesim.scenarios.sotopia.people import format_big_five, parse_big_five, persona_specs
from culturesim.scenarios.sotopia.reading import (
    Located,
    ReadResult,
    Skipped,
    read_sotopia,
    read_sotopia_file,
)
from culturesim.scenarios.sotopia.schemas import (
    RELATIONSHIP_NAMES,
    RELATIONSHIP_WORDS,
    SHAPES,
    AgentProfile,
    EnvAgentCombo,
    EnvironmentProfile,
    ImportedRecords,
    Shape,
    SotopiaError,
    format_age_constraint,
    parse_age_constraint,
    relationship_code,
    relationship_word,
)

__all__ = [
    "RELATIONSHIP_NAMES",
    "RELATIONSHIP_WORDS",
    "SHAPES",
    "AgentProfile",
    "ClcaScenario",
    "EnvAgentCombo",
    "EnvironmentProfile",
    "Goal",
    "ImportReport",
    "ImportedRecords",
    "Located",
    "ReadResult",
    "Shape",
    "Skipped",
    "SotopiaError",
    "assign_agents",
    "default_template_id",
    "export_agents",
    "export_environment",
    "export_sotopia",
    "format_age_constraint",
    "format_big_five",
    "import_clca",
    "import_environment",
    "import_sotopia",
    "join_goal",
    "original_records",
    "parse_age_constraint",
    "parse_big_five",
    "persona_specs",
    "read_sotopia",
    "read_sotopia_file",
    "relationship_code",
    "relationship_word",
    "slugify",
    "split_goal",
    "template_ids",
]
