"""The UV charts of one instance and the map of each onto the surface, in metres.

A chart is a set of faces connected through shared vertices: the `Scene` splits
vertices at UV seams, so two faces that share a vertex share its UV. Per face,
the Jacobian `J = dP/duv` (3x2) says how UV space lands on the surface; its
first fundamental form `G = JᵀJ` gives lengths. Per chart we pick the one
linear map `s = L uv + b` (s in metres on the surface, x right, y down as in an
image) whose metric is the chart's area-weighted mean `G` (so a unit of s is
a metre along the surface), oriented so that the swatch's *down* follows the
world's down on walls and sides (its *right* follows world +X on floors and
tops), and not mirrored when seen from outside. Offsets `b` are propagated
from chart to chart across seam edges (breadth first from the largest chart),
so a pattern runs on across a box's edges where the geometry allows it.

`distortion` measures how far each face's metric is from its chart's map (the
mean |log stretch|): a UV sphere's polar charts are far from any one linear
map; those charts, and charts too small to carry a few texels, are textured by
a triplanar projection instead (see `nodes.texture.project`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

WORLD_DOWN = np.array([0.0, -1.0, 0.0])
WORLD_RIGHT = np.array([1.0, 0.0, 0.0])
# Below this share of world-down in the tangent plane a chart counts as horizontal (floor, top).
VERTICAL_SHARE = 0.3


@dataclass(frozen=True)
class SeamEdges:
    """Edges where two faces meet on the surface but not in UV space (one row per half-edge)."""

    face: np.ndarray  # [E] local face index the half-edge belongs to
    other: np.ndarray  # [E] local face index on the other side
    start: np.ndarray  # [E, 3] world position of the edge's first end
    end: np.ndarray  # [E, 3]
    other_uv: np.ndarray  # [E, 2, 2] the other face's UVs at (start, end)
    own_uv: np.ndarray  # [E, 2, 2] this face's UVs at (start, end)


@dataclass(frozen=True)
class Charts:
    """UV charts of one instance's faces and their maps to surface metres."""

    positions: np.ndarray  # [V, 3] float64, the scene's vertices
    uvs: np.ndarray  # [V, 2] float64
    faces: np.ndarray  # [F, 3] vertex indices into the scene's arrays
    chart: np.ndarray  # [F] chart index per face
    linear: np.ndarray  # [C, 2, 2]: s = linear @ uv + offset (metres, x right, y down)
    offset: np.ndarray  # [C, 2]
    area: np.ndarray  # [C] surface area, m²
    uv_area: np.ndarray  # [C] area in UV units
    distortion: np.ndarray  # [C] area-weighted mean |log stretch| of its faces against `linear`
    uv_to_surface: np.ndarray  # [F, 2, 3]: uv offset = M @ (P - p0) for a point P in the face's plane
    jacobian: np.ndarray  # [F, 3, 2]: dP/duv of each face (zero where its UVs are degenerate)
    seams: SeamEdges

    @property
    def count(self) -> int:
        return int(self.linear.shape[0])

    def face_points(self, faces: np.ndarray) -> np.ndarray:
        """World positions `[N, 3, 3]` of the corners of local faces `[N]`."""
        return self.positions[self.faces[faces]]

    def point_at_uv(self, faces: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """World points `[N, 3]` at UVs `[N, 2]` in the planes of local faces `[N]` (extrapolated past their edges)."""
        corner = self.faces[faces, 0]
        return self.positions[corner] + np.einsum("nij,nj->ni", self.jacobian[faces], uv - self.uvs[corner])

    def uv_in_plane(self, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
        """UVs `[N, 2]` of points `[N, 3]` in the planes of local faces `[N]` (extrapolated past their edges)."""
        corner = self.faces[faces, 0]
        return self.uvs[corner] + np.einsum("nij,nj->ni", self.uv_to_surface[faces], points - self.positions[corner])


def _face_jacobians(positions: np.ndarray, uvs: np.ndarray, faces: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(J [F,3,2], face area [F], uv det [F], uv_to_surface [F,2,3]); degenerate UV faces get J = 0."""
    p, t = positions[faces], uvs[faces]
    edges = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], axis=2)  # [F, 3, 2]
    duv = np.stack([t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], axis=2)  # [F, 2, 2]
    det = duv[:, 0, 0] * duv[:, 1, 1] - duv[:, 0, 1] * duv[:, 1, 0]
    area = 0.5 * np.linalg.norm(np.cross(edges[:, :, 0], edges[:, :, 1]), axis=1)
    ok = np.abs(det) > 1e-14
    inverse = np.zeros_like(duv)
    inverse[ok] = np.linalg.inv(duv[ok])
    jac = edges @ inverse  # [F, 3, 2]
    gram = np.transpose(edges, (0, 2, 1)) @ edges  # [F, 2, 2]
    gram_ok = np.abs(np.linalg.det(gram)) > 1e-20
    to_surface = np.zeros((len(faces), 2, 3))
    pinv = np.linalg.inv(gram[gram_ok]) @ np.transpose(edges[gram_ok], (0, 2, 1))  # [F, 2, 3] barycentric coords
    to_surface[gram_ok] = duv[gram_ok] @ pinv
    return jac, area, det, to_surface


def _chart_labels(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Connected components of faces through shared vertex indices."""
    count = len(faces)
    rows = np.repeat(np.arange(count), 3)
    graph = coo_matrix((np.ones(rows.size), (rows, faces.reshape(-1))), shape=(count, vertex_count)).tocsr()
    adjacency = graph @ graph.T
    _, labels = connected_components(adjacency, directed=False)
    return labels.astype(np.int64)


def _seam_edges(positions: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> SeamEdges:
    """Half-edges whose two faces share the edge's positions but not its vertex indices (a UV seam).

    `positions` are the faces' own vertices (`build_charts` keeps only those), welded at 1e-6 of their extent."""
    span = float(np.ptp(positions, axis=0).max()) if len(positions) else 1.0
    quantum = max(span, 1e-6) * 1e-6
    _, welded = np.unique(np.round(positions / quantum).astype(np.int64), axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    corners = [(0, 1), (1, 2), (2, 0)]
    a = np.concatenate([faces[:, i] for i, _ in corners])
    b = np.concatenate([faces[:, j] for _, j in corners])
    face = np.tile(np.arange(len(faces)), 3)
    wa, wb = welded[a], welded[b]
    key = np.stack([np.minimum(wa, wb), np.maximum(wa, wb)], axis=1)
    order = np.lexsort((face, key[:, 1], key[:, 0]))
    key, a, b, face = key[order], a[order], b[order], face[order]
    _, start, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    first = start[counts == 2]  # manifold edges: exactly two faces share them
    second = first + 1
    # The two faces' copies of the edge: a seam when their vertex indices differ (split UVs).
    own = np.stack([a[first], b[first]], axis=1)
    oth = np.stack([a[second], b[second]], axis=1)
    flipped = welded[own[:, 0]] != welded[oth[:, 0]]
    oth[flipped] = oth[flipped][:, ::-1]
    seam = np.any(own != oth, axis=1)
    own, oth = own[seam], oth[seam]
    fa, fb = face[first][seam], face[second][seam]
    # Each seam as two half-edges, one per side.
    return SeamEdges(
        face=np.concatenate([fa, fb]), other=np.concatenate([fb, fa]),
        start=np.concatenate([positions[own[:, 0]], positions[oth[:, 0]]]),
        end=np.concatenate([positions[own[:, 1]], positions[oth[:, 1]]]),
        other_uv=np.concatenate([uvs[oth], uvs[own]]), own_uv=np.concatenate([uvs[own], uvs[oth]]),
    )


def _sqrt_sym(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return vectors @ np.diag(np.sqrt(np.clip(values, 1e-20, None))) @ vectors.T


def _rotation_to(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    angle = np.arctan2(target[1], target[0]) - np.arctan2(current[1], current[0])
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _chart_linear(jac: np.ndarray, area: np.ndarray, det: np.ndarray, normals: np.ndarray
                  ) -> tuple[np.ndarray, float]:
    """The chart's map `L` (2x2) and its distortion, from its faces' Jacobians `[F, 3, 2]` and areas."""
    weights = area / max(area.sum(), 1e-20)
    gram = np.einsum("fij,fik->fjk", jac, jac)
    mean_gram = (weights[:, None, None] * gram).sum(0)
    root = _sqrt_sym(mean_gram)
    # glTF's v runs down the image, so an unmirrored chart has det(duv) < 0 (J_u x J_v = -n).
    mirror = np.diag([1.0, -1.0]) if float((weights * np.sign(det)).sum()) > 0 else np.eye(2)
    base = root @ mirror
    pinv = np.linalg.pinv(jac)  # [F, 2, 3]
    down = WORLD_DOWN[None] - (normals @ WORLD_DOWN)[:, None] * normals
    along = (weights[:, None] * np.einsum("ij,fjk,fk->fi", base, pinv, down)).sum(0)
    share = float((weights * np.linalg.norm(down, axis=1)).sum())
    if share > VERTICAL_SHARE and np.linalg.norm(along) > 1e-12:
        linear = _rotation_to(along, np.array([0.0, 1.0])) @ base
    else:
        right = WORLD_RIGHT[None] - (normals @ WORLD_RIGHT)[:, None] * normals
        across = (weights[:, None] * np.einsum("ij,fjk,fk->fi", base, pinv, right)).sum(0)
        linear = _rotation_to(across, np.array([1.0, 0.0])) @ base if np.linalg.norm(across) > 1e-12 else base
    inv_root = np.linalg.inv(root)
    stretch = np.linalg.eigvalsh(inv_root @ gram @ inv_root)  # [F, 2]
    distortion = float((weights * np.abs(0.5 * np.log(np.clip(stretch, 1e-12, None))).max(1)).sum())
    return linear, distortion


def _propagate_offsets(charts: np.ndarray, linear: np.ndarray, area: np.ndarray, seams: SeamEdges,
                       anchor: list[np.ndarray]) -> np.ndarray:
    """Offsets `[C, 2]` making `s` agree across seams, breadth first from the largest chart of each piece.

    `anchor[c]` is the offset a chart gets when it starts a piece (world-anchored, so separate
    coplanar pieces share a phase).
    """
    count = len(linear)
    offset = np.zeros((count, 2))
    placed = np.zeros(count, dtype=bool)
    chart_a, chart_b = charts[seams.face], charts[seams.other]
    across = chart_a != chart_b
    # Largest first; areas equal to 6 digits count as equal (the first chart wins), so that float rounding
    # (a scene read in mm instead of m, issue 23) cannot reorder equal charts such as a table's legs.
    rounded = np.round(area / max(float(area.max(initial=0.0)), 1e-300), 6)
    for root in np.argsort(-rounded, kind="stable"):
        if placed[root]:
            continue
        offset[root], placed[root] = anchor[root], True
        queue = deque([int(root)])
        while queue:
            current = queue.popleft()
            rows = np.nonzero(across & (chart_a == current))[0]
            for neighbour in np.unique(chart_b[rows]):
                if placed[neighbour]:
                    continue
                shared = rows[chart_b[rows] == neighbour]
                s_here = np.einsum("ij,ekj->eki", linear[current], seams.own_uv[shared]) + offset[current]
                s_there = np.einsum("ij,ekj->eki", linear[neighbour], seams.other_uv[shared])
                offset[neighbour] = (s_here - s_there).reshape(-1, 2).mean(0)
                placed[neighbour] = True
                queue.append(int(neighbour))
    return offset


def build_charts(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> Charts:
    """Charts of the faces `[F, 3]` (scene vertex indices) and their maps to surface metres.

    The returned `Charts` holds only the vertices the faces use (`faces` renumbered into them): the cost of
    one instance's charts follows its own size, not the scene's (issue 14)."""
    used, local = np.unique(faces, return_inverse=True)
    faces = local.reshape(-1, 3) if len(faces) else faces
    positions, uvs, normals = positions[used].astype(np.float64), uvs[used].astype(np.float64), normals[used]
    jac, area, det, to_surface = _face_jacobians(positions, uvs, faces)
    face_normal = normals.astype(np.float64)[faces].mean(1)
    face_normal /= np.clip(np.linalg.norm(face_normal, axis=1, keepdims=True), 1e-12, None)
    chart = _chart_labels(faces, len(positions))
    count = int(chart.max()) + 1 if len(chart) else 0
    linear = np.tile(np.eye(2), (count, 1, 1))
    distortion = np.zeros(count)
    uv_area = np.abs(det) * 0.5
    anchor: list[np.ndarray] = []
    for c in range(count):
        members = np.nonzero((chart == c) & (np.abs(det) > 1e-14))[0]
        if members.size:
            linear[c], distortion[c] = _chart_linear(jac[members], area[members], det[members],
                                                     face_normal[members])
        # World anchor: s at the chart's first vertex equals its coordinates along the chart's axes.
        first = faces[np.nonzero(chart == c)[0][0], 0]
        axes = linear[c] @ np.linalg.pinv(jac[members[0]]) if members.size else np.zeros((2, 3))
        anchor.append(axes @ positions[first] - linear[c] @ uvs[first])
    seams = _seam_edges(positions, uvs, faces)
    offset = _propagate_offsets(chart, linear, np.bincount(chart, area, count), seams, anchor)
    return Charts(positions=positions, uvs=uvs, faces=faces, chart=chart, linear=linear, offset=offset, area=np.bincount(chart, area, count),
                  uv_area=np.bincount(chart, uv_area, count), distortion=distortion, uv_to_surface=to_surface, jacobian=jac,
                  seams=seams)
