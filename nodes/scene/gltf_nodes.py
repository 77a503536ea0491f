"""The glTF scene graph: the default scene's node hierarchy walked to world matrices, node transforms
(matrix or TRS) and EXT_mesh_gpu_instancing copies."""
from __future__ import annotations

from typing import Any

import numpy as np

from .gltf_ext import GPU_INSTANCING
from .gltf_reader import GltfReader
from .gltf_schema import is_int, is_number


class SceneGraphReader(GltfReader):
    """The node hierarchy of one load (see `GltfReader`)."""


    # ---- scene graph ----
    def node_matrix(self, index: int, node: Any) -> np.ndarray:
        label = f"nodes[{index}]"
        if node.matrix is not None:
            m = node.matrix
            if not isinstance(m, list) or len(m) != 16 or not all(is_number(x) for x in m):
                raise self.fail(f"{label}.matrix must be 16 finite numbers")
            return np.array(m, dtype=np.float64).reshape(4, 4).T  # column-major in glTF
        t = self.vector(node.translation, 3, f"{label}.translation", [0.0, 0.0, 0.0])
        r = self.vector(node.rotation, 4, f"{label}.rotation", [0.0, 0.0, 0.0, 1.0])
        s = self.vector(node.scale, 3, f"{label}.scale", [1.0, 1.0, 1.0])
        return self.trs_matrix(t, r, s, label)

    def trs_matrix(self, t: np.ndarray, r: np.ndarray, s: np.ndarray, label: str) -> np.ndarray:
        """4x4 matrix of a translation, a (normalized here) rotation quaternion xyzw and a scale."""
        norm = float(np.linalg.norm(r))
        if norm < 1e-8:
            raise self.fail(f"{label}.rotation is a zero quaternion")
        x, y, z, w = r / norm
        rot = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        m = np.eye(4)
        m[:3, :3] = rot * s[None, :]
        m[:3, 3] = t
        return m

    def gpu_instances(self, index: int, node: Any, world: np.ndarray) -> list[tuple[int | None, np.ndarray]]:
        """(instance number or None, world matrix) per copy of a node's mesh: one copy, or one per
        EXT_mesh_gpu_instancing instance (its TRS applied in the node's space)."""
        extensions = node.extensions if isinstance(node.extensions, dict) else {}
        ext = extensions.get(GPU_INSTANCING)
        if ext is None or GPU_INSTANCING not in self.extensions:
            return [(None, world)]
        label = f"nodes[{index}].extensions.{GPU_INSTANCING}"
        attributes = ext.get("attributes") if isinstance(ext, dict) else None
        if not isinstance(attributes, dict) or not attributes:
            raise self.fail(f"{label}.attributes must name TRANSLATION, ROTATION and/or SCALE accessors")
        arrays = {}
        for name, atype, components in (("TRANSLATION", "VEC3", (5126,)), ("ROTATION", "VEC4", (5126, 5120, 5122)),
                                        ("SCALE", "VEC3", (5126,))):
            if name in attributes:
                arrays[name] = self.accessor(attributes[name], f"{label} {name}", types=(atype,),
                                             components=components, max_count=self.max_faces)
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise self.fail(f"{label}: its accessors have different counts ({sorted(counts)})")
        count = counts.pop()
        t = arrays.get("TRANSLATION", np.zeros((count, 3)))
        r = arrays.get("ROTATION", np.tile([0.0, 0.0, 0.0, 1.0], (count, 1)))
        s = arrays.get("SCALE", np.ones((count, 3)))
        if not all(np.isfinite(a).all() for a in (t, r, s)):
            raise self.fail(f"{label}: an instance transform is NaN or infinite")
        return [(k, world @ self.trs_matrix(t[k], r[k], s[k], f"{label} instance {k}")) for k in range(count)]

    def walk(self) -> list[tuple[int, np.ndarray]]:
        """(node index, world matrix) of every node reachable from the default scene, depth first."""
        nodes = self.doc.nodes or []
        scenes = self.doc.scenes or []
        if scenes:
            scene_index = self.doc.scene if self.doc.scene is not None else 0
            scene = self.item("scenes", scene_index, "the default scene")
            roots = scene.nodes or []
            if not isinstance(roots, list):
                raise self.fail(f"scenes[{scene_index}].nodes must be a list")
        else:
            children: set[int] = set()
            for node in nodes:
                kids = getattr(node, "children", None)
                if isinstance(kids, list):
                    children.update(k for k in kids if is_int(k))
            roots = [i for i in range(len(nodes)) if i not in children]
        out: list[tuple[int, np.ndarray]] = []
        seen: set[int] = set()
        stack = [(root, np.eye(4), "scene") for root in reversed(roots)]
        while stack:
            index, parent, via = stack.pop()
            node = self.item("nodes", index, via)
            if index in seen:
                raise self.fail(f"nodes[{index}] appears twice in the node hierarchy (a cycle or a shared child)")
            seen.add(index)
            world = parent @ self.node_matrix(index, node)
            out.append((index, world))
            kids = node.children or []
            if not isinstance(kids, list):
                raise self.fail(f"nodes[{index}].children must be a list")
            for child in reversed(kids):
                stack.append((child, world, f"nodes[{index}].children"))
        return out
