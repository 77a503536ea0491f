"""Test plugin (GRAPHFLOW_PLUGINS=tree_nodes): a node whose output is several files (a FileTree)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from graphflow import Context, FileTree, Node, register


@register
class Tree(Node):
    """`<stem>.txt` naming its sidecar `<stem>_files/data.bin`, as an export with images beside it does."""

    name = "test.tree"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        stem: str = "doc"
        text: str = "hello"

    def run(self, ctx: Context) -> FileTree:
        stem = self.params.stem
        files = {f"{stem}.txt": f"{self.params.text} -> {stem}_files/data.bin\n".encode(),
                 f"{stem}_files/data.bin": bytes(range(256)) * 4}
        return FileTree(files=files, summary={"names": {"my sofa": "my_sofa"}, "stem": stem})
