#!/usr/bin/env python3
"""Render config/fastdds/dna_depth_large_data.xml for other input topic names.

rmw_fastrtps applies a ``<data_reader profile_name="...">`` to the subscription whose fully-qualified ROS topic
name (after remapping and namespace) equals the profile name. The shipped profile names the launch files' default
inputs (/camera/image_rect, /camera/image_rect/compressed, /camera/camera_info); this writes a copy whose
data_reader profiles name the given topics instead. Nothing else changes.

    python benchmarks/transport/render_profile.py --topics /front/image_raw /front/camera_info -o /tmp/dna.xml
    FASTDDS_DEFAULT_PROFILES_FILE=/tmp/dna.xml ros2 run dna_depth_ros depth_node --ros-args ...

The same function is what the launch file should call (docs/transport.md shows the OpaqueFunction).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "config" / "fastdds" / "dna_depth_large_data.xml"
READER = ('    <data_reader profile_name="{topic}">\n'
          '      <unicastLocatorList><locator><udpv4/></locator></unicastLocatorList>\n'
          '    </data_reader>\n')


def fully_qualified(topic: str, namespace: str = "") -> str:
    """'/a/b' stays; 'b' -> '<namespace>/b' (the node's namespace); '~' names are not supported here."""
    if topic.startswith("~"):
        raise ValueError(f"private topic name '{topic}': give the fully-qualified name")
    if topic.startswith("/"):
        return topic
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{topic}"


def render(base_text: str, topics: list[str]) -> str:
    """The base profile with one UDP-only data_reader profile per topic (replacing the ones it had)."""
    for t in topics:
        if not t.startswith("/") or any(c in t for c in '<>&"'):
            raise ValueError(f"topic '{t}' must be a fully-qualified ROS name")
    text = re.sub(r'[ \t]*<data_reader profile_name="/[^"]*">.*?</data_reader>\n', "", base_text, flags=re.S)
    readers = "".join(READER.format(topic=t) for t in dict.fromkeys(topics))
    return text.replace("  </profiles>", readers + "  </profiles>", 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topics", nargs="+", required=True,
                    help="input topics of the node (image, image/compressed, camera_info), fully qualified or "
                         "relative to --namespace")
    ap.add_argument("--namespace", default="", help="the node's namespace, for relative topic names")
    ap.add_argument("--base", default=str(BASE), help="profile to start from")
    ap.add_argument("-o", "--out", help="output file (default: stdout)")
    a = ap.parse_args(argv)
    try:
        text = render(Path(a.base).read_text(), [fully_qualified(t, a.namespace) for t in a.topics])
    except (ValueError, OSError) as exc:
        print(f"render_profile: {exc}", file=sys.stderr)
        return 2
    if a.out:
        Path(a.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
