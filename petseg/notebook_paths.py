"""Strip the build machine's paths from an executed chapter notebook before the book offers it for download.

papermill writes absolute paths into the notebook it executes: the injected parameters (``data = "/abs/path"``),
``metadata.papermill`` (``input_path``, ``output_path``, ``parameters``), and whatever a cell printed. After
:func:`strip_build_paths` the notebook names the repository root ``<repo>``, the dataset folder
``$PETSEG_DATA`` and the home folder ``~``; an injected parameter holding an absolute path becomes ``None``
(what a reader types: the notebook then reads ``$PETSEG_DATA``) with the folder's last component in a comment.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

REPO_TOKEN = "<repo>"
DATA_TOKEN = "$PETSEG_DATA"
HOME_TOKEN = "~"

# An injected assignment whose value is a quoted string, e.g. ``data = "/home/me/pets"`` (papermill's Python form).
_ASSIGNMENT = re.compile(r"""^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<quote>["'])(?P<value>.*)(?P=quote)\s*$""")
_PATH_CHAR = r"[\w.\-]"  # a character that would continue a path component


class PathScrubber:
    """Replaces the absolute paths of one build (longest first) by placeholders in any text."""

    def __init__(self, repo_root: Path | str, data_roots: Sequence[Path | str | None] = (),
                 home: Path | str | None = None) -> None:
        self.repo_root = _forms(repo_root)
        pairs = [(form, HOME_TOKEN) for form in _forms(home if home is not None else Path.home())]
        pairs += [(form, DATA_TOKEN) for root in data_roots for form in _forms(root)]
        pairs += [(form, REPO_TOKEN) for form in self.repo_root]  # a later pair wins an equal path
        self.pairs = sorted(dict(pairs).items(), key=lambda pair: -len(pair[0]))  # the longest path first
        alternatives = "|".join(re.escape(path) for path, _ in self.pairs) or r"(?!)"
        self.pattern = re.compile(rf"(?<!{_PATH_CHAR})(?:{alternatives})(?!{_PATH_CHAR})")
        self.tokens = dict(self.pairs)

    def text(self, text: str, escape_html: bool = False) -> str:
        """``text`` with every build path replaced (the tokens HTML-escaped when ``escape_html``)."""
        def token(match: re.Match[str]) -> str:
            value = self.tokens[match.group(0)]
            return html.escape(value) if escape_html else value
        return self.pattern.sub(token, text)

    def metadata_value(self, value: str) -> str:
        """A metadata string: an absolute path under the repository becomes relative to it, any other absolute
        path keeps its placeholder form or, failing that, its last component; paths inside text are replaced."""
        if not _is_absolute(value):
            return self.text(value)
        for root in self.repo_root:
            if value == root or value.startswith(root.rstrip("/\\") + "/"):
                return value[len(root):].lstrip("/\\") or "."
        replaced = self.text(value)
        return _last_component(replaced) if _is_absolute(replaced) else replaced


def _forms(path: Path | str | None) -> list[str]:
    """The path as given and resolved (both absolute), without a trailing separator; none for ``/`` or None."""
    if path is None or str(path).strip() == "":
        return []
    given = Path(path).expanduser()
    forms = {os.path.normpath(str(given.absolute())), str(given.resolve())}
    return sorted(form for form in forms if Path(form).parent != Path(form))


def _is_absolute(value: str) -> bool:
    return PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()


def _last_component(value: str) -> str:
    return re.split(r"[\\/]", value.rstrip("/\\"))[-1] or value


def _map_text(value: Any, change: Callable[[str], str]) -> Any:
    """Apply ``change`` to a notebook text field (a string or a list of strings)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [change(item) if isinstance(item, str) else item for item in value]
    return value


def _map_strings(node: Any, change: Callable[[str], str]) -> Any:
    """Apply ``change`` to every string inside a JSON tree (metadata)."""
    if isinstance(node, dict):
        return {key: _map_strings(item, change) for key, item in node.items()}
    if isinstance(node, list):
        return [_map_strings(item, change) for item in node]
    return change(node) if isinstance(node, str) else node


def injected_source(source: str) -> str:
    """The injected parameters cell with each absolute-path value replaced by ``None`` and a comment."""
    lines = []
    for line in source.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = _ASSIGNMENT.match(body)
        if match and _is_absolute(match["value"]):
            folder = _last_component(match["value"].replace("\\\\", "\\"))
            body = f"{match['name']} = None  # this build: a folder named {folder!r} on the build machine"
        lines.append(body + line[len(line.rstrip("\r\n")):])
    return "".join(lines)


def _output(output: dict[str, Any], scrub: PathScrubber) -> None:
    if "text" in output:  # stream
        output["text"] = _map_text(output["text"], scrub.text)
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/"):
            escape = mime == "text/html"
            output["data"][mime] = _map_text(value, lambda text, escape=escape: scrub.text(text, escape))
    if "evalue" in output:  # error
        output["evalue"] = scrub.text(output["evalue"])
    if "traceback" in output:
        output["traceback"] = _map_text(output["traceback"], scrub.text)


def strip_notebook(nb: dict[str, Any], scrub: PathScrubber) -> dict[str, Any]:
    """Strip ``nb`` (an nbformat-4 dict) of the build's paths, in place; return it."""
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = injected_source("".join(_map_text(cell.get("source", ""), str)))
        cell["source"] = _map_text(cell.get("source", ""), scrub.text)
        cell["metadata"] = _map_strings(cell.get("metadata", {}), scrub.metadata_value)
        for output in cell.get("outputs", []):
            _output(output, scrub)
    parameters = nb.get("metadata", {}).get("papermill", {}).get("parameters")
    if isinstance(parameters, dict):  # as the injected cell now reads
        for name, value in parameters.items():
            if isinstance(value, str) and _is_absolute(value):
                parameters[name] = None
    nb["metadata"] = _map_strings(nb.get("metadata", {}), scrub.metadata_value)
    return nb


def strip_build_paths(path: Path | str, repo_root: Path | str, data_roots: Sequence[Path | str | None] = (),
                      home: Path | str | None = None) -> bool:
    """Rewrite the executed notebook ``path`` without the build's paths; True if the file changed.

    ``data_roots``: the dataset folders this build may have used (``--data``, ``$PETSEG_DATA``)."""
    path = Path(path)
    before = json.loads(path.read_text(encoding="utf-8"))
    after = strip_notebook(json.loads(json.dumps(before)), PathScrubber(repo_root, data_roots, home))
    if after == before:
        return False
    path.write_text(json.dumps(after, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True
