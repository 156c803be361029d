"""The launch files, the parameter file and the docs agree with the package.

``ros2 launch`` (launch, launch_ros) cannot be installed here, so the Python launch file is parsed with ``ast`` and
the XML one with ElementTree; the package, executable, node name, parameter file and remapped topics they name
are checked against package.xml, setup.py, the node and config/ros/. The YAML's parameters must be exactly the
node's declared parameters, with the same types and defaults, and docs/ros.md must document each of them.
"""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PY_LAUNCH = REPO / "launch" / "dna_depth.launch.py"
XML_LAUNCH = REPO / "launch" / "dna_depth.launch.xml"
YAML = REPO / "config" / "ros" / "dna_depth.yaml"
NAV2_EXAMPLE = REPO / "config" / "ros" / "nav2_costmap_example.yaml"


def _package_name():
    return ET.parse(REPO / "package.xml").getroot().findtext("name")


def _console_scripts():
    """name -> 'module:function' from setup.py's entry_points (parsed, not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            return dict(tuple(s.strip() for s in line.split("=", 1)) for line in entry_points["console_scripts"])
    raise AssertionError("setup.py has no entry_points")


def _installed_data_globs():
    """The glob patterns of setup.py's data_files (``['launch/*.launch.py', ..., 'config/ros/*.yaml', ...]``)."""
    text = (REPO / "setup.py").read_text()
    return re.findall(r'glob\("([^"]+)"\)', text)


def _installed_data_folders():
    """setup.py's data_files as ``{glob pattern: install folder relative to share/<pkg>}``."""
    text = (REPO / "setup.py").read_text()
    pairs = re.findall(r'\("share/" \+ package_name \+ "/([^"]+)", glob\("([^"]+)"\)\)', text)
    return {pattern: folder for folder, pattern in pairs}


def _call_name(call):
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _kw(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


@pytest.fixture(scope="module")
def py_launch():
    tree = ast.parse(PY_LAUNCH.read_text(), filename=str(PY_LAUNCH))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return tree, calls


def _resolve_path_join(expr, declared_defaults):
    """Evaluate the small subset of substitutions the launch file uses into a path relative to the package:
    PathJoinSubstitution([FindPackageShare(pkg), "a", "b"]) -> (pkg, "a/b")."""
    if isinstance(expr, ast.Call) and _call_name(expr) == "LaunchConfiguration":
        return _resolve_path_join(declared_defaults[expr.args[0].value], declared_defaults)
    assert isinstance(expr, ast.Call) and _call_name(expr) == "PathJoinSubstitution", ast.dump(expr)
    parts = expr.args[0].elts
    share = parts[0]
    assert _call_name(share) == "FindPackageShare"
    return share.args[0].value, "/".join(p.value for p in parts[1:])


def _arg_name(expr):
    """The launch argument of a ``LaunchConfiguration("name")``."""
    assert isinstance(expr, ast.Call) and _call_name(expr) == "LaunchConfiguration", ast.dump(expr)
    return expr.args[0].value


# Every topic of the node, and what the launch files remap it to: inputs by their own argument, outputs under the
# namespace argument they belong to (image_transport's sibling rule keeps <ns>/image beside <ns>/camera_info).
EXPECTED_REMAPS = {
    "image": "$(image)", "camera_info": "$(camera_info)",
    "depth/image": "$(depth)/image", "depth/camera_info": "$(depth)/camera_info",
    "depth/colored": "$(depth)/colored", "depth/scale": "$(depth)/scale",
    "points": "$(points)", "points/obstacles": "$(points)/obstacles", "points/ground": "$(points)/ground",
    "scan": "$(scan)", "rgb/image": "$(rgb)/image", "rgb/camera_info": "$(rgb)/camera_info",
}


def _check_remaps(remaps):
    assert remaps == EXPECTED_REMAPS
    # Compressed input follows the remapped image (<image>/compressed): no remapping of its own.
    assert "image/compressed" not in remaps


def test_python_launch_file(py_launch):
    tree, calls = py_launch
    imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"launch", "launch_ros"}
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)

    declared = {c.args[0].value: _kw(c, "default_value") for c in calls if _call_name(c) == "DeclareLaunchArgument"}
    used = {c.args[0].value for c in calls if _call_name(c) == "LaunchConfiguration"}
    assert used <= set(declared), f"undeclared launch arguments: {used - set(declared)}"

    assigned = {n.targets[0].id: n.value for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}

    def value(expr):
        """A keyword's value, through a variable of generate_launch_description."""
        return assigned[expr.id] if isinstance(expr, ast.Name) else expr

    (node,) = [c for c in calls if _call_name(c) == "Node"]
    (lifecycle,) = [c for c in calls if _call_name(c) == "LifecycleNode"]
    scripts = _console_scripts()
    from dna_depth_ros import depth_node, lifecycle_node
    # lifecycle:=true starts the managed node instead of the plain one; both take the same parameters and remaps.
    for action, module, condition in ((node, depth_node, "UnlessCondition"), (lifecycle, lifecycle_node,
                                                                              "IfCondition")):
        package = ast.literal_eval(_kw(action, "package"))
        executable = ast.literal_eval(_kw(action, "executable"))
        assert package == _package_name() == "dna_depth_ros"
        assert executable in scripts and scripts[executable] == f"{module.__name__}:main"
        assert callable(module.main)
        assert ast.literal_eval(_kw(action, "name")) == depth_node.NODE_NAME
        cond = _kw(action, "condition")
        assert _call_name(cond) == condition and cond.args[0].args[0].value == "lifecycle"
        assert ast.dump(value(_kw(action, "parameters"))) == ast.dump(value(_kw(node, "parameters")))
        assert ast.dump(value(_kw(action, "remappings"))) == ast.dump(value(_kw(node, "remappings")))
    assert ast.literal_eval(declared["lifecycle"]) == "false"

    params = value(_kw(node, "parameters")).elts
    pkg, rel = _resolve_path_join(params[0], declared)
    assert pkg == package and rel == "config/ros/dna_depth.yaml"
    assert (REPO / rel).is_file()
    # setup.py installs config/ros/*.yaml to share/<pkg>/config/ros: the same relative path as in the source tree.
    assert _installed_data_folders()["config/ros/*.yaml"] == "config/ros"
    assert "launch/*.launch.py" in _installed_data_globs()
    # weights are passed on top of the YAML
    assert isinstance(params[1], ast.Dict) and [k.value for k in params[1].keys] == ["weights"]

    remaps = {}
    for r in value(_kw(node, "remappings")).elts:
        to = r.elts[1]
        parts = to.elts if isinstance(to, ast.List) else [to]
        remaps[r.elts[0].value] = "".join(p.value if isinstance(p, ast.Constant) else "$(" + _arg_name(p) + ")"
                                          for p in parts)
    _check_remaps(remaps)


def test_xml_launch_file(py_launch):
    root = ET.parse(XML_LAUNCH).getroot()
    assert root.tag == "launch"
    args = {a.get("name"): a.get("default") for a in root.findall("arg")}
    (node,) = root.findall("node")
    (lifecycle,) = root.findall("lifecycle_node")
    from dna_depth_ros import depth_node
    scripts = _console_scripts()
    assert scripts[node.get("exec")] == "dna_depth_ros.depth_node:main"
    assert scripts[lifecycle.get("exec")] == "dna_depth_ros.lifecycle_node:main"
    assert node.get("unless") == lifecycle.get("if") == "$(var lifecycle)" and args["lifecycle"] == "false"
    text = XML_LAUNCH.read_text()
    used = set(re.findall(r"\$\(var ([a-z_]+)\)", text))
    assert used <= set(args), f"undeclared launch arguments: {used - set(args)}"
    m = re.fullmatch(r"\$\(find-pkg-share ([a-z_]+)\)/(.+)", args["params_file"])
    assert m and m.group(1) == _package_name() and (REPO / m.group(2)).is_file()
    def xml_remaps(element):
        return {r.get("from"): re.sub(r"\$\(var ([a-z_]+)\)", r"$(\1)", r.get("to")) for r in element.findall("remap")}

    for element in (node, lifecycle):
        assert element.get("pkg") == _package_name()
        assert element.get("name") == depth_node.NODE_NAME
        param_from = [p.get("from") for p in element.findall("param") if p.get("from")]
        assert param_from == ["$(var params_file)"]
        assert [p.get("name") for p in element.findall("param") if p.get("name")] == ["weights"]
        _check_remaps(xml_remaps(element))
        assert xml_remaps(element) == xml_remaps(node)
    assert "launch/*.launch.xml" in _installed_data_globs()

    # Both launch files take the same arguments.
    _, calls = py_launch
    py_args = {c.args[0].value for c in calls if _call_name(c) == "DeclareLaunchArgument"}
    assert py_args == set(args)


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_parameter_file_matches_the_declared_parameters():
    from dna_depth_ros import params as node_params

    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == [node_params.NODE_NAME]  # the node name the launch files give it
    params = _flatten(doc[node_params.NODE_NAME]["ros__parameters"])
    specs = {s.name: s for s in node_params.PARAMETERS}
    assert set(params) == set(specs), (set(params) ^ set(specs))
    for name, value in params.items():
        default = specs[name].default
        assert type(value) is type(default), f"{name}: YAML {type(value).__name__}, node {type(default).__name__}"
        assert value == default, f"{name}: YAML {value!r}, node default {default!r}"
        if specs[name].choices:
            assert value in specs[name].choices


def test_parameters_are_documented():
    from dna_depth_ros.params import PARAMETERS

    docs = (REPO / "docs" / "ros.md").read_text()
    for spec in PARAMETERS:
        assert f"`{spec.name}`" in docs, f"docs/ros.md does not document {spec.name}"
        assert spec.description, spec.name
    from dna_depth_ros.outputs import OUTPUT_TOPICS

    for topic in ("image", "<image>/compressed", "camera_info", "depth/scale/rearm", *OUTPUT_TOPICS.values()):
        assert f"| `{topic}` |" in docs, f"docs/ros.md's topic table does not list {topic}"
    assert NAV2_EXAMPLE.is_file()
    nav2 = yaml.safe_load(NAV2_EXAMPLE.read_text())
    assert "local_costmap" in nav2


def test_nav2_example_marks_and_clears_with_the_node_ranges():
    """The Nav2 example keeps clearing points (source heights wide), marks only above the floor (layer-level
    min_obstacle_height), never marks a clearing point (obstacle_max_range below the clearing distance) and
    raytraces up to it; the scan layer turns +inf into clearing rays up to scan.range_max."""
    from dna_depth_ros.params import PARAMETERS

    defaults = {s.name: s.default for s in PARAMETERS}
    clearing = defaults["points.clearing_distance"] or defaults["points.max_range"]
    nav2 = yaml.safe_load(NAV2_EXAMPLE.read_text())
    voxel = nav2["local_costmap"]["local_costmap"]["ros__parameters"]["voxel_layer"]
    source = voxel[voxel["observation_sources"]]
    assert source["data_type"] == "PointCloud2" and source["marking"] and source["clearing"]
    assert voxel["min_obstacle_height"] == pytest.approx(defaults["ground.min_height"])
    assert source["min_obstacle_height"] < 0 < voxel["min_obstacle_height"]
    assert source["max_obstacle_height"] > voxel["max_obstacle_height"]
    assert source["obstacle_max_range"] < clearing <= source["raytrace_max_range"]
    assert source["raytrace_max_range"] == pytest.approx(clearing)

    obstacle = nav2["global_costmap"]["global_costmap"]["ros__parameters"]["obstacle_layer"]
    scan = obstacle[obstacle["observation_sources"]]
    assert scan["data_type"] == "LaserScan" and scan["marking"] and scan["clearing"] and scan["inf_is_valid"]
    assert scan["raytrace_max_range"] == pytest.approx(defaults["scan.range_max"])
    assert scan["obstacle_max_range"] <= defaults["scan.range_max"]
