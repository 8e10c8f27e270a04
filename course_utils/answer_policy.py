"""What a graded answer cell may contain, checked on its source before it is ever run.

Every answer cell of the labs is pure definitions: functions, classes, a few constants. The grader
runs a notebook it rebuilt from the instructor's source, with only the students' answer cells taken
from the submission, and each of those must first pass this static policy (nothing is executed to
check it):

- at the top level only ``def``, ``class``, ``import`` of the modules in :data:`ALLOWED_IMPORTS`,
  plain assignments of new names, docstrings and ``pass``;
- no name the lab's own cells bind may be rebound (``check_close``, ``torch``, ``ops``, ...), and no
  ``global``/``nonlocal``;
- attributes are assigned only on ``self`` (an ``nn.Module`` storing its layers), never on a module
  or any other object; no ``del`` of attributes;
- no dunder or private (``_x``) attribute, no builtin outside :data:`ALLOWED_BUILTINS` (so no
  ``exec``, ``eval``, ``open``, ``getattr``, ``globals``, ``__import__``, ``get_ipython``, ...), no
  ``str.format`` (it reads attributes by name), no IPython magics or shell lines;
- no name bound by the lab's ``course_utils`` or torchvision imports (the references the tests
  compare with), nothing called ``reference_*``, no name a test cell defines, and per exercise no
  attribute the exercise's tests compare with (``ops.box_iou`` for an IoU exercise, ...).

An answer that breaks the policy is replaced by :func:`blocked_answer`: the same names, each raising
``GradingError`` with the reason, so the exercise's tests score 0 and the feedback says why.
"""

from __future__ import annotations

import ast
import builtins
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# not functools, typing or dataclasses: typing.get_type_hints and functools.singledispatch evaluate
# annotation strings (``def f(x: "exec(...)")``), a way around every rule below
ALLOWED_IMPORTS = frozenset({
    "math", "statistics", "time", "itertools", "collections", "numpy", "torch", "torch.nn", "torch.nn.functional",
})

# the only modules an answer may reach through attribute chains (``torch.nn.init.zeros_``): the rest of
# torch and numpy holds pickles, packages that import code (torch.package), process spawning
# (torch.multiprocessing), compilers and file readers
ALLOWED_MODULES = frozenset({
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.linalg", "torch.special", "torch.fft",
    "torch.autograd", "torch.cuda", "numpy", "numpy.linalg", "numpy.random", "math", "statistics", "time",
    "itertools", "collections", "torchvision.ops",
})

ALLOWED_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "classmethod", "dict", "divmod", "enumerate", "filter",
    "float", "frozenset", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min",
    "next", "pow", "print", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "str", "sum", "super", "tuple", "zip", "None", "True", "False", "NotImplemented",
    "Exception", "ArithmeticError", "AssertionError", "IndexError", "KeyError", "NotImplementedError",
    "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
})

# attribute names never allowed, whatever they are read on: code loading/compiling, pickles, files,
# and torch's back doors to compiled operators (torch.ops.torchvision.nms is torchvision's NMS)
FORBIDDEN_ATTRIBUTES = frozenset({
    "format", "format_map", "ops", "hub", "library", "load", "save", "jit", "compile", "classes",
    "utils", "backends", "ctypeslib", "testing", "lib", "system", "popen", "fromfile", "tofile",
    "frombuffer", "memmap", "register_forward_hook", "register_forward_pre_hook", "register_hook",
    "set_default_tensor_type", "set_default_dtype", "set_printoptions", "manual_seed", "seed",
    "set_flush_denormal", "use_deterministic_algorithms", "set_num_threads", "apply_",
    "map_", "get_ipython", "from_file", "savetxt", "loadtxt", "genfromtxt", "fromregex", "DataSource",
})

# attribute names refused by pattern: global hooks (``register_module_forward_hook``, ...) and global
# settings (``set_default_device``, ``np.seterr``, ...) change what the tests' own code computes
FORBIDDEN_ATTRIBUTE_PARTS = ("hook",)
FORBIDDEN_ATTRIBUTE_PREFIXES = ("set_", "seterr",
                                # frames, tracebacks, code objects: f_back.f_builtins["exec"], ...
                                "f_", "tb_", "gi_", "cr_", "ag_", "co_")

# the names IPython keeps its history under in the notebook's namespace
IPYTHON_HISTORY = frozenset({"In", "Out", "exit", "quit"})

# what an answer's nn.Module may define among the names nn.Module already has
MODULE_METHODS_TO_WRITE = frozenset({"forward", "extra_repr"})

# the modules an answer reaches by the lab's names (the grader resolves attribute chains on them)
LAB_MODULES = {"torch": "torch", "F": "torch.nn.functional", "nn": "torch.nn", "np": "numpy", "math": "math",
               "statistics": "statistics", "time": "time", "ops": "torchvision.ops"}

# modules the lab's cells may bind that answers may use (the rest of what the setup cell imports
# is either a reference implementation or plumbing an answer has no use for)
ALLOWED_LAB_NAMES = frozenset({"torch", "F", "nn", "np", "math", "statistics", "time", "ops",
                               "linear_sum_assignment", "IGNORE_INDEX"})

# references each exercise's tests compare with, by attribute or name, beyond what the test cells
# of the exercise name themselves (found by :func:`exercise_policies`)
EXTRA_FORBIDDEN = {
    "conv_transpose2d": {"conv_transpose2d", "ConvTranspose2d", "conv_transpose1d", "conv_transpose3d"},
    "roi_align": {"roi_align", "RoIAlign", "MultiScaleRoIAlign", "ps_roi_align"},
    "roi_pool": {"roi_pool", "RoIPool", "ps_roi_pool", "adaptive_max_pool2d", "AdaptiveMaxPool2d"},
    "box_iou": {"box_iou", "paired_box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou",
                "jaccard"},
    "generalized_box_iou": {"generalized_box_iou_loss", "box_iou", "paired_box_iou"},
    "nms": {"batched_nms", "nms"},
    "sigmoid_focal_loss": {"sigmoid_focal_loss"},
    "box_convert": {"box_convert", "_box_xyxy_to_cxcywh", "_box_cxcywh_to_xyxy"},
}


class PolicyError(ValueError):
    """Raised for a bad argument to this module (not for a student's answer: those get a list)."""


@dataclass(frozen=True)
class ExercisePolicy:
    """What one answer cell may use.

    Attributes:
        grade_id: the answer cell's nbgrader ``grade_id``.
        protected_names: names the lab's own cells bind or use; an answer may not rebind them.
        forbidden_names: names an answer may not read (references, test helpers, plumbing).
        forbidden_attributes: attribute names an answer may not read (the references tested).
    """

    grade_id: str
    protected_names: frozenset[str] = field(default_factory=frozenset)
    forbidden_names: frozenset[str] = field(default_factory=frozenset)
    forbidden_attributes: frozenset[str] = field(default_factory=frozenset)


# --- what the lab's cells bind -------------------------------------------------------------------

def _parse(source: str) -> ast.Module | None:
    """``source`` parsed, or None when it is not valid Python (magics, shell lines, syntax errors)."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def bound_names(tree: ast.AST) -> set[str]:
    """Names a piece of code binds at its top level: assignments, defs, classes, imports, loop targets.

    Args:
        tree: a parsed module.

    Returns:
        the names (for ``import a.b`` the name ``a``).
    """
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def used_names(tree: ast.AST) -> set[str]:
    """Every name read anywhere in ``tree``."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def used_attributes(tree: ast.AST) -> set[str]:
    """Every attribute name read anywhere in ``tree`` (``ops.box_iou`` gives ``box_iou``)."""
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def reference_imports(tree: ast.AST) -> set[str]:
    """Names bound by ``from course_utils...``/``data_scripts...``/``torchvision...``/``scipy...``/... imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "course_utils", "data_scripts", "torchvision", "scipy", "pycocotools", "IPython"}:
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names
                         if a.name.split(".")[0] not in {"torch", "numpy", "math", "statistics", "time"})
    return names


def exercise_policies(cells: Iterable[Mapping]) -> dict[str, ExercisePolicy]:
    """The policy of every answer cell of a lab, derived from its source notebook's cells.

    An exercise is an answer (solution) code cell and the test cells that follow it up to the next
    answer cell. Its forbidden attributes are those its test cells read that its model solution does
    not (the references the tests compare with), widened by :data:`EXTRA_FORBIDDEN`.

    Args:
        cells: the cells of ``solutions/<lab>/<lab>.ipynb`` (dicts with ``cell_type``, ``source``,
            ``metadata``), in order.

    Returns:
        ``{grade_id: ExercisePolicy}`` for every answer code cell.

    Raises:
        PolicyError: when a cell is not a dict with a source, or a lab cell is not valid Python.
    """
    lab_bound, lab_used, references, test_bound = set(), set(), set(), set()
    exercises: list[tuple[str, ast.Module, list[ast.Module]]] = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping) or "source" not in cell:
            raise PolicyError(f"cells[{i}] should be a notebook cell (a dict with a source), got {cell!r:.80}")
        if cell.get("cell_type") != "code":
            continue
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        tree = _parse(source)
        if tree is None:
            raise PolicyError(f"cells[{i}] ({meta.get('grade_id', 'no grade_id')}) of the source is not valid Python")
        if meta.get("solution"):
            exercises.append((meta["grade_id"], tree, []))
            continue
        lab_bound |= bound_names(tree)
        lab_used |= used_names(tree)
        references |= reference_imports(tree)
        if meta.get("grade"):
            test_bound |= bound_names(tree)
            if exercises:
                exercises[-1][2].append(tree)
    answer_bound = set().union(*(bound_names(tree) for _, tree, _ in exercises)) if exercises else set()
    protected = frozenset((lab_bound | lab_used) - answer_bound)
    forbidden_names = frozenset((references | {n for n in lab_bound | lab_used if n.startswith("reference")}
                                 | (test_bound - answer_bound) | {"sys", "importlib", "os", "get_ipython"})
                                - ALLOWED_LAB_NAMES - answer_bound)
    policies = {}
    for grade_id, solution, tests in exercises:
        tested = set().union(*(used_attributes(t) | used_names(t) for t in tests)) if tests else set()
        widened = tested | {extra for name in tested for extra in EXTRA_FORBIDDEN.get(name, ())}
        forbidden_attrs = widened - used_attributes(solution)
        # only the library functions count as references, not e.g. ``.sum`` or ``.shape``
        forbidden_attrs = {a for a in forbidden_attrs if _is_reference_attribute(a, tests)}
        policies[grade_id] = ExercisePolicy(grade_id, protected, forbidden_names, frozenset(forbidden_attrs))
    return policies


def _is_reference_attribute(name: str, tests: list[ast.Module]) -> bool:
    """True when ``name`` is read as ``ops.<name>``/``F.<name>``/``torchvision...<name>`` in a test, or listed."""
    if any(name in extras for extras in EXTRA_FORBIDDEN.values()):
        return True
    for tree in tests:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == name:
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in {"ops", "torchvision"}:
                    return True
    return False


# --- checking an answer --------------------------------------------------------------------------

TOP_LEVEL = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Pass)


def _function_locals(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """A function's parameters and the names it assigns (they may shadow builtins)."""
    args = fn.args
    stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return stored | {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                            *([args.vararg] if args.vararg else []), *([args.kwarg] if args.kwarg else [])]}


def check_answer(source: str, policy: ExercisePolicy, max_chars: int = 200_000) -> list[str]:
    """Why an answer cell's source may not run, as sentences; ``[]`` when it passes the policy.

    Args:
        source: the answer cell's source, as the student wrote it.
        policy: the exercise's policy (:func:`exercise_policies`).
        max_chars: longer sources are refused without parsing.

    Returns:
        the violations, each naming the line and what is not allowed.
    """
    if not isinstance(source, str):
        return [f"the answer should be text, got {type(source).__name__}"]
    if len(source) > max_chars:
        return [f"the answer is {len(source)} characters long; at most {max_chars} are graded"]
    tree = _parse(source)
    if tree is None:
        return ["the answer is not valid Python (a syntax error, an IPython magic or a shell `!` line)"]
    problems: list[str] = []

    def say(node: ast.AST, text: str) -> None:
        problems.append(f"line {getattr(node, 'lineno', '?')}: {text}")

    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring or a comment-like string
        if not isinstance(stmt, TOP_LEVEL):
            say(stmt, f"only definitions (def, class, imports, constants) may stand at the top level of an "
                      f"answer, not a {type(stmt).__name__} statement: the grader runs answers, then the tests")
        defines = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if defines and stmt.name in policy.protected_names:
            say(stmt, f"{stmt.name!r} is a name the lab's own cells use; choose another name")
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):  # `from torch.nn import Identity as check_close`
            for alias in stmt.names:
                bound = (alias.asname or alias.name).split(".")[0]
                if bound in policy.protected_names and (alias.asname or isinstance(stmt, ast.ImportFrom)) \
                        and not (bound in LAB_MODULES and _same_module(bound, stmt, alias)):
                    say(stmt, f"{bound!r} is a name the lab's own cells use; an import may not rebind it")
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name) and node.id in policy.protected_names:
                        say(stmt, f"{node.id!r} is a name the lab's own cells use; it may not be rebound")
                if not isinstance(target, (ast.Name, ast.Tuple, ast.List)):
                    say(stmt, "only plain names may be assigned at the top level of an answer")
    problems += _check_imports(tree)
    problems += _check_nodes(tree, policy)
    return problems


def _check_imports(tree: ast.AST) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] if node.level == 0 else ["." * node.level]
            if any(a.name == "*" for a in node.names):
                problems.append(f"line {node.lineno}: `from ... import *` is not allowed in an answer")
        else:
            continue
        for module in modules:
            if module not in ALLOWED_IMPORTS:
                problems.append(f"line {node.lineno}: importing {module!r} is not allowed in an answer "
                                f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS))})")
    return problems


def _check_nodes(tree: ast.AST, policy: ExercisePolicy) -> list[str]:
    problems: list[str] = []
    # which names are a method's `self`: the first parameter of a function defined in a class body
    selves: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                # a decorated method (staticmethod, property, ...) may be called with any first argument
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.args.args \
                        and not item.decorator_list:
                    selves.add(id(item))

    def visit(node: ast.AST, self_name: str | None, local: set[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                visit(deco, self_name, local)
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    visit(default, self_name, local)
            if node.name.startswith("_") and node.name != "__init__":
                problems.append(f"line {node.lineno}: only `__init__` may be defined with a leading "
                                f"underscore in an answer, not {node.name!r}")
            inner_self = node.args.args[0].arg if id(node) in selves else None
            for stmt in node.body:
                visit(stmt, inner_self, local | _function_locals(node))
            return
        if isinstance(node, ast.ClassDef):
            if node.keywords:
                problems.append(f"line {node.lineno}: class keywords (metaclass=...) are not allowed in an answer")
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            problems.append(f"line {line}: `global`/`nonlocal` is not allowed in an answer")
        elif isinstance(node, ast.NamedExpr):  # in a default or a decorator it binds a name of the notebook
            problems.append(f"line {line}: assignment expressions (`:=`) are not allowed in an answer")
        elif isinstance(node, ast.Attribute):
            if node.attr == "__init__" and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id == "super":
                pass  # super().__init__(...) in an nn.Module
            elif node.attr.startswith("_"):
                problems.append(f"line {line}: the private or special attribute {node.attr!r} may not be used")
            elif node.attr in FORBIDDEN_ATTRIBUTES or node.attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES) \
                    or any(part in node.attr for part in FORBIDDEN_ATTRIBUTE_PARTS):
                problems.append(f"line {line}: `.{node.attr}` is not allowed in an answer")
            elif node.attr in policy.forbidden_attributes:
                problems.append(f"line {line}: `.{node.attr}` is what this exercise's tests compare with; "
                                f"write it yourself instead of calling it")
            if isinstance(node.ctx, (ast.Store, ast.Del)) and not (
                    isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
                    and self_name is not None and node.value.id == self_name):
                problems.append(f"line {line}: attributes may only be assigned on `self` in an answer "
                                f"(not on a module, a function or another object)")
        elif isinstance(node, ast.Name):
            # IPython's In/Out/_ih/_i3/_ hold the sources of the cells that ran, the hidden tests included
            if node.id.startswith("__") or (node.id in policy.forbidden_names and node.id not in local) or (
                    (node.id in IPYTHON_HISTORY or node.id.startswith("_")) and node.id not in local
                    and isinstance(node.ctx, ast.Load)):
                problems.append(f"line {line}: {node.id!r} may not be used in an answer"
                                + (" (it is a reference the tests compare with, or grading plumbing)"
                                   if node.id in policy.forbidden_names else ""))
            elif node.id in vars(builtins) and node.id not in ALLOWED_BUILTINS and node.id not in local:
                problems.append(f"line {line}: the builtin {node.id!r} may not be used in an answer")
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in policy.protected_names:
                    problems.append(f"line {line}: {target.id!r} is a name the lab's own cells use; "
                                    f"it may not be deleted")
        elif isinstance(node, ast.Lambda):
            local = local | _function_locals(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "{" in node.value \
                and "__" in node.value:
            problems.append(f"line {line}: strings holding `{{...__...}}` templates are not allowed in an answer")
        for child in ast.iter_child_nodes(node):
            visit(child, self_name, local)

    visit(tree, None, set())
    problems += _check_values(tree, policy)
    return sorted(set(problems), key=lambda p: (int(p.split(":")[0][5:]) if p[5:].split(":")[0].isdigit() else 0, p))


def _chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """``torch.nn.functional`` as its root node (``torch``) and its attribute names, outermost last."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return node, names[::-1]


def _same_module(bound: str, stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> bool:
    """True when an import binds a lab module name to that very module (``import numpy as np``)."""
    if isinstance(stmt, ast.Import):
        return alias.name == LAB_MODULES[bound]
    return f"{stmt.module}.{alias.name}" == LAB_MODULES[bound] or (
        stmt.module is not None and stmt.module + "." + alias.name == LAB_MODULES[bound])


def _module_names(tree: ast.AST) -> dict[str, object]:
    """The names of ``tree`` that stand for modules or their members: the lab's and the answer's imports.

    Returns:
        ``{name: object}``, resolved on pristine imports in the grader (only allowed modules).
    """
    import importlib

    names: dict[str, object] = {}
    for name, module in LAB_MODULES.items():
        try:
            names[name] = importlib.import_module(module)
        except ImportError:  # torchvision missing: ``ops`` stays unresolved
            pass
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ALLOWED_IMPORTS:
                    root = a.name if a.asname else a.name.split(".")[0]
                    names[a.asname or root] = importlib.import_module(root)
        elif isinstance(node, ast.ImportFrom) and node.module in ALLOWED_IMPORTS and node.level == 0:
            module = importlib.import_module(node.module)
            for a in node.names:
                if a.name != "*":
                    names[a.asname or a.name] = getattr(module, a.name, None)
    return names


def _check_values(tree: ast.AST, policy: ExercisePolicy) -> list[str]:
    """Refuse the ways an answer could reach and change objects the tests use.

    - A module or a class (``torch``, ``ops``, ``torch.Tensor``, ``np.linalg``) may be read only to
      call it or one of its members, as ``isinstance``'s type, a base class or in an annotation,
      never handed around as a value: ``functools.update_wrapper(ops, ...)`` or
      ``dataclasses.dataclass(torch.Tensor)`` would rewrite what the tests call.
    - A class the answer defines may be instantiated, not read as ``Class.method``: calling a method
      through its class can pass any object as ``self``, and methods may set attributes on ``self``.
    - The lab's own objects (anything its cells bind) are not changed in place: no ``x[...] =``,
      ``x.fill_()``-style method, ``x.load_state_dict(...)`` or ``x.apply(...)`` on them.
    """
    problems: list[str] = []
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    exempt: set[int] = set()  # annotations: evaluated, never called or changed
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            notes.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            notes.append(node.returns)
        if isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            exempt |= {id(n) for n in ast.walk(note)}
    modules = _module_names(tree)
    classes = {s.name for s in getattr(tree, "body", []) if isinstance(s, ast.ClassDef)}
    scopes: dict[int, set[str]] = {}  # names local to the function around each node

    def local_names(node: ast.AST) -> set[str]:
        names: set[str] = set()
        parent = parents.get(id(node))
        while parent is not None:
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if id(parent) not in scopes:
                    scopes[id(parent)] = _function_locals(parent)
                names |= scopes[id(parent)]
            parent = parents.get(id(parent))
        return names

    def type_position(node: ast.AST) -> bool:
        """``node`` is where a class belongs: called, a base, isinstance's type, an annotation."""
        parent = parents.get(id(node))
        if id(node) in exempt or isinstance(parent, ast.ClassDef) and node in parent.bases:
            return True
        if isinstance(parent, ast.Call) and parent.func is node:
            return True
        if isinstance(parent, ast.Tuple):
            node, parent = parent, parents.get(id(parent))
        return (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                and parent.func.id in ("isinstance", "issubclass") and len(parent.args) == 2
                and parent.args[1] is node)

    def root_of(node: ast.AST) -> ast.AST:
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node

    import torch

    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        parent = parents.get(id(node))
        if isinstance(node, ast.ClassDef):  # nn.Module and its subclasses, not nn.Parameter (a Tensor)
            for base in node.bases:
                root, names = _chain(base)
                obj = None
                if isinstance(root, ast.Name) and root.id in modules:
                    obj = modules[root.id]
                    for attr in names:
                        obj = getattr(obj, attr, None)
                if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
                    problems.append(f"line {line}: an answer's class may only derive from nn.Module or its "
                                    f"subclasses (torch.nn classes such as nn.Sequential), not {ast.unparse(base)}")
                    continue
                # the tests read models through nn.Module's own API (parameters(), named_parameters(),
                # state_dict(), train(), ...): an answer defines forward, not a different parameters()
                api = {name for name in dir(obj) if not name.startswith("_")} - MODULE_METHODS_TO_WRITE
                for item in node.body:
                    names = [item.name] if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) else [
                        n.id for t in getattr(item, "targets", [getattr(item, "target", None)]) if t is not None
                        for n in ast.walk(t) if isinstance(n, ast.Name)]
                    for name in set(names) & api:
                        problems.append(f"line {item.lineno}: {name!r} is nn.Module's own method or attribute; "
                                        f"an answer's module defines __init__ and forward, not {name}")
                    if isinstance(item, ast.FunctionDef) and item.args.args and not item.decorator_list:
                        self_name = item.args.args[0].arg
                        for n in ast.walk(item):
                            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and \
                                    isinstance(n.value, ast.Name) and n.value.id == self_name and n.attr in api:
                                problems.append(f"line {n.lineno}: self.{n.attr} is nn.Module's own method or "
                                                f"attribute; store your layers and values under other names")
        # the whole chain ``torch.nn.functional`` is judged once, at its outermost attribute
        chain_top = isinstance(node, (ast.Name, ast.Attribute)) and not (
            isinstance(parent, ast.Attribute) and parent.value is node)
        if chain_top:
            root, names = _chain(node)
            if isinstance(root, ast.Name) and isinstance(root.ctx, ast.Load) and root.id not in local_names(node):
                if root.id in classes and node is not root:
                    problems.append(f"line {line}: {ast.unparse(node)!r}: a class of the answer is instantiated, "
                                    f"its methods are not read from the class itself")
                elif root.id in classes and not type_position(node):
                    problems.append(f"line {line}: the class {root.id!r} may only be called (instantiated), "
                                    f"not passed around or renamed")
                elif root.id in modules:
                    obj, path = modules[root.id], root.id
                    for attr in names:
                        obj, path = getattr(obj, attr, None), f"{path}.{attr}"
                        if isinstance(obj, types.ModuleType) and obj.__name__ not in ALLOWED_MODULES:
                            problems.append(f"line {line}: {path} ({obj.__name__}) is not among the modules an "
                                            f"answer may use ({', '.join(sorted(ALLOWED_MODULES))})")
                            break
                    if type_position(node):
                        continue
                    if isinstance(obj, (type, types.ModuleType)):
                        use = ("called, subclassed or used as isinstance's type" if isinstance(obj, type)
                               else "used through its members (torch.zeros(...), np.sqrt(...))")
                        problems.append(f"line {line}: the {'class' if isinstance(obj, type) else 'module'} "
                                        f"{ast.unparse(node)!r} may be {use}, not handed around as a value")
        # the lab's objects are not changed in place
        target = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            target, what = node, "assigned into"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                (node.func.attr.endswith("_") and not node.func.attr.startswith("_"))
                or node.func.attr in ("load_state_dict", "apply", "zero_grad")):
            target, what = node.func.value, f"changed with .{node.func.attr}()"
        if target is not None:
            root = root_of(target.value if isinstance(target, ast.Subscript) else target)
            if isinstance(root, ast.Name) and root.id in policy.protected_names and root.id not in modules \
                    and root.id not in local_names(node):
                problems.append(f"line {line}: {root.id!r} belongs to the lab's own cells; it may not be {what} "
                                f"in an answer (work on a copy)")
    return problems


# --- replacing an answer that breaks the policy --------------------------------------------------

def defined_names(source: str) -> list[str]:
    """Top-level function/class names and assigned names of ``source`` (a best effort for invalid code).

    Returns:
        the names in order of appearance, without repeats.
    """
    tree = _parse(source)
    names: list[str] = []
    if tree is not None:
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(stmt.name)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    else:
        import re

        names = re.findall(r"^(?:def|class)\s+([A-Za-z_]\w*)", source, re.M)
    return [n for i, n in enumerate(names) if n.isidentifier() and not n.startswith("_") and n not in names[:i]]


def blocked_answer(names: Iterable[str], problems: list[str]) -> str:
    """The source that replaces an answer breaking the policy: each of ``names`` raises ``GradingError``.

    Args:
        names: the names the answer defined (the tests call them), e.g. from :func:`defined_names`.
        problems: the policy violations, quoted in the error message.

    Returns:
        Python source defining every name as a function that raises (classes too: calling raises).
    """
    message = "this answer was not run by the grader: " + "; ".join(problems[:5])
    if len(problems) > 5:
        message += f"; and {len(problems) - 5} more"
    lines = ["from course_utils.grading import GradingError", f"_GRADER_MESSAGE = {message!r}",
             "print(_GRADER_MESSAGE)"]
    for name in names:
        if not name.isidentifier():
            raise PolicyError(f"names should be Python identifiers, got {name!r}")
        lines += ["", "", f"def {name}(*args, **kwargs):", "    raise GradingError(_GRADER_MESSAGE)"]
    return "\n".join(lines) + "\n"
