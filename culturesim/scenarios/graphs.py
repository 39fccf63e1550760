"""Social graphs for scenes of more than two: who may address whom, and how they are related.

A scenario declares its graph in the front matter, either edge by edge or as a generated shape:

    graph:
      kind: star            # complete | star | small_world | edges
      center: manager       # star only
      relationship: colleague
      edges:                # kind: edges; directed, each [source, target, relationship]
        - [manager, junior, supervises]

Generated shapes are undirected (each edge both ways); `small_world` is a connected
Watts–Strogatz ring (`k` neighbours, rewiring probability `p`, seeded). The graph is built with
networkx; the engine's graph turn policy lets the current speaker hand the turn only along it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field

from culturesim.records import Edge


class GraphSpec(BaseModel):
    """A scenario's social-graph declaration (front-matter field `graph`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["complete", "star", "small_world", "edges"] = "complete"
    center: str | None = None
    relationship: str = ""
    edges: tuple[tuple[str, str, str] | tuple[str, str], ...] = ()
    k: int = Field(default=2, ge=2)
    p: float = Field(default=0.3, ge=0.0, le=1.0)
    seed: int = 0


class GraphError(ValueError):
    """A graph declaration that does not fit the scenario's roles."""


def build_graph(spec: GraphSpec, roles: Sequence[str]) -> nx.DiGraph:
    """The directed social graph over `roles`, each edge labelled with a `relationship`."""
    graph = nx.DiGraph()
    graph.add_nodes_from(roles)
    label = spec.relationship

    def both_ways(pairs: object) -> None:
        for a, b in pairs:  # type: ignore[attr-defined]
            graph.add_edge(a, b, relationship=label)
            graph.add_edge(b, a, relationship=label)

    if spec.kind == "complete":
        both_ways((a, b) for i, a in enumerate(roles) for b in roles[i + 1 :])
    elif spec.kind == "star":
        if spec.center not in roles:
            raise GraphError(
                f"graph.center {spec.center!r} must be one of the roles: {', '.join(roles)}"
            )
        both_ways((spec.center, r) for r in roles if r != spec.center)
    elif spec.kind == "small_world":
        if len(roles) < 4 or spec.k >= len(roles):
            raise GraphError(
                f"a small_world graph needs at least 4 roles and k < roles ({len(roles)} roles, "
                f"k={spec.k}); use complete or star for smaller scenes"
            )
        ring = nx.connected_watts_strogatz_graph(len(roles), spec.k, spec.p, seed=spec.seed)
        both_ways((roles[a], roles[b]) for a, b in ring.edges())
    else:
        if not spec.edges:
            raise GraphError("graph.kind 'edges' needs a non-empty graph.edges list")
        for edge in spec.edges:
            source, target = edge[0], edge[1]
            for end in (source, target):
                if end not in roles:
                    raise GraphError(
                        f"graph edge {list(edge)} names {end!r}, which is not a role "
                        f"({', '.join(roles)})"
                    )
            graph.add_edge(source, target, relationship=edge[2] if len(edge) > 2 else label)
    for role in roles:
        if graph.out_degree(role) == 0:
            raise GraphError(f"role {role!r} cannot address anyone in the social graph")
    return graph


def graph_edges(graph: nx.DiGraph) -> tuple[Edge, ...]:
    """The graph as records, in a stable order."""
    return tuple(
        Edge(source=a, target=b, relationship=str(data.get("relationship", "")))
        for a, b, data in sorted(graph.edges(data=True), key=lambda e: (e[0], e[1]))
    )


def graph_from_edges(roles: Sequence[str], edges: Sequence[Edge]) -> nx.DiGraph:
    """Rebuild a scenario's graph from its stored edges (complete when none are stored)."""
    if not edges:
        return build_graph(GraphSpec(kind="complete"), roles)
    graph = nx.DiGraph()
    graph.add_nodes_from(roles)
    for edge in edges:
        graph.add_edge(edge.source, edge.target, relationship=edge.relationship)
    return graph
