"""``skilldistill tree build``: a skill tree induced from a corpus. A chat model proposes skill
chains for each item of a sample (``proposals.py``, read by ``chains.py``), and the chains are
merged into one tree (``merge.py``); ``stage.py`` runs it. See docs/tree.md, "Building a tree
from a corpus"."""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "run_tree_build": ".stage",
    "TreeBuildResult": ".stage",
    "TreeBuildConfig": ".config",
})
