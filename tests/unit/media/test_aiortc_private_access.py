"""Nothing in fortrolig/ outside media/aiortc_hooks.py touches a private aiortc/aioice name.

The private names are read from the installed aiortc, aioice and pylibsrtp themselves (methods,
class attributes and ``self._x`` assignments, with name mangling applied), so a new one used
anywhere else is caught without a list to keep up to date. Accesses on ``self``/``cls`` are the
module's own (Fortrolig's classes do not subclass aiortc's).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import aioice
import aiortc
import pylibsrtp

import fortrolig

PACKAGES = (aiortc, aioice, pylibsrtp)
HOOKS = Path(fortrolig.__file__).parent / "media" / "aiortc_hooks.py"
_PRIVATE = re.compile(r"^_(?!_)\w*[A-Za-z0-9]$")
_MANGLED = re.compile(r"^_[A-Z]\w*__\w*$")  # _RTCRtpSender__started, or such a prefix alone


def _defined_in(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names |= _class_names(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if _PRIVATE.match(n)}


def _class_names(cls: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    # self.__x is stored as _Class__x
    return {
        f"_{cls.name.lstrip('_')}{n}" if n.startswith("__") and not n.endswith("__") else n
        for n in names
    }


@cache
def private_library_names() -> frozenset[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in Path(package.__file__).parent.rglob("*.py"):
            names |= _defined_in(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(names)


def _named_attribute(call: ast.Call) -> str | None:
    """The attribute name a getattr/setattr/hasattr/delattr call spells out, if any."""
    func = call.func
    if not (isinstance(func, ast.Name) and func.id in ("getattr", "setattr", "hasattr", "delattr")):
        return None
    if len(call.args) < 2 or not isinstance(call.args[1], ast.Constant):
        return None
    value = call.args[1].value
    return value if isinstance(value, str) else None


def violations(path: Path) -> list[str]:
    private = private_library_names()
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr in private or _MANGLED.match(node.attr):
                found.append(f"{path}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and _named_attribute(node) in private:
            found.append(f"{path}:{node.lineno}: {_named_attribute(node)!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MANGLED.match(node.value):
                found.append(f"{path}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top, *rest = node.module.split(".")
            if top in {p.__name__ for p in PACKAGES} and any(r.startswith("_") for r in rest):
                found.append(f"{path}:{node.lineno}: from {node.module} import")
    return found


def test_the_library_names_are_found() -> None:
    names = private_library_names()
    for name in ("_codecs", "_ssrc", "_rx_srtp", "_nominated", "_RTCRtpSender__started"):
        assert name in names, name


def test_no_private_aiortc_access_outside_the_hooks_module() -> None:
    found = [
        hit
        for path in sorted(Path(fortrolig.__file__).parent.rglob("*.py"))
        if path != HOOKS
        for hit in violations(path)
    ]
    assert found == [], "move these into fortrolig/media/aiortc_hooks.py:\n" + "\n".join(found)


def test_the_check_catches_what_the_hooks_module_does(tmp_path: Path) -> None:
    """The hooks module itself is full of such accesses: the scan must see them."""
    hits = "\n".join(violations(HOOKS))
    for needle in ("._codecs", "._rx_srtp", "._RTCRtpSender__started", "from pylibsrtp._binding"):
        assert needle in hits, needle
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(sender, self):\n"
        "    return sender._ssrc, self._ssrc, getattr(sender, '_rtx_ssrc'), '_total'\n"
        "P = '_RTCRtpReceiver__'\n"
    )
    hits = [h.rsplit(": ", 1)[1] for h in violations(sample)]
    assert sorted(hits) == ["'_RTCRtpReceiver__'", "'_rtx_ssrc'", "._ssrc"]
