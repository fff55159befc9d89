"""Dependency graphs, pure: ``graph[t]`` are the tasks ``t`` depends on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycle(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A dependency path from ``start`` back to ``start`` (``[start, ..., start]``), or None.
    Names missing from the graph have no edges."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in graph.get(node, ()):
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def on_cycles(graph: Mapping[str, Iterable[str]], nodes: Iterable[str]) -> dict[str, list[str]]:
    """Each of ``nodes`` that lies on a cycle of the graph restricted to ``nodes``, with one
    such cycle through it. Tarjan's strongly connected components, iteratively: O(V + E)."""
    members = set(nodes)
    edges = {n: [d for d in graph.get(n, ()) if d in members] for n in members}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: dict[str, list[str]] = {}
    counter = 0
    for root in sorted(members):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for i in range(child, len(edges[node])):
                dep = edges[node][i]
                if dep not in index:
                    work.append((node, i + 1))
                    work.append((dep, 0))
                    recurse = True
                    break
                if dep in on_stack:
                    low[node] = min(low[node], index[dep])
            if recurse:
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    inside = set(component)
                    sub = {m: [d for d in edges[m] if d in inside] for m in component}
                    for member in component:
                        found[member] = find_cycle(sub, member) or [member, member]
    return found
