#!/usr/bin/env python3
"""Renders a kustomization (k8s/overlays/<name> or k8s/base) to multi-document YAML on
standard output, without network or kustomize: the subset this repository uses —
`resources` (files, or folders with a kustomization.yaml), `configMapGenerator` with
`files` (`key=path` or `path`), `generatorOptions.disableNameSuffixHash`, `namespace`,
`images` (`newName`, `newTag`) and `patches` with `path` (strategic merge: maps merged,
lists of named items merged by `name`, other lists replaced).

Usage: scripts/render-k8s.py k8s/overlays/prod > prod.yaml
"""
import copy
import os
import sys

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition"}


def merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            for n, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[n] = merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render(folder):
    kustomization = load(os.path.join(folder, "kustomization.yaml"))[0]
    docs = []
    for resource in kustomization.get("resources", []):
        path = os.path.normpath(os.path.join(folder, resource))
        if os.path.isdir(path):
            docs += render(path)
        else:
            docs += load(path)
    hashless = kustomization.get("generatorOptions", {}).get("disableNameSuffixHash", False)
    for generator in kustomization.get("configMapGenerator", []):
        if not hashless:
            sys.exit("render-k8s: only generatorOptions.disableNameSuffixHash: true is supported")
        data = {}
        for entry in generator.get("files", []):
            key, _, rel = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
            with open(os.path.normpath(os.path.join(folder, rel)), encoding="utf-8") as f:
                data[key] = f.read()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"],
                                  "labels": {"app.kubernetes.io/part-of": "saas-platform"}},
                     "data": data})
    for patch in kustomization.get("patches", []):
        for p in load(os.path.join(folder, patch["path"])):
            targets = [d for d in docs if d["kind"] == p["kind"]
                       and d["metadata"]["name"] == p["metadata"]["name"]]
            if not targets:
                sys.exit(f"render-k8s: patch {patch['path']} matches no {p['kind']} {p['metadata']['name']}")
            for t in targets:
                docs[docs.index(t)] = merge(t, p)
    images = {i["name"]: i for i in kustomization.get("images", [])}

    def retag(spec):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = c["image"].partition(":")
            if name in images:
                rule = images[name]
                c["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"

    for d in docs:
        template = d.get("spec", {}).get("template", {}).get("spec")
        if template:
            retag(template)
        if "namespace" in kustomization and d["kind"] not in CLUSTER_SCOPED:
            d["metadata"]["namespace"] = kustomization["namespace"]
    return docs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    yaml.safe_dump_all(render(sys.argv[1]), sys.stdout, sort_keys=False)
