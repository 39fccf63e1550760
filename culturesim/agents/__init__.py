"""The three agent kinds of the loop, each a stage of its own: persona agents that role-play
scenarios (`roleplay`), the prober that writes and answers survey-style questions (`prober`),
and the judge that filters what both produce (`judge`). They never import each other."""
