"""package.xml declares what the node imports, as rosdep keys.

Every module imported by dna_depth_ros/ (and by the dna_depth_core modules it loads, followed through their
imports, function-local optional ones included) must be the standard library, this package, a declared
``exec_depend`` (through the module -> key table below), or named in package.xml's comment as having no rosdep key.
"""
import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Python module -> rosdep key (the keys' sources are in package.xml's comment).
KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "torch": "python3-torch",
    "timm": "python3-timm-pip",
    "onnxruntime": "python3-onnxruntime-pip",
}
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs",
                "lifecycle_msgs", "cv_bridge"}
NO_KEY = {"safetensors", "onnx", "openvino", "threadpoolctl"}  # must be explained in package.xml's comment
OWN = {"dna_depth_core", "dna_depth_ros"}


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imports(path: Path) -> set[str]:
    """Fully qualified modules imported anywhere in ``path`` (``from a import b`` gives a and a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files of ours that import it, over dna_depth_ros and what it loads."""
    todo = [f"dna_depth_ros.{p.stem}" for p in (REPO / "dna_depth_ros").glob("*.py")]
    seen, found = set(), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        parts = name.split(".")
        for parent in range(1, len(parts)):  # a package's __init__ runs first
            todo.append(".".join(parts[:parent]))
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in OWN:
                todo.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_import_is_a_declared_dependency():
    root = ET.parse(REPO / "package.xml").getroot()
    declared = {e.text for e in root.findall("exec_depend")}
    comment = (REPO / "package.xml").read_text()
    comment = comment[comment.index("<!-- Runtime dependencies"):comment.index("-->")]
    imports = _third_party_imports()
    # The walk reaches what the node needs: ROS messages, the network, the ONNX backend. (lifecycle_msgs is used
    # through rclpy.lifecycle, and declared for the lifecycle services.)
    assert {"rclpy", "sensor_msgs", "diagnostic_msgs", "rcl_interfaces", "torch", "timm", "onnxruntime",
            "safetensors", "onnx", "cv2", "numpy", "yaml"} <= set(imports)
    missing = []
    for module, files in sorted(imports.items()):
        if module in ROS_PACKAGES:
            ok = module in declared
        elif module in KEYS:
            ok = KEYS[module] in declared and KEYS[module] in comment
        elif module in NO_KEY:
            ok = f"- {module}:" in comment
        else:
            ok = False
        if not ok:
            missing.append(f"{module} (imported by {', '.join(sorted(files))})")
    assert not missing, f"not declared in package.xml: {missing}"
    # No stale or end-of-life keys.
    assert "python3-pytorch-pip" not in declared and "python3-safetensors-pip" not in declared
    assert declared >= ROS_PACKAGES | set(KEYS.values())
