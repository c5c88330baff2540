"""python/edgeseg/_core.pyi tells the truth about the built module: the same public names, the
same parameter names, defaults and types (from pybind11's signature lines), the same base
classes and docstrings. Names that exist only in some builds (CUDA, TensorRT) are present exactly
when build_info() says so; where this build lacks one, its stub is checked against the binding
source instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edgeseg import _core

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "python" / "edgeseg" / "_core.pyi"
ENGINE_BINDING = ROOT / "cpp" / "bindings" / "bind_engine.cpp"

#: Names the module has only in some builds, and the build_info() test for them.
CONDITIONAL = {
    "cuda_postprocess_ptr": lambda info: bool(info["cuda"]),
    "TrtEngine": lambda info: info["tensorrt"] is not None,
}

#: pybind11 spellings of the types a stub writes more simply (what the caster accepts).
PYBIND_TYPES = [
    ("typing.SupportsInt | typing.SupportsIndex", "int"),
    ("typing.SupportsFloat | typing.SupportsIndex", "float"),
    ("collections.abc.Sequence", "Sequence"),
    ("numpy.ndarray", "np.ndarray"),
    ("edgeseg._core.", ""),
]


def split_top(text: str, sep: str = ",") -> list[str]:
    """Splits at `sep` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def norm_type(text: str) -> str:
    """One spelling for a stub annotation or a pybind11 type: Optional[X] -> X | None."""
    for long, short in PYBIND_TYPES:
        text = text.replace(long, short)
    text = text.replace("typing.", "")
    while True:
        m = re.search(r"Optional\[", text)
        if not m:
            break
        depth, i = 1, m.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[m.end() : i - 1] + " | None" + text[i:]
    return re.sub(r"\s+", "", text)


def same_type(stub: str, runtime: str) -> bool:
    """Equal, or the stub refines a bare runtime generic (pybind11 says `tuple`, `dict`)."""
    s, r = norm_type(stub), norm_type(runtime)
    return s == r or (r in ("tuple", "dict", "list") and s.startswith(r + "["))


def runtime_signature(obj) -> tuple[list[tuple[str, str, str | None]], str]:
    """([(name, type, default)], return type) from a pybind11 docstring's first line."""
    first = (obj.__doc__ or "").split("\n", 1)[0]
    m = re.match(r"^\w+\((.*)\) -> (.+)$", first)
    assert m, f"{obj!r}: no pybind11 signature line in its docstring: {first!r}"
    params = []
    for part in split_top(m.group(1)):
        name, _, rest = part.partition(":")
        type_, _, default = rest.partition("=")
        params.append((name.strip(), type_.strip(), default.strip() or None))
    return [p for p in params if p[0] != "self"], m.group(2).strip()


def runtime_doc(obj) -> str:
    """The description pybind11 puts after the signature line (or a type's whole docstring)."""
    doc = obj.__doc__ or ""
    if re.match(r"^\w+\(.*\) -> .+", doc):
        doc = doc.split("\n", 1)[1] if "\n" in doc else ""
    return " ".join(doc.split())


def stub_signature(fn: ast.FunctionDef) -> tuple[list[tuple[str, str, str | None]], str]:
    args = fn.args.args
    defaults = [None] * (len(args) - len(fn.args.defaults)) + list(fn.args.defaults)
    params = [
        (a.arg, ast.unparse(a.annotation), None if d is None else ast.unparse(d))
        for a, d in zip(args, defaults)
        if a.arg != "self"
    ]
    return params, ast.unparse(fn.returns)


def stub_doc(node) -> str:
    return " ".join((ast.get_docstring(node) or "").split())


def stub_module() -> dict[str, ast.AST]:
    tree = ast.parse(STUB.read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def public_names(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def check_function(stub: ast.FunctionDef, obj, where: str) -> None:
    params, ret = runtime_signature(obj)
    sparams, sret = stub_signature(stub)
    assert [p[0] for p in sparams] == [p[0] for p in params], f"{where}: parameter names"
    for (name, stype, sdefault), (_, rtype, rdefault) in zip(sparams, params):
        assert same_type(stype, rtype), f"{where}({name}): stub {stype!r}, module {rtype!r}"
        assert sdefault == rdefault, f"{where}({name}): default {sdefault!r} vs {rdefault!r}"
    assert same_type(sret, ret), f"{where}: returns {sret!r} in the stub, {ret!r} in the module"


def test_stub_names_are_the_module_names():
    stub = stub_module()
    info = _core.build_info()
    here = {n for n in public_names(_core) if n not in ("annotations",)}
    for name, present in CONDITIONAL.items():
        assert name in stub, f"{name} is missing from _core.pyi"
        assert (name in here) == present(info), f"{name}: present={name in here}, build {info}"
    expected = {n for n in stub if n not in CONDITIONAL or CONDITIONAL[n](info)}
    assert here == expected, (
        f"only in the module: {sorted(here - expected)}; "
        f"only in the stub: {sorted(expected - here)}"
    )


@pytest.mark.parametrize(
    "name", sorted(n for n, node in stub_module().items() if isinstance(node, ast.FunctionDef))
)
def test_function_signature_and_docstring(name):
    if not hasattr(_core, name):
        pytest.skip(f"{name} is not in this build of the core ({_core.build_info()})")
    node = stub_module()[name]
    obj = getattr(_core, name)
    check_function(node, obj, name)
    assert stub_doc(node) == runtime_doc(obj), f"{name}: the docstrings differ"


def test_exception_classes_bases_and_docstrings():
    stub = stub_module()
    for name in ("EdgesegError", "InvalidArgumentError", "CudaError", "TensorRTError"):
        cls = getattr(_core, name)
        node = stub[name]
        assert [ast.unparse(b) for b in node.bases] == [b.__name__ for b in cls.__bases__], name
        assert stub_doc(node) == runtime_doc(cls), name
        assert cls.__module__ == "edgeseg"


def test_letterbox_class():
    node = stub_module()["Letterbox"]
    cls = _core.Letterbox
    assert stub_doc(node) == runtime_doc(cls)
    members = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
    assert set(members) - {"__init__"} == public_names(cls)
    for name, fn in members.items():
        if name == "__init__":
            check_function(fn, cls.__init__, "Letterbox.__init__")
            continue
        assert [ast.unparse(d) for d in fn.decorator_list] == ["property"], name
        _, ret = runtime_signature_of_property(getattr(cls, name))
        assert same_type(ast.unparse(fn.returns), ret), name


def runtime_signature_of_property(prop) -> tuple[str, str]:
    first = (prop.fget.__doc__ or "").split("\n", 1)[0]
    m = re.match(r"^\w*\((.*)\) -> (.+)$", first)
    assert m, f"no pybind11 signature on {prop!r}: {first!r}"
    return m.group(1), m.group(2).strip()


def test_trt_engine_matches_the_build_or_the_binding_source():
    """TrtEngine against the module in TensorRT builds, else against bind_engine.cpp."""
    node = stub_module()["TrtEngine"]
    members = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
    if hasattr(_core, "TrtEngine"):
        cls = _core.TrtEngine
        assert stub_doc(node) == runtime_doc(cls)
        assert set(members) - {"__init__"} == public_names(cls)
        for name, fn in members.items():
            kinds = [ast.unparse(d) for d in fn.decorator_list]
            if kinds == ["property"]:
                _, ret = runtime_signature_of_property(getattr(cls, name))
                assert same_type(ast.unparse(fn.returns), ret), name
            else:
                check_function(fn, getattr(cls, name), f"TrtEngine.{name}")
        return
    source = ENGINE_BINDING.read_text()
    klass = re.search(r'py::class_<TrtEngine>\(m, "TrtEngine",(.*?)\)\s*\n\s*\.def', source, re.S)
    assert klass, "bind_engine.cpp: the TrtEngine class binding was not found"
    doc = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', klass.group(1)))
    assert stub_doc(node) == " ".join(doc.split())
    # Each .def*("name", ...) up to the next one, with its py::arg names and defaults in order.
    defs = {}
    for m in re.finditer(r'\.def(?:_property_readonly|_static)?\(\s*(?:"(\w+)"|py::init)', source):
        end = re.search(r"\n\s*\.def", source[m.end() :])
        body = source[m.end() : m.end() + end.start()] if end else source[m.end() :]
        args = re.findall(r'py::arg\("(\w+)"\)(?:\s*=\s*([\w.]+))?', body)
        defs[m.group(1) or "__init__"] = (m.group(0), args)
    assert set(defs) == set(members), "TrtEngine members differ from bind_engine.cpp"
    binder = {"property": ".def_property_readonly(", "staticmethod": ".def_static("}
    cpp_literal = {"true": "True", "false": "False"}
    for name, fn in members.items():
        kinds = [ast.unparse(d) for d in fn.decorator_list]
        how, args = defs[name]
        assert how.startswith(binder.get(kinds[0], "?") if kinds else ".def("), name
        if kinds != ["property"]:
            params, _ = stub_signature(fn)
            assert [(p[0], p[2]) for p in params] == [
                (a, cpp_literal.get(d, d) or None) for a, d in args
            ], f"TrtEngine.{name}: parameters and defaults"
