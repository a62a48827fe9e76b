"""Which PyTorch module each node of an export came from, for ``--keep-float``: torch.onnx (dynamo) scopes, and
the call stacks that litert-torch and coremltools name ops after.

torch.onnx records on every node it emits ``pkg.torch.onnx.name_scopes``, e.g.
``['', 'stages', 'stages.0', 'stages.0.bn', '_native_batch_norm_legit_no_training']``: the module
paths from the root down, then the traced op. Nodes that the exporter's optimiser fused keep the
scopes of one source only (a Conv with a folded BatchNorm carries the BatchNorm's), so a node also
belongs to the modules owning its parameter inputs (initializers keep the parameter's name,
``stages.0.conv.weight``).
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

import torch

from mobilevision.errors import ExportError

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
NAMESPACE_KEY = "namespace"  # ": pkg.Net/stem: torch...Sequential/stem.0: torch...Conv2d/conv2d: aten.conv2d.default"


ROOT = "."   # --keep-float . : the model's own operations, outside every submodule (e.g. a fused post-processing tail)


def matches(path: str, prefix: str) -> bool:
    """Prefix match on dot-separated components: "head" matches "head" and "head.fc", not "header";
    ``ROOT`` matches only the root module's own operations (path "")."""
    if prefix == ROOT:
        return path == ""
    return path == prefix or path.startswith(prefix + ".")


def _scope_of(props: dict[str, str]) -> str | None:
    """Path of the deepest module a node was traced in ("" is the root), None without scope metadata."""
    if SCOPES_KEY in props:
        try:
            scopes = ast.literal_eval(props[SCOPES_KEY])
        except (ValueError, SyntaxError):
            scopes = None
        if isinstance(scopes, list) and scopes:
            return str(scopes[-2]) if len(scopes) >= 2 else ""  # the last entry is the op, not a module
    if NAMESPACE_KEY in props:
        parts = props[NAMESPACE_KEY].split("/")
        if len(parts) >= 2:
            return parts[-2].split(": ", 1)[0].strip()
    return None


def node_modules(model, module_paths: Iterable[str]) -> dict[str, set[str]]:
    """ONNX node name -> module paths it came from (its traced scope plus the owners of its parameter inputs)."""
    known = set(module_paths)
    initializers = {t.name for t in model.graph.initializer}
    result: dict[str, set[str]] = {}
    for node in model.graph.node:
        paths: set[str] = set()
        scope = _scope_of({p.key: p.value for p in node.metadata_props})
        if scope is not None:
            paths.add(scope)   # "" for the root module's own operations
        for name in node.input:
            owner = name.rpartition(".")[0]
            if name in initializers and owner in known:
                paths.add(owner)
        if node.name and paths:
            result[node.name] = paths
    return result


def _examples(paths: Iterable[str], limit: int = 8) -> str:
    """A few module paths, shallowest first, for error messages."""
    ordered = sorted({p for p in paths if p}, key=lambda p: (p.count("."), p))
    shown = ", ".join(ordered[:limit])
    return shown + (f" ... ({len(ordered)} in all)" if len(ordered) > limit else "") if shown else "(none)"


def check_keep_float(keep_float: Iterable[str], module: torch.nn.Module) -> None:
    """Raise ExportError for a keep-float prefix that names no submodule of ``module`` (before exporting)."""
    paths = [name for name, _ in module.named_modules() if name]
    for prefix in keep_float:
        if prefix == ROOT:
            continue
        if not prefix or not any(matches(p, prefix) for p in paths):
            raise ExportError(f"--keep-float {prefix!r} matches no module of {type(module).__name__}: "
                              f"use module paths such as {_examples(paths)} (or '.' for the model's own top-level operations)")


def keep_float_nodes(model, keep_float: Iterable[str], module: torch.nn.Module) -> list[str]:
    """Names of the ONNX nodes that came from the modules under the ``keep_float`` prefixes, in graph order.

    Raises ExportError for a prefix that matches no module, or only modules that left no node in the graph.
    """
    prefixes = list(keep_float)
    check_keep_float(prefixes, module)
    owners = node_modules(model, (name for name, _ in module.named_modules()))
    kept: set[str] = set()
    for prefix in prefixes:
        hit = {node for node, paths in owners.items() if any(matches(p, prefix) for p in paths)}
        if not hit:
            with_layers = {p.rsplit(".", k)[0] for paths in owners.values() for p in paths
                           for k in range(p.count(".") + 1)}  # each path and its ancestors
            raise ExportError(f"--keep-float {prefix!r} names modules that left no layer in the ONNX graph "
                              f"(folded away or never called): use module paths such as {_examples(with_layers)}")
        kept |= hit
    return [n.name for n in model.graph.node if n.name in kept]


def module_call_stacks(module: torch.nn.Module, example: torch.Tensor) -> dict[str, set[tuple[str, ...]]]:
    """``{module path: call stacks}`` from one forward pass: each stack is the paths of the modules
    being called, root ("") first, ending with the module's own.

    Converters name ops after this stack, not after the attribute path: a container that is never
    called itself (ModuleList, ModuleDict) is not on it, so ``stages.1`` of a ModuleList is called
    straight from the root.
    """
    paths = {m: name for name, m in module.named_modules()}
    stack: list[str] = []
    found: dict[str, set[tuple[str, ...]]] = {}

    def enter(m: torch.nn.Module, args: Any) -> None:
        stack.append(paths.get(m, ""))
        found.setdefault(stack[-1], set()).add(tuple(stack))

    def leave(m: torch.nn.Module, args: Any, out: Any) -> None:
        stack.pop()

    handles = [h for m in paths for h in (m.register_forward_pre_hook(enter),
                                          m.register_forward_hook(leave, always_call=True))]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
    return found
