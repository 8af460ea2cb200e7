"""The project dependency graph (issue #6, point 3): pure decisions, no trio, no store.

Config ``dependencies`` maps a project to the projects it depends on (a DAG). When a
project is marked complete (``halctl projects complete <name>`` or a milestone its agent
reports), the dependants whose dependencies are now *all* complete are started, each at
most once, ever.

- :class:`DependencyGraph` - the validated graph: topological order and the dependants
  ready to start after a completion.
- :func:`find_cycles` - every cycle, as a path; the config check reports them at load.
- :class:`DependencyState` - completed projects and auto-started dependants with their
  times: plain attrs data the engine persists as JSON (:meth:`DependencyState.dump`,
  :func:`restore_dependency_state`) and threads through :meth:`DependencyState.complete`.
- :func:`unknown_projects` - graph projects no node hosts (a warning, not an error: the
  node may join later).

Paths read "depends on": ``api -> web -> api`` means api depends on web, which depends on
api. Times (``now``) are floats on the caller's timeline, as in :mod:`halswarm.policy.model`.

Invariants (of :meth:`DependencyState.complete`; the property tests check them):

- A project enters ``started`` at most once, and only when every one of its dependencies
  is in ``completed`` and it was itself neither complete nor started.
- Completing a project that is already complete changes nothing and starts nothing.
- ``completed`` and ``started`` only grow.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from halswarm.convert import dumps, load_json_row

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from collections.abc import Set as AbstractSet

__all__ = [
    "Completion",
    "DependantStart",
    "DependencyCycleError",
    "DependencyGraph",
    "DependencyGraphError",
    "DependencyState",
    "find_cycles",
    "format_cycle",
    "restore_dependency_state",
    "unknown_projects",
]


class DependencyGraphError(ValueError):
    """The configured dependencies are not a usable graph; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DependencyCycleError(DependencyGraphError):
    """The dependencies contain cycles; ``cycles`` holds each as a path (see :func:`find_cycles`)."""

    def __init__(self, cycles: list[tuple[str, ...]]) -> None:
        super().__init__([f"cycle {format_cycle(cycle)}" for cycle in cycles])
        self.cycles = cycles


def format_cycle(cycle: Sequence[str]) -> str:
    """A cycle path as people read it: ``api -> web -> api``."""
    return " -> ".join(cycle)


def _normalise(dependencies: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Every project (keys and dependencies) -> its sorted, distinct dependencies."""
    edges = {project: tuple(sorted(set(deps))) for project, deps in dependencies.items()}
    for deps in list(edges.values()):
        for dep in deps:
            edges.setdefault(dep, ())
    return edges


def _strongly_connected(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit on big graphs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(edges):
        if root in index:
            continue
        visit(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    visit(successor)
                    work.append((successor, iter(edges[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _cycle_through(start: str, members: frozenset[str], edges: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The shortest cycle from *start* back to itself inside one strongly connected component."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in edges[node]:
            if successor not in members or successor == node:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return (*reversed(path), start)
            if successor not in parents:
                parents[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")  # pragma: no cover


def find_cycles(dependencies: Mapping[str, Iterable[str]]) -> list[tuple[str, ...]]:
    """Every cycle of the dependency graph, one per group of mutually dependent projects.

    Each cycle is a path that starts at its group's alphabetically first project and
    repeats it at the end: ``("api", "web", "api")``; a self-dependency is
    ``("api", "api")``. The path is the shortest cycle through that project, so the
    message stays short in a tangled group. Sorted by first project; deterministic.

    Args:
        dependencies: project -> the projects it depends on.

    Returns:
        The cycles; empty for a DAG.
    """
    edges = _normalise(dependencies)
    cycles: list[tuple[str, ...]] = []
    for component in _strongly_connected(edges):
        start = min(component)
        if len(component) > 1:
            cycles.append(_cycle_through(start, frozenset(component), edges))
        elif start in edges[start]:
            cycles.append((start, start))
    return sorted(cycles)


@attrs.frozen
class DependencyGraph:
    """A validated dependency DAG. Build it with :meth:`from_config`, which checks it.

    ``depends_on`` has an entry for every project in the graph, including projects that
    are only named as a dependency (with no dependencies of their own).
    """

    depends_on: Mapping[str, frozenset[str]]
    dependants: Mapping[str, frozenset[str]]

    @classmethod
    def from_config(cls, dependencies: Mapping[str, Iterable[str]]) -> DependencyGraph:
        """Build the graph from config ``dependencies`` (project -> its dependencies).

        Raises:
            DependencyGraphError: a project name is empty.
            DependencyCycleError: the graph has a cycle (a self-dependency included).
        """
        edges = _normalise(dependencies)
        if "" in edges:
            raise DependencyGraphError(["a project name must not be empty"])
        cycles = find_cycles(edges)
        if cycles:
            raise DependencyCycleError(cycles)
        dependants: dict[str, set[str]] = {project: set() for project in edges}
        for project, deps in edges.items():
            for dep in deps:
                dependants[dep].add(project)
        return cls(
            depends_on={project: frozenset(deps) for project, deps in edges.items()},
            dependants={project: frozenset(names) for project, names in dependants.items()},
        )

    @property
    def projects(self) -> frozenset[str]:
        """Every project the graph names."""
        return frozenset(self.depends_on)

    def dependencies_of(self, project: str) -> frozenset[str]:
        """What *project* depends on directly (empty for a project not in the graph)."""
        return self.depends_on.get(project, frozenset())

    def dependants_of(self, project: str) -> frozenset[str]:
        """The projects that depend on *project* directly (empty for one not in the graph)."""
        return self.dependants.get(project, frozenset())

    def topological_order(self) -> tuple[str, ...]:
        """Every project, each after all its dependencies; ties in alphabetical order."""
        waiting = {project: len(deps) for project, deps in self.depends_on.items()}
        ready = [project for project, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            project = heapq.heappop(ready)
            order.append(project)
            for dependant in self.dependants[project]:
                waiting[dependant] -= 1
                if waiting[dependant] == 0:
                    heapq.heappush(ready, dependant)
        # from_config rejects cycles, so every project was reached.
        return tuple(order)

    def dependants_ready(
        self, completed: AbstractSet[str], just_completed: str, *, started: AbstractSet[str] = frozenset()
    ) -> list[str]:
        """The dependants of *just_completed* to start now, sorted.

        A dependant is ready when every one of its dependencies is complete (counting
        *just_completed* as complete even if *completed* lacks it) and it is itself
        neither complete nor in *started*. Only dependants of *just_completed* are
        considered: the others were ready, or not, before this completion.

        Args:
            completed: the projects complete so far.
            just_completed: the project whose completion triggers this check.
            started: dependants already started automatically (never started twice).

        Returns:
            Project names, sorted.
        """
        done = completed | {just_completed}
        return sorted(
            dependant
            for dependant in self.dependants_of(just_completed)
            if dependant not in done and dependant not in started and self.depends_on[dependant] <= done
        )


def unknown_projects(graph: DependencyGraph, known: Iterable[str]) -> list[str]:
    """Projects the graph names that no node hosts (sorted), for a startup warning.

    Allowed at config time: a node hosting them may join later; until then a start of
    such a project cannot be delivered.
    """
    return sorted(graph.projects - set(known))


@attrs.frozen
class DependantStart:
    """A dependant to start, with its (all complete) dependencies for the start prompt."""

    project: str
    dependencies: tuple[str, ...]


@attrs.frozen
class Completion:
    """What marking a project complete did: the new state and the dependants to start."""

    state: DependencyState
    start: tuple[DependantStart, ...] = ()
    #: The project was complete already: nothing changed.
    already_complete: bool = False


@attrs.frozen
class DependencyState:
    """Completed projects and auto-started dependants, each with its time (``now``).

    Plain data: the engine persists it as JSON after every change, before sending any
    start, so a supervisor restart never starts a dependant a second time.
    """

    completed: dict[str, float] = attrs.Factory(dict)
    started: dict[str, float] = attrs.Factory(dict)

    def complete(self, graph: DependencyGraph, project: str, now: float, *, start: bool = True) -> Completion:
        """Mark *project* complete at *now*; return the dependants to start.

        Args:
            graph: the dependency graph.
            project: the completed project (it need not be in the graph).
            now: the time of the completion, recorded in the state.
            start: False (``dependency_start.enabled`` off) records the completion but
                starts nothing; those dependants are not started later either, unless
                another of their dependencies completes afterwards.

        Returns:
            The new state and the dependants to start, each recorded as started at
            *now*. A project already complete gives this state unchanged and no starts.
        """
        if project in self.completed:
            return Completion(self, already_complete=True)
        completed = {**self.completed, project: now}
        ready = graph.dependants_ready(completed.keys(), project, started=self.started.keys()) if start else []
        started = {**self.started, **dict.fromkeys(ready, now)}
        starts = tuple(DependantStart(name, tuple(sorted(graph.dependencies_of(name)))) for name in ready)
        return Completion(DependencyState(completed, started), starts)

    def is_complete(self, project: str) -> bool:
        """*project* was marked complete."""
        return project in self.completed

    def dump(self) -> str:
        """This state as JSON text, for persisting."""
        return dumps(self).decode()


def restore_dependency_state(text: str | bytes | None) -> tuple[DependencyState, list[str]]:
    """Rebuild the state from the JSON text :meth:`DependencyState.dump` wrote.

    None (nothing persisted yet) gives the empty state. An unreadable text also does,
    with a problem line for the log: refusing to start over a corrupt row would stop the
    supervisor, and the worst outcome of an empty state is a dependant started again.

    Returns:
        The state and the problems found (empty when the text was readable).
    """
    return load_json_row(text, DependencyState, "dependencies")
