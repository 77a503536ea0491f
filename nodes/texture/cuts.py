"""Where two patterns meet on an atlas: a min-error cut instead of a cross-fade (issue 25).

A cross-fade of two unrelated patterns shows both at half strength over the whole band: every dot of
a dotted swatch appears twice (ghosted doubles), stripes fan into wedges. Texture quilting (Efros and
Freeman 2001) and graph-cut textures (Kwatra et al. 2003) instead give every texel one of the two
patterns and put the boundary where the two agree most. Here each candidate texel holds two colours
(`first`, `second`); some are forced to one of them (the band's edges); a 4-connected graph over the
atlas links neighbouring candidates of the same group with the cost of cutting between them,
`|first_i - second_i| + |first_j - second_j|` (Kwatra's matching cost), and the minimum cut decides
the rest. The cut is exact (Boykov-Kolmogorov max-flow, pymaxflow) and deterministic.
"""
from __future__ import annotations

import maxflow
import numpy as np
import torch

FORCED_CAPACITY = 1e9  # a terminal link no cut can afford
EPSILON = 1e-4  # keeps ties short: among equal-cost cuts, the shortest


def choose_by_cut(side: int, index: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                  forced: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per candidate texel, whether it takes `second` (True) or `first` (False).

    `index [N]`: flat atlas index (row * side + column) of each candidate, unique; `first`, `second` `[N, C]`
    its two colours (the cost reads the first three channels: colour); `forced [N]`: -1 free, 0 must take
    `first`, 1 must take `second`; `group [N]`: only neighbours of one group are linked (two seams' bands
    that touch in the atlas are separate problems)."""
    if len(index) == 0:
        return torch.zeros(0, dtype=torch.bool)
    rows, cols = (index // side).numpy(), (index % side).numpy()
    r0, c0 = rows.min(), cols.min()
    shape = (rows.max() - r0 + 1, cols.max() - c0 + 1)
    where = np.full(shape, -1, dtype=np.int64)
    where[rows - r0, cols - c0] = np.arange(len(index))
    difference = (first[:, :3] - second[:, :3]).abs().sum(1).double().numpy()
    graph = maxflow.Graph[float]()
    nodes = graph.add_nodes(len(index))
    for d_row, d_col in ((0, 1), (1, 0)):
        a, b = _neighbour_pairs(where, d_row, d_col)
        same = group.numpy()[a] == group.numpy()[b]
        a, b = a[same], b[same]
        cost = difference[a] + difference[b] + EPSILON
        graph.add_edges(nodes[a], nodes[b], cost, cost)
    forced_np = forced.numpy()
    source = np.where(forced_np == 0, FORCED_CAPACITY, 0.0)
    sink = np.where(forced_np == 1, FORCED_CAPACITY, 0.0)
    graph.add_grid_tedges(nodes, source, sink)
    graph.maxflow()
    return torch.from_numpy(graph.get_grid_segments(nodes).astype(bool))


def _neighbour_pairs(where: np.ndarray, d_row: int, d_col: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs `(a, b)` with b at (row + d_row, col + d_col) of a, both candidates."""
    h, w = where.shape
    a = where[:h - d_row, :w - d_col]
    b = where[d_row:, d_col:]
    both = (a >= 0) & (b >= 0)
    return a[both], b[both]
