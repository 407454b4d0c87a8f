"""The pack as ComfyUI sees it: registration, schemas, and an import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import comfyui_sonic
import pytest
from comfyui_sonic.nodes import comfy_bridge

ROOT = Path(__file__).resolve().parent.parent
NODES = {
    "SONIC_ModelLoader",
    "SONIC_PreData",
    "SONIC_Inference",
    "LipSyncCorrect",
    "VideoEncode",
    "SONIC_TextToSpeech",
}


def test_the_six_nodes_are_registered_with_display_names():
    assert set(comfyui_sonic.NODE_CLASS_MAPPINGS) == NODES
    assert set(comfyui_sonic.NODE_DISPLAY_NAME_MAPPINGS) == NODES
    assert (ROOT / comfyui_sonic.WEB_DIRECTORY / "sonic.js").is_file()


def test_every_node_is_a_v1_class_in_category_sonic_with_tooltips_everywhere():
    for name, cls in comfyui_sonic.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "Sonic", name
        assert callable(getattr(cls, cls.FUNCTION)), name
        assert isinstance(cls.RETURN_TYPES, tuple) and cls.RETURN_TYPES, name
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, input_spec in spec.get(section, {}).items():
                assert len(input_spec) > 1 and input_spec[1].get("tooltip"), (
                    f"{name}.{input_name} has no tooltip"
                )


def test_importing_the_pack_does_not_import_torch():
    # A fresh interpreter, loading the folder the way ComfyUI does (package from __init__.py).
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("ComfyUI_Sonic", {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
mod = importlib.util.module_from_spec(spec); sys.modules["ComfyUI_Sonic"] = mod; spec.loader.exec_module(mod)
print(len(mod.NODE_CLASS_MAPPINGS), "torch" in sys.modules, "diffusers" in sys.modules, "dlib" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["6", "False", "False", "False"]


def test_registers_the_sonic_model_folder_inside_comfyui(monkeypatch, tmp_path):
    calls = []
    fake = types.SimpleNamespace(models_dir=str(tmp_path), add_model_folder_path=lambda *a: calls.append(a))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    comfy_bridge.register_model_folder()
    assert calls == [("sonic", str(tmp_path / "sonic"))]


def test_outside_comfyui_model_folder_registration_is_a_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # import raises ImportError
    comfy_bridge.register_model_folder()


def test_pyproject_declares_comfy_registry_metadata_and_a_runner_extra():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["tool"]["comfy"]["PublisherId"]
    assert "runner" in meta["project"]["optional-dependencies"]
    assert not any(dep.startswith("torch") for dep in meta["project"]["dependencies"])
    assert meta["project"]["scripts"]["sonic-runner"] == "comfyui_sonic.runner.cli:main"
    listed = set(meta["tool"]["setuptools"]["packages"])
    on_disk = {
        "comfyui_sonic" + ("." + ".".join(p.parent.relative_to(ROOT).parts) if p.parent != ROOT else "")
        for p in ROOT.glob("**/__init__.py")
        if ".venv" not in p.parts and "tests" not in p.parts and "build" not in p.parts
    }
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


def test_web_extension_is_valid_enough_to_load():
    text = (ROOT / "web" / "sonic.js").read_text()
    assert "registerExtension" in text and json.dumps("LipSyncCorrect") in text


def test_inside_comfyui_the_demo_inputs_land_in_the_input_folder_once(monkeypatch, tmp_path):
    fake = types.SimpleNamespace(get_input_directory=lambda: str(tmp_path / "input"))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    comfy_bridge.install_example_inputs()
    copied = sorted(p.name for p in (tmp_path / "input").iterdir())
    assert copied == ["sonic_example_face.jpg", "sonic_example_speech.wav"]
    (tmp_path / "input" / "sonic_example_face.jpg").write_bytes(b"the user's own file")
    comfy_bridge.install_example_inputs()
    assert (tmp_path / "input" / "sonic_example_face.jpg").read_bytes() == b"the user's own file"


def test_templates_name_the_demo_inputs_the_pack_ships():
    for path in (ROOT / "workflows" / "api").glob("*_api.json"):
        prompt = json.loads(path.read_text())
        names = {
            n["inputs"].get("image") or n["inputs"].get("audio")
            for n in prompt.values()
            if n["class_type"] in ("LoadImage", "LoadAudio")
        }
        shipped = {p.name for p in (ROOT / "demo").glob("sonic_example_*")}
        if "_text_" in path.name:  # the speech comes from SONIC_TextToSpeech, not a clip
            shipped = {n for n in shipped if not n.endswith(".wav")}
        assert names == shipped, path.name


def test_the_wheel_ships_templates_web_and_demo_files_without_setuptools_warnings(tmp_path):
    # Built from a copy so the check leaves no build/ or *.egg-info in the checkout. The data folders
    # have no __init__.py; unless pyproject.toml lists them as packages setuptools warns that
    # "comfyui_sonic.demo is absent from the packages configuration" (and would one day drop them).
    import importlib.util
    import shutil
    import zipfile

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment (pip wheel needs it offline)")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "__init__.py"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("nodes", "runner", "demo", "web", "workflows"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-v"]
        + ["-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    assert "absent from the `packages` configuration" not in log
    assert "would be ignored" not in log.lower()
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"comfyui_sonic/{p.relative_to(ROOT).as_posix()}"
        for pattern in (
            "workflows/*.json",
            "workflows/*.jpg",
            "workflows/api/*.json",
            "web/*.js",
            "demo/*",
            "runner/store/migrations/*.*",
            "runner/store/migrations/versions/*.py",
        )
        for p in ROOT.glob(pattern)
    }
    assert len(expected) > 10 and expected <= names, sorted(expected - names)
