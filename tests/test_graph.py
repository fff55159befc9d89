"""Dependency graphs, pure: a cycle through a task, and every task on some cycle."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.graph import find_cycle, on_cycles


def test_find_cycle_returns_the_path_back_to_the_start() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"]}
    assert find_cycle(graph, "a") == ["a", "b", "c", "a"]


def test_find_cycle_is_none_for_a_dag_with_shared_dependencies() -> None:
    graph = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}
    assert find_cycle(graph, "a") is None


def test_find_cycle_ignores_cycles_that_do_not_pass_through_the_start() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["b"]}
    assert find_cycle(graph, "a") is None


def test_on_cycles_names_every_member_of_every_cycle_and_nothing_else() -> None:
    graph = {"a": ["b"], "b": ["c", "x"], "c": ["a"], "x": [], "d": ["d"], "e": ["a"]}
    found = on_cycles(graph, graph)
    assert set(found) == {"a", "b", "c", "d"}
    assert found["a"] == ["a", "b", "c", "a"]
    assert found["d"] == ["d", "d"]


def test_on_cycles_sees_only_the_nodes_it_is_given() -> None:
    graph = {"a": ["b"], "b": ["a"]}
    assert on_cycles(graph, ["a"]) == {}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcdefg"), st.lists(st.sampled_from("abcdefg"), max_size=3))
)
def test_on_cycles_agrees_with_a_search_from_every_node(graph: dict[str, list[str]]) -> None:
    found = on_cycles(graph, graph)
    for node in graph:
        cycle = find_cycle(graph, node)
        assert (node in found) == (cycle is not None), (node, graph)
        if node in found:
            path = found[node]
            assert path[0] == path[-1] == node
            assert all(b in graph[a] for a, b in pairwise(path))
