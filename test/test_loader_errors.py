"""Every loader error is one clear line: malformed safetensors headers, truncated files, bad metadata, ONNX files
that are not ONNX, broken training checkpoints, damaged images; the CLI exits 2 with one line and the node gives
its one FATAL line."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
from types import SimpleNamespace

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import dna_depth_core  # noqa: E402
from dna_depth_core import image_codecs, ros_images  # noqa: E402
from dna_depth_core.backends import OnnxBackend  # noqa: E402
from dna_depth_core.cli import main as cli_main  # noqa: E402
from dna_depth_core.io import checkpoint as ckpt_io  # noqa: E402
from dna_depth_core.io.errors import one_line  # noqa: E402
from dna_depth_core.io.official import load_official_depth  # noqa: E402
from dna_depth_core.io.safetensors_file import read_header  # noqa: E402
from dna_depth_core.preprocess import load_image  # noqa: E402

DOMAIN_ID = 160  # this module's own DDS domain (the node subprocess)


def st_bytes(header, body: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file's bytes: 8-byte little-endian header length, the JSON header, the body."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def assert_one_line(exc_info, *parts: str) -> str:
    text = str(exc_info.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text
    return text


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """A dna_lite0 64x96 checkpoint: (path, tensors, metadata)."""
    torch.manual_seed(0)
    net = dna_depth_core.build_model("dna_lite0", height=64, width=96).eval()
    path = tmp_path_factory.mktemp("lite") / "lite.safetensors"
    ckpt_io.save_checkpoint(net, str(path), provenance={"source": "test"})
    tensors, meta = ckpt_io.read_checkpoint(str(path))
    return path, tensors, meta


# ----------------------------------------------------------------------------------------------------------------
# safetensors headers (the two crafted headers of the issue, and the other ways a header can be wrong)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header, body, expected", [
    ({"x": 1}, b"", "tensor 'x': its entry is 1, not an object with dtype, shape and data_offsets"),
    ({"t": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "tensor 't': its entry has no 'data_offsets'"),
    ({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4,
     "shape [2] of F32 needs 8 bytes but data_offsets [0, 4] hold 4"),
    ({"t": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "dtype \"Q7\" is not one of"),
    ({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "not a list of non-negative"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, "not [begin, end]"),
    ({"t": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40, 0], "data_offsets": [0, 0]}}, b"", "64-bit sizes"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, b"\0" * 6, "overlaps the tensor before it"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "leaves a gap before it"),
    ({"__metadata__": {"format": 1}}, b"", "__metadata__ entry 'format' is 1, not a string"),
    ({"__metadata__": [1]}, b"", "__metadata__ is [1], not an object of strings"),
    ([1, 2], b"", "a JSON list, not an object"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', b"\0" * 4, "names 'a' twice"),
    (b'{"a": NaN}', b"", "holds NaN, which is not JSON"),
    (b"\xff\xfe{}", b"", "not UTF-8 text"),
    (b'{"a": ' + b"[" * 100000, b"", "nested too deeply"),
    ({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, "5 bytes after the last tensor"),
    ({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 10,
     "truncated (tensor data needs 16 bytes, file holds 10)"),
])
def test_malformed_headers_are_one_line_value_errors(tmp_path, header, body, expected):
    path = write(tmp_path / "bad.safetensors", st_bytes(header, body))
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(path))
    assert_one_line(err, f"checkpoint {path}: ", expected)


def test_header_length_and_size_problems(tmp_path):
    path = write(tmp_path / "h.safetensors", st_bytes({}, length=2 ** 63))
    with pytest.raises(ValueError) as err:
        read_header(path, "checkpoint")
    assert_one_line(err, str(path), "header claims 9223372036854775808 bytes, file has 10")
    big = write(tmp_path / "big.safetensors", struct.pack("<Q", 100_000_001))
    with open(big, "r+b") as f:
        f.truncate(8 + 100_000_001)  # sparse: the size without writing it
    with pytest.raises(ValueError) as err:
        read_header(big, "checkpoint")
    assert_one_line(err, "more than the 100000000 bytes allowed")
    os.remove(big)
    with pytest.raises(ValueError) as err:
        read_header(write(tmp_path / "e.safetensors", b"abc"), "checkpoint")
    assert_one_line(err, "file is empty or truncated (3 bytes)")
    with pytest.raises(ValueError, match="not a file"):
        read_header(tmp_path, "checkpoint")


def test_a_good_header_reads_as_written(tmp_path):
    """The checks accept what the safetensors writer produces; the entries are exact."""
    path = tmp_path / "ok.safetensors"
    save_file({"b": torch.zeros(2, 3, dtype=torch.float16), "a": torch.ones(5, dtype=torch.int64)}, str(path),
              metadata={"k": "v"})
    header = read_header(path)
    assert header.metadata == {"k": "v"}
    a, b = header.tensors["a"], header.tensors["b"]
    assert (a.dtype, a.shape, a.end - a.begin) == ("I64", (5,), 40)
    assert (b.dtype, b.shape, b.end - b.begin) == ("F16", (2, 3), 12)
    assert header.file_bytes == path.stat().st_size == 8 + header.header_bytes + 52


def test_truncated_checkpoint_anywhere_is_named(lite, tmp_path):
    path, _, _ = lite
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for cut, expected in ((5, "file is empty or truncated"), (8 + n // 2, "not a safetensors file, or truncated"),
                          (8 + n + 1000, "truncated (tensor data needs"), (len(data) - 1, "truncated")):
        bad = write(tmp_path / f"cut{cut}.safetensors", data[:cut])
        with pytest.raises(ValueError) as err:
            dna_depth_core.load_checkpoint(str(bad))
        assert_one_line(err, str(bad), expected)


def test_unreadable_file_is_a_value_error(lite, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = tmp_path / "locked.safetensors"
    shutil.copy(lite[0], path)
    path.chmod(0)
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(path))
    assert_one_line(err, str(path), "cannot be read (Permission denied)")


# ----------------------------------------------------------------------------------------------------------------
# Metadata that does not describe a network
# ----------------------------------------------------------------------------------------------------------------
def _with_meta(lite, tmp_path, name, **changes):
    _, tensors, meta = lite
    meta = dict(meta)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path = tmp_path / name
    save_file(tensors, str(path), metadata=meta)
    return path


def _config(lite, **changes):
    cfg = json.loads(lite[2]["config"])
    cfg.update(changes)
    return json.dumps(cfg)


@pytest.mark.parametrize("name, config, expected", [
    ("nojson", "{not json", "corrupt 'config' metadata, not JSON"),
    ("list", "[1, 2]", "bad 'config' metadata: depth config: expected an object of fields, got list"),
    ("strheight", {"height": "64"}, "height must be an integer, got '64'"),
    ("boolwidth", {"width": True}, "width must be an integer, got True"),
    ("nanrange", {"max_depth": 1e400}, "max_depth must be a finite number"),
    ("odd", {"height": 65}, "height: 65 is not a positive multiple of 32"),
    ("unknown", {"name": "dna_b9"}, "holds model 'dna_b9', which this version does not know"),
    ("encoder", {"encoder": "resnet50"}, "its config says model 'dna_lite0' with encoder 'resnet50'"),
    ("extra", {"colour": "red"}, "unknown fields ['colour']"),
])
def test_bad_config_metadata_is_named(lite, tmp_path, name, config, expected):
    text = config if isinstance(config, str) else _config(lite, **config)
    path = _with_meta(lite, tmp_path, f"{name}.safetensors", config=text)
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(path))
    assert_one_line(err, f"checkpoint {path}: ", expected)


def test_missing_config_and_foreign_format(lite, tmp_path):
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(_with_meta(lite, tmp_path, "noconf.safetensors", config=None)))
    assert_one_line(err, "no 'config' metadata")
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(_with_meta(lite, tmp_path, "fmt.safetensors", format="x\ny")))
    assert_one_line(err, "not a dna-depth checkpoint (format='x\\ny'")


def test_non_finite_and_wrongly_typed_weights_are_named(lite, tmp_path):
    _, tensors, meta = lite
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() > 1)
    bad = dict(tensors)
    bad[name] = tensors[name].clone()
    bad[name].view(-1)[3] = float("nan")
    save_file(bad, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(tmp_path / "nan.safetensors"))
    assert_one_line(err, f"tensor {name} holds NaN or infinite values")
    bad[name] = tensors[name].to(torch.int32)
    save_file(bad, str(tmp_path / "int.safetensors"), metadata=meta)
    with pytest.raises(ValueError) as err:
        dna_depth_core.load_checkpoint(str(tmp_path / "int.safetensors"))
    assert_one_line(err, f"tensor {name} is torch.int32, the model needs torch.float32")


def test_pose_metadata_is_checked(tmp_path):
    from dna_depth_core.models.pose import build_pose_model

    net = dna_depth_core.build_model("dna_lite0", height=64, width=96)
    path = tmp_path / "pose.safetensors"
    ckpt_io.save_checkpoint(net, str(path), pose_net=build_pose_model("small"))
    tensors, meta = ckpt_io.read_checkpoint(str(path))
    for changes, expected in (({"pose_model": "warp9"}, "pose_model 'warp9' unknown"),
                              ({"pose_output_scales": "{"}, "corrupt 'pose_output_scales' metadata, not JSON"),
                              ({"pose_output_scales": '{"output_scale": -1}'}, "bad 'pose_output_scales'")):
        bad = tmp_path / "bad_pose.safetensors"
        save_file(tensors, str(bad), metadata={**meta, **changes})
        with pytest.raises(ValueError) as err:
            ckpt_io.load_pose_network(str(bad))
        assert_one_line(err, str(bad), expected)
    bad = tmp_path / "prov.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "provenance": "{oops"})
    with pytest.raises(ValueError) as err:
        ckpt_io.checkpoint_metadata(str(bad))
    assert_one_line(err, "corrupt 'provenance' metadata, not JSON")


# ----------------------------------------------------------------------------------------------------------------
# ONNX files that are not ONNX, the authors' .pth files, the backends' path check
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, expected", [
    (b"\x08\x07", "not an ONNX model (no graph"),          # parses as a ModelProto with only ir_version set
    (b"\xff" * 64, "corrupt or truncated, not a readable ONNX file"),
    (b"hello, world\n" * 20, "ONNX model"),
])
def test_onnx_files_that_are_not_onnx(tmp_path, content, expected):
    path = write(tmp_path / "m.onnx", content)
    with pytest.raises(ValueError) as err:
        OnnxBackend(str(path), device="cpu")
    assert_one_line(err, str(path), expected)


def test_load_network_names_what_it_was_given():
    from dna_depth_core.backends.base import load_network

    for value in (None, "", 42):
        with pytest.raises(ValueError, match="no checkpoint path given"):
            load_network(value)


def test_official_pth_problems_are_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"height": 192, "width": 640, 3: torch.zeros(1)}, src / "encoder.pth")
    torch.save({}, src / "depth.pth")
    with pytest.raises(ValueError) as err:
        load_official_depth(str(src), "dna_b0")
    assert_one_line(err, str(src / "encoder.pth"), "key 3 is not a tensor name")
    torch.save({"height": "tall", "width": 640}, src / "encoder.pth")
    with pytest.raises(ValueError) as err:
        load_official_depth(str(src), "dna_b0")
    assert_one_line(err, "'height' is 'tall', not a positive multiple of 32")
    torch.save({"height": 192, "width": 640}, src / "encoder.pth")
    torch.save({"iconv1_0.weight": [1, 2]}, src / "depth.pth")
    with pytest.raises(ValueError) as err:
        load_official_depth(str(src), "dna_b0")
    assert_one_line(err, str(src / "depth.pth"), "entry 'iconv1_0.weight' is a list, not a tensor")
    (src / "depth.pth").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError) as err:
        load_official_depth(str(src), "dna_b0")
    assert_one_line(err, str(src / "depth.pth"), "cannot be read as a tensor dict")


def test_one_line_folds_and_cuts():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line(ValueError("x\ny")) == "ValueError: x y"
    assert one_line("z" * 400, 20) == "z" * 17 + "..."


# ----------------------------------------------------------------------------------------------------------------
# The CLI and the node: one line each
# ----------------------------------------------------------------------------------------------------------------
def test_cli_reports_loader_errors_in_one_line(tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    crafted = {"x1": st_bytes({"x": 1}), "nooff": st_bytes({"t": {"dtype": "F32", "shape": [1]}}, b"\0" * 4)}
    for name, data in crafted.items():
        path = write(tmp_path / f"{name}.safetensors", data)
        code = cli_main(["predict", "--weights", str(path), "--input", str(images), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"dna-depth predict: error: checkpoint {path}: "), err


def test_cli_reports_os_errors_in_one_line(tmp_path, capsys):
    blocker = write(tmp_path / "a_file", b"")
    code = cli_main(["synth", "--out", str(blocker / "run"), "--frames", "2"])  # a folder inside a file
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("dna-depth synth: error: [Errno 20] Not a directory")


def test_node_gives_one_fatal_line_for_crafted_weights(tmp_path):
    from dna_depth_ros.harness import NodeProcess

    path = write(tmp_path / "crafted.safetensors", st_bytes({"x": 1}))
    with NodeProcess(params={"weights": path}, domain_id=DOMAIN_ID) as node:
        code, out = node.wait(timeout=180)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1, out
    assert "Traceback" not in out, out
    fatal = [line for line in lines if "FATAL" in line]
    assert len(fatal) == 1 and f"cannot start: checkpoint {path}: tensor 'x'" in fatal[0], out
    assert len(lines) <= 2, out  # the FATAL line (and at most one line of rclpy's own shutdown notice)


# ----------------------------------------------------------------------------------------------------------------
# Damaged images: named, and nothing on stderr
# ----------------------------------------------------------------------------------------------------------------
def _frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)


def test_damaged_jpeg_is_refused_without_stderr(tmp_path, capfd):
    jpg = cv2.imencode(".jpg", _frame())[1].tobytes()
    cut = jpg[: len(jpg) // 2] + b"\xff\xd9"  # the end marker put back: libjpeg fills the rest with grey
    with pytest.raises(ros_images.ConversionError) as err:
        ros_images.decode_compressed(SimpleNamespace(format="jpeg", data=cut))
    assert_one_line(err, "corrupt JPEG data: premature end of data segment", "format 'jpeg'")
    path = write(tmp_path / "cut.jpg", cut)
    with pytest.raises(FileNotFoundError) as err:
        load_image(path)
    assert_one_line(err, str(path), "corrupt JPEG data: premature end of data segment")
    png = cv2.imencode(".png", _frame())[1].tobytes()
    at = png.index(b"IDAT") + 20
    flipped = png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]
    with pytest.raises(ros_images.ConversionError) as err:
        ros_images.decode_compressed(SimpleNamespace(format="png", data=flipped))
    assert_one_line(err, "could not decode CompressedImage: corrupt or truncated png", "libpng error:")
    assert capfd.readouterr().err == ""


def test_padded_jpeg_is_kept_and_its_note_throttled(caplog, capfd, monkeypatch):
    """Junk before the end-of-image marker (as many USB cameras send): the image is intact and decoded; libjpeg's
    note goes to the log, once per interval, with a count of the ones held back."""
    bgr = _frame()
    jpg = cv2.imencode(".jpg", bgr)[1].tobytes()
    padded = jpg[:-2] + b"\x41" * 50 + b"\xff\xd9"
    monkeypatch.setattr(image_codecs, "_reported", {})
    with caplog.at_level(logging.WARNING, logger="dna_depth_core.image_codecs"):
        for _ in range(3):
            rgb = ros_images.decode_compressed(SimpleNamespace(format="jpeg", data=padded))
            np.testing.assert_array_equal(rgb, cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg, np.uint8), 1),
                                                            cv2.COLOR_BGR2RGB))
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and re.search(r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9", notes[0]), notes
    assert capfd.readouterr().err == ""
    # After the interval the next one is logged with the count of those held back.
    later = image_codecs.report("x", ["Corrupt JPEG data: 7 extraneous bytes before marker 0xd9"],
                                now=1e12)
    assert later == 1 and "(2 similar message(s) held back" in caplog.records[-1].getMessage()


def test_other_threads_stderr_is_not_swallowed(capfd):
    """Text written to stderr while a decode has it redirected is passed on (here: written from the decode call's
    own thread, the worst case)."""
    def writer():
        os.write(2, b"a line of someone else\n")
        return 1

    assert image_codecs.captured_call(writer) == (1, [])
    assert capfd.readouterr().err == "a line of someone else\n"


# ----------------------------------------------------------------------------------------------------------------
# Training checkpoints (resume): broken JSON state, malformed optimizer and RNG files
# ----------------------------------------------------------------------------------------------------------------
def _nets_and_optimizer():
    from dna_depth_core.models.pose import build_pose_model

    torch.manual_seed(1)
    depth = dna_depth_core.build_model("dna_lite0", height=64, width=96)
    pose = build_pose_model("small")
    opt = torch.optim.AdamW([{"params": list(depth.parameters())}, {"params": list(pose.parameters()),
                                                                    "lr_scale": 0.5}], lr=1e-4)
    return depth, pose, opt


@pytest.fixture(scope="module")
def train_ckpt(tmp_path_factory):
    """A training checkpoint folder (weights, optimizer after one step, trainer state, RNG state)."""
    from dna_depth_core.training.config import TrainConfig
    from dna_depth_core.training.distributed import DistEnv
    from dna_depth_core.training.state import EpochLRSchedule, save_checkpoint_folder

    depth, pose, opt = _nets_and_optimizer()
    for p in list(depth.parameters()) + list(pose.parameters()):
        p.grad = torch.full_like(p, 0.01)
    opt.step()
    cfg = TrainConfig(model="dna_lite0", pretrained=None, pose_model="small", height=64, width=96)
    out = tmp_path_factory.mktemp("run")
    state = {"epoch": 0, "step": 1, "step_in_epoch": 1, "steps_per_epoch": 5, "nonfinite_streak": 0,
             "skipped_total": 0, "schedule": EpochLRSchedule(opt, 1e-4, [35], 0.1).state_dict(), "scaler": {}}
    return save_checkpoint_folder(DistEnv(), str(out), cfg, depth, pose, opt, state)


def _broken_copy(train_ckpt, tmp_path, name: str, edit):
    """A copy of the checkpoint folder with the file ``name`` edited by ``edit(path)``."""
    folder = tmp_path / "step_00000001"
    shutil.copytree(train_ckpt, folder)
    edit(folder / name)
    return folder


def _set_state(**changes):
    def edit(path):
        state = json.loads(path.read_text())
        for key, value in changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        path.write_text(json.dumps(state))
    return edit


@pytest.mark.parametrize("name, edit, expected", [
    ("trainer_state.json", lambda p: p.write_text('{"format": "dna-depth-train/1", "step": '), "corrupt JSON"),
    ("trainer_state.json", lambda p: p.write_bytes(b"\xff\xfe\x00"), "corrupt JSON (not UTF-8 text"),
    ("trainer_state.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object, found a list"),
    ("trainer_state.json", _set_state(schedule=None), "'schedule' is None"),
    ("trainer_state.json", _set_state(step="7"), "'step' is '7', expected an integer >= 0"),
    ("trainer_state.json", _set_state(world_size=0), "'world_size' is 0, expected an integer >= 1"),
    ("trainer_state.json", _set_state(scaler={"scale": 1.0}), "'scaler' is {'scale': 1.0}"),
    ("trainer_state.json", _set_state(optimizer={"param_groups": 3}), "'optimizer' is not"),
    ("trainer_state.json", _set_state(format="other/9"), "unknown trainer state format 'other/9'"),
    ("optimizer.safetensors", lambda p: p.write_bytes(st_bytes({"x": 1})), "optimizer state"),
    ("optimizer.safetensors", lambda p: save_file({"state.0.exp_avg": torch.zeros(3)}, str(p)),
     "'state.0.exp_avg' has shape (3,)"),
    ("optimizer.safetensors", lambda p: save_file({"exp_avg": torch.zeros(3)}, str(p)),
     "tensor 'exp_avg' is not named state.<index>.<name>"),
    ("optimizer.safetensors", lambda p: save_file({"state.99999.step": torch.zeros(())}, str(p)),
     "state for parameter 99999"),
    ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:1000]), "model.safetensors"),
])
def test_broken_training_checkpoint_is_named(train_ckpt, tmp_path, name, edit, expected):
    from dna_depth_core.training.state import load_checkpoint_folder

    folder = _broken_copy(train_ckpt, tmp_path, name, edit)
    depth, pose, opt = _nets_and_optimizer()
    before = [p.detach().clone() for p in depth.parameters()]
    with pytest.raises(ValueError) as err:
        load_checkpoint_folder(str(folder), depth, pose, opt)
    text = assert_one_line(err, expected)
    assert str(folder) in text
    # Nothing was half-loaded: the networks keep their weights.
    assert all(torch.equal(a, b) for a, b in zip(before, depth.parameters()))


def test_optimizer_group_settings_of_the_wrong_kind_are_named(train_ckpt, tmp_path):
    from dna_depth_core.training.state import load_checkpoint_folder

    def edit(path):
        state = json.loads(path.read_text())
        state["optimizer"]["param_groups"][0]["lr"] = "fast"
        path.write_text(json.dumps(state))

    folder = _broken_copy(train_ckpt, tmp_path, "trainer_state.json", edit)
    with pytest.raises(ValueError) as err:
        load_checkpoint_folder(str(folder), *_nets_and_optimizer())
    assert_one_line(err, "optimizer group 0 'lr' is 'fast'")


def test_the_intact_checkpoint_loads_and_broken_rng_or_latest_are_named(train_ckpt, tmp_path):
    from dna_depth_core.training.state import load_checkpoint_folder, resolve_checkpoint, restore_rank_rng

    depth, pose, opt = _nets_and_optimizer()
    folder, state = load_checkpoint_folder(train_ckpt, depth, pose, opt)
    assert state["step"] == 1 and len(opt.state) == len(list(depth.parameters())) + len(list(pose.parameters()))
    restore_rank_rng(folder, 0)
    broken = _broken_copy(train_ckpt, tmp_path, "rng_rank0.json", lambda p: p.write_text('{"python": 3}'))
    with pytest.raises(ValueError) as err:
        restore_rank_rng(str(broken), 0)
    assert_one_line(err, str(broken / "rng_rank0.json"), "not the RNG state this version writes")
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / "latest").write_text("../../../etc\n")
    with pytest.raises(ValueError) as err:
        resolve_checkpoint(str(tmp_path / "run"))
    assert_one_line(err, "latest is corrupt (holds '../../../etc'")
    (root / "latest").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError) as err:
        resolve_checkpoint(str(tmp_path / "run"))
    assert_one_line(err, "latest is corrupt (not a checkpoint folder name)")


def test_train_resume_from_a_broken_state_is_one_cli_line(train_ckpt, tmp_path, capsys):
    folder = _broken_copy(train_ckpt, tmp_path, "trainer_state.json", lambda p: p.write_text("{oops"))
    code = cli_main(["train", "--resume", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("dna-depth train: error: ") and "trainer_state.json: corrupt JSON" in err, err
