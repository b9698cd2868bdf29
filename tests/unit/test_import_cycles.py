"""Imports inside modules/ only go down (DESIGN.md): no module reaches itself through imports,
counting the ones inside functions, which are still a dependency, only a later one."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "modules"


def module_files() -> dict[str, str]:
    found = {}
    for folder, _dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: str, name: str, is_package: bool) -> set[str]:
    """Every module name this file imports, anywhere in it (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block)
               for statement in block.body for n in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph = {}
    for name, path in files.items():
        targets = set()
        for imported in imported_names(path, name, path.endswith("__init__.py")):
            # `import modules.a.b` also runs modules.a; keep the deepest name that is a module here
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            # a module's own parent packages always load before it: not a circle of the design
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "modules.shared" in graph["modules.processing"]
    assert "modules.textual_inversion" in graph["modules.shared"]  # imported inside configure()


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Circles known and not yet broken, each with why. Nothing may join this list silently: the test
# fails on any other circle, and on an entry here that has gone (so the list only shrinks).
KNOWN_CIRCLES = [
    # img2img's batch runner (issue 8) calls processing's schedule_steps, _refiner_for, _save_one and
    # create_infotext from inside functions; those need to move one floor down to break it
    ["modules.img2img.job", "modules.processing"],
]


def test_no_import_cycles_inside_modules():
    cycles = find_cycles(import_graph())
    new = [c for c in cycles if c not in KNOWN_CIRCLES]
    assert not new, "import circles: " + "; ".join(" <-> ".join(c) for c in new)
    gone = [c for c in KNOWN_CIRCLES if c not in cycles]
    assert not gone, f"no longer circles, remove them from KNOWN_CIRCLES: {gone}"


def test_names_moved_down_stay_where_extensions_import_them():
    from modules import images, processing, shared, styles, vae_decode
    assert shared.prompt_styles is styles.get_database()
    assert processing.decode_latents is vae_decode.decode_latents
    assert processing.VaeNaNError is vae_decode.VaeNaNError
    assert issubclass(processing.VaeNaNError, processing.GenerationError)
    assert callable(images.check_format_setting)
