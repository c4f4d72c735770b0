"""A build hook for the API reference: the docstrings name other objects the Sphinx way
(:meth:`stop`, :class:`marketlab.store.history.History`), which mkdocstrings shows as text.
This turns each into the code span it stands for, without the role, so the pages read as
prose; the source keeps its roles for editors and ``help()``."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:meth|class|attr|func|mod|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
