"""The dependency graph: cycles, order, dependants started once when their last dependency completes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halswarm.policy.dependencies import (
    Completion,
    DependantStart,
    DependencyCycleError,
    DependencyGraph,
    DependencyGraphError,
    DependencyState,
    find_cycles,
    format_cycle,
    restore_dependency_state,
    unknown_projects,
)

DIAMOND = {"api": ["schema"], "web": ["api", "design"], "mobile": ["api", "design"], "schema": [], "design": []}


def started(completion: Completion) -> list[str]:
    return [start.project for start in completion.start]


def complete_all(graph: DependencyGraph, *projects: str) -> tuple[DependencyState, list[list[str]]]:
    """Complete *projects* in order at times 1, 2, ...; the dependants started by each."""
    state = DependencyState()
    starts: list[list[str]] = []
    for now, project in enumerate(projects, start=1):
        completion = state.complete(graph, project, float(now))
        state = completion.state
        starts.append(started(completion))
    return state, starts


# ---- cycles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dependencies", "cycles"),
    [
        pytest.param({"api": ["api"]}, [("api", "api")], id="self"),
        pytest.param({"api": ["web"], "web": ["api"]}, [("api", "web", "api")], id="two"),
        pytest.param(
            {"web": ["api"], "api": ["schema"], "schema": ["web"]}, [("api", "schema", "web", "api")], id="three"
        ),
        pytest.param(
            {"a": ["b"], "b": ["a"], "x": ["y"], "y": ["z"], "z": ["x"], "ok": ["a"]},
            [("a", "b", "a"), ("x", "y", "z", "x")],
            id="two-separate",
        ),
        # One tangled group is one cycle: the shortest one through its first project.
        pytest.param({"a": ["b", "c"], "b": ["c"], "c": ["a"]}, [("a", "c", "a")], id="shortest"),
        # A self-dependency inside a bigger group does not hide the group's cycle.
        pytest.param({"a": ["a", "b"], "b": ["a"]}, [("a", "b", "a")], id="self-in-group"),
    ],
)
def test_find_cycles(dependencies: dict[str, list[str]], cycles: list[tuple[str, ...]]) -> None:
    assert find_cycles(dependencies) == cycles
    with pytest.raises(DependencyCycleError) as info:
        DependencyGraph.from_config(dependencies)
    assert info.value.cycles == cycles
    assert info.value.problems == [f"cycle {format_cycle(cycle)}" for cycle in cycles]


def test_cycle_message_names_the_path() -> None:
    with pytest.raises(DependencyCycleError, match=r"^cycle api -> web -> api$"):
        DependencyGraph.from_config({"api": ["web"], "web": ["api"]})


@pytest.mark.parametrize("dependencies", [{}, {"a": []}, DIAMOND, {"c": ["b", "a"], "b": ["a"]}])
def test_no_cycles_in_a_dag(dependencies: dict[str, list[str]]) -> None:
    assert find_cycles(dependencies) == []


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    chain = {f"p{i}": [f"p{i + 1}"] for i in range(5000)}
    assert find_cycles(chain) == []
    chain["p5000"] = ["p0"]
    [cycle] = find_cycles(chain)
    assert len(cycle) == 5002
    assert cycle[0] == cycle[-1] == "p0"


def test_empty_project_names_are_rejected() -> None:
    with pytest.raises(DependencyGraphError, match="must not be empty"):
        DependencyGraph.from_config({"api": [""]})
    with pytest.raises(DependencyGraphError, match="must not be empty"):
        DependencyGraph.from_config({"": ["api"]})


# ---- the graph ---------------------------------------------------------------------------


def test_from_config() -> None:
    graph = DependencyGraph.from_config({"api": ["schema", "schema"], "web": ["api", "design"]})
    assert graph.projects == {"api", "schema", "web", "design"}
    assert graph.dependencies_of("web") == {"api", "design"}
    assert graph.dependencies_of("schema") == frozenset()
    assert graph.dependants_of("api") == {"web"}
    assert graph.dependants_of("web") == frozenset()
    assert graph.dependencies_of("elsewhere") == graph.dependants_of("elsewhere") == frozenset()


def test_topological_order_is_deterministic() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    assert graph.topological_order() == ("design", "schema", "api", "mobile", "web")
    assert DependencyGraph.from_config({}).topological_order() == ()


def test_dependants_ready() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    assert graph.dependants_ready(set(), "schema") == ["api"]
    # web and mobile wait for design as well.
    assert graph.dependants_ready({"schema"}, "api") == []
    assert graph.dependants_ready({"schema", "api"}, "design") == ["mobile", "web"]
    # Already complete, or already started: not ready again.
    assert graph.dependants_ready({"schema", "api", "web"}, "design") == ["mobile"]
    assert graph.dependants_ready({"schema", "api"}, "design", started={"mobile"}) == ["web"]
    # Not a dependency of anything (or not in the graph at all).
    assert graph.dependants_ready({"schema"}, "web") == []
    assert graph.dependants_ready(set(), "elsewhere") == []


def test_unknown_projects() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    assert unknown_projects(graph, ["api", "web", "other"]) == ["design", "mobile", "schema"]
    assert unknown_projects(graph, graph.projects) == []


# ---- completing projects -----------------------------------------------------------------


def test_a_dependant_starts_only_when_its_last_dependency_completes() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    state, starts = complete_all(graph, "schema", "api", "design")
    assert starts == [["api"], [], ["mobile", "web"]]
    assert state.completed == {"schema": 1.0, "api": 2.0, "design": 3.0}
    assert state.started == {"api": 1.0, "mobile": 3.0, "web": 3.0}


def test_the_start_names_its_dependencies() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    state, _ = complete_all(graph, "schema", "api")
    completion = state.complete(graph, "design", 9.0)
    assert completion.start == (
        DependantStart("mobile", ("api", "design")),
        DependantStart("web", ("api", "design")),
    )
    assert not completion.already_complete


def test_completing_a_project_twice_does_nothing_more() -> None:
    graph = DependencyGraph.from_config(DIAMOND)
    state, _ = complete_all(graph, "schema")
    again = state.complete(graph, "schema", 5.0)
    assert again == Completion(state, (), already_complete=True)
    assert again.state.completed["schema"] == 1.0


def test_a_started_dependant_is_not_started_again() -> None:
    # web was started when api completed; a later completion of another of its
    # dependencies (listed after the fact, e.g. the config changed) does not restart it.
    state, _ = complete_all(DependencyGraph.from_config({"web": ["api"]}), "api")
    assert state.started == {"web": 1.0}
    completion = state.complete(DependencyGraph.from_config({"web": ["api", "design"]}), "design", 2.0)
    assert completion.start == ()


def test_a_dependant_completed_by_hand_is_not_started() -> None:
    graph = DependencyGraph.from_config({"web": ["api"]})
    _, starts = complete_all(graph, "web", "api")
    assert starts == [[], []]


def test_chains_start_one_level_at_a_time() -> None:
    graph = DependencyGraph.from_config({"b": ["a"], "c": ["b"]})
    state, starts = complete_all(graph, "a")
    assert starts == [["b"]]
    # c waits until b itself is complete, not merely started.
    assert state.complete(graph, "c", 2.0).start == ()
    assert started(state.complete(graph, "b", 2.0)) == ["c"]


def test_disabled_starts_record_the_completion_only() -> None:
    graph = DependencyGraph.from_config({"web": ["api"]})
    completion = DependencyState().complete(graph, "api", 1.0, start=False)
    assert completion.start == ()
    assert completion.state == DependencyState(completed={"api": 1.0})


def test_projects_outside_the_graph_can_complete() -> None:
    completion = DependencyState().complete(DependencyGraph.from_config({}), "solo", 1.0)
    assert completion.state.is_complete("solo")
    assert completion.start == ()


# ---- persistence -------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    state, _ = complete_all(DependencyGraph.from_config(DIAMOND), "schema", "api", "design")
    text = state.dump()
    assert orjson.loads(text) == {
        "completed": {"schema": 1.0, "api": 2.0, "design": 3.0},
        "started": {"api": 1.0, "mobile": 3.0, "web": 3.0},
    }
    assert restore_dependency_state(text) == (state, [])
    assert restore_dependency_state(text.encode()) == (state, [])


def test_restoring_nothing_gives_the_empty_state() -> None:
    assert restore_dependency_state(None) == (DependencyState(), [])


@pytest.mark.parametrize("text", ["not json", "[]", '{"completed": {"a": "yesterday"}}', '{"started": 5}'])
def test_an_unreadable_state_starts_empty_with_a_problem(text: str) -> None:
    state, problems = restore_dependency_state(text)
    assert state == DependencyState()
    [problem] = problems
    assert problem.startswith("dependencies: unreadable state, starting empty")


timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False)
names = st.text(min_size=1, max_size=8)


@settings(max_examples=200)
@given(st.builds(DependencyState, st.dictionaries(names, timestamps), st.dictionaries(names, timestamps)))
def test_any_state_round_trips(state: DependencyState) -> None:
    assert restore_dependency_state(state.dump()) == (state, [])


# ---- properties over random DAGs ---------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random DAG: project i may depend only on projects with a lower index (names shuffled)."""
    size = draw(st.integers(1, 8))
    projects = draw(st.permutations([f"p{i}" for i in range(size)]))
    return {
        project: draw(st.lists(st.sampled_from(projects[:i]), unique=True)) if i else []
        for i, project in enumerate(projects)
    }


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dependencies=dags(), persist=st.booleans())
def test_every_project_starts_at_most_once_and_only_after_all_its_dependencies(
    data: st.DataObject, dependencies: dict[str, list[str]], persist: bool
) -> None:
    graph = DependencyGraph.from_config(dependencies)
    assert find_cycles(dependencies) == []
    order = graph.topological_order()
    assert sorted(order) == sorted(dependencies)
    assert all(order.index(dep) < order.index(project) for project, deps in dependencies.items() for dep in deps)

    # Any completion sequence: out of order, with repeats, or by hand before the dependencies.
    sequence = data.draw(st.lists(st.sampled_from(sorted(dependencies)), max_size=20))
    state = DependencyState()
    completed: set[str] = set()
    starts: dict[str, int] = {}
    for step, project in enumerate(sequence):
        completion = state.complete(graph, project, float(step))
        assert completion.already_complete == (project in completed)
        for start in completion.start:
            assert start.project not in starts, "started twice"
            assert start.project not in completed, "started although complete"
            assert set(start.dependencies) == set(dependencies[start.project])
            assert set(start.dependencies) <= completed | {project}, "started before its dependencies"
            starts[start.project] = step
        completed.add(project)
        state = restore_dependency_state(completion.state.dump())[0] if persist else completion.state
        assert set(state.completed) == completed
        assert set(state.started) == set(starts)

    # Liveness: a project starts exactly when its last dependency completes, unless it
    # was complete by then.
    first_step = {project: sequence.index(project) for project in set(sequence)}
    for project, deps in dependencies.items():
        if not deps or not set(deps) <= set(first_step):
            assert project not in starts
            continue
        last = max(first_step[dep] for dep in deps)
        if first_step.get(project, last + 1) < last:
            assert project not in starts
        else:
            assert starts.get(project) == last
