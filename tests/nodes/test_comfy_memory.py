"""The sonic backend under ComfyUI's memory management, with a stand-in for ComfyUI.

ComfyUI frees memory for a model by unloading the models it knows (ModelPatcher
entries in comfy.model_management.current_loaded_models). The stand-in below has
the same API shape as ComfyUI 0.3.6x (load_models_gpu, free_memory,
unload_all_models, soft_empty_cache, LoadedModel, ModelPatcher with load_device /
offload_device / detach / partially_load) and the same weak hold on patchers, and
logs what is asked of it. Outside ComfyUI none of it is touched.
"""

from __future__ import annotations

import sys
import types
import weakref

import numpy as np
import pytest
import torch
from comfyui_sonic.nodes.engine.errors import SonicOutOfMemoryError
from comfyui_sonic.nodes.engine.progress import NullProgress
from comfyui_sonic.nodes.engine.sonic import write_random_checkpoint
from comfyui_sonic.nodes.engine.sonic.backend import SonicBackend
from comfyui_sonic.nodes.engine.sonic.random_checkpoint import random_prepared_data
from comfyui_sonic.nodes.engine.types import GenerationParams, SonicData
from comfyui_sonic.nodes.model_loader import SONIC_ModelLoader

SIZE = 64


class FakeComfy:
    """comfy.model_management + comfy.model_patcher as far as a custom model needs them."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.log: list[tuple] = []
        mm = types.ModuleType("comfy.model_management")
        mm.current_loaded_models = []
        mm.get_torch_device = lambda: self.device
        mm.load_models_gpu = self.load_models_gpu
        mm.free_memory = self.free_memory
        mm.unload_all_models = lambda: self.free_memory(1e30, self.device)
        mm.soft_empty_cache = lambda force=False: self.log.append(("soft_empty_cache",))
        mm.throw_exception_if_processing_interrupted = lambda: None
        mm.LoadedModel = LoadedModel
        mp = types.ModuleType("comfy.model_patcher")
        mp.ModelPatcher = ModelPatcher
        package = types.ModuleType("comfy")
        package.model_management = mm
        package.model_patcher = mp
        self.mm, self.mp, self.package = mm, mp, package

    def install(self, monkeypatch) -> FakeComfy:
        monkeypatch.setitem(sys.modules, "comfy", self.package)
        monkeypatch.setitem(sys.modules, "comfy.model_management", self.mm)
        monkeypatch.setitem(sys.modules, "comfy.model_patcher", self.mp)
        return self

    def load_models_gpu(
        self,
        models,
        memory_required=0,
        force_patch_weights=False,
        minimum_memory_required=None,
        force_full_load=False,
    ):
        self.log.append(("load_models_gpu", list(models), memory_required, force_full_load))
        loaded = self.mm.current_loaded_models
        wanted = [next((m for m in loaded if m.model is p), None) or LoadedModel(p) for p in models]
        for device in {m.device for m in wanted}:
            # this stand-in's GPU holds one model: everything else on it is unloaded
            self.free_memory(memory_required, device, keep_loaded=wanted)
        for m in wanted:
            if m in loaded:
                loaded.remove(m)
            m.model_load()
            loaded.insert(0, m)

    def free_memory(self, memory_required, device, keep_loaded=()):
        loaded = self.mm.current_loaded_models
        unloaded = [m for m in loaded if m.device == device and m not in keep_loaded]
        for m in unloaded:
            self.log.append(("unload", m.model))
            m.model_unload()
            loaded.remove(m)
        return unloaded


class ModelPatcher:
    """Wraps a torch module; ComfyUI moves it between load_device and offload_device."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size or sum(t.numel() * t.element_size() for t in model.state_dict().values())
        if getattr(model, "device", None) is None:
            model.device = offload_device
        model.model_loaded_weight_memory = 0

    def model_size(self):
        return self.size

    def loaded_size(self):
        return self.model.model_loaded_weight_memory

    def current_loaded_device(self):
        return self.model.device

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        before = self.loaded_size()
        self.model.to(device_to)
        self.model.device = device_to
        self.model.model_loaded_weight_memory = self.size
        return self.size - before

    def detach(self, unpatch_all=True):
        self.model.to(self.offload_device)
        self.model.device = self.offload_device
        self.model.model_loaded_weight_memory = 0
        return self.model


class LoadedModel:
    """An entry of current_loaded_models: holds its patcher weakly, as ComfyUI does."""

    def __init__(self, model):
        self._model = weakref.ref(model)
        self.device = model.load_device

    @property
    def model(self):
        return self._model()

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        self.model.partially_load(self.device, 1e32)
        return self.model.model

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.detach(unpatch_weights)
        return True

    def __eq__(self, other):
        return self.model is other.model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("sonic_tiny"), "tiny", seed=0)


def load_sonic(checkpoint) -> SonicBackend:
    """What a workflow does: SONIC_ModelLoader with backend sonic on an explicit folder."""
    (model,) = SONIC_ModelLoader().load(
        backend="sonic", dtype="fp32", device="cpu", enable_rife=False, model_dir=str(checkpoint["model_dir"])
    )["result"]
    return model.backend


def prepared(duration: float = 0.5) -> SonicData:
    return random_prepared_data(duration, SIZE)


PARAMS = GenerationParams(seed=1, inference_steps=2, fps=25.0)


def run(backend: SonicBackend, data: SonicData) -> np.ndarray:
    return np.concatenate(list(backend.generate(data, PARAMS, NullProgress(PARAMS.inference_steps))))


def all_parameters(backend: SonicBackend) -> set[int]:
    m = backend.models
    nets = [m.unet, m.vae, m.clip, m.whisper, m.audio_to_tokens, m.audio_to_bucket, m.rife]
    return {id(p) for net in nets if net is not None for p in net.parameters()}


def test_loading_registers_every_network_as_one_comfy_model(monkeypatch, tiny_checkpoint):
    comfy = FakeComfy(torch.device("cpu")).install(monkeypatch)
    backend = load_sonic(tiny_checkpoint)

    patcher = backend.memory_manager.patcher
    assert isinstance(patcher, ModelPatcher)
    assert patcher.load_device == backend.device and patcher.offload_device == torch.device("cpu")
    assert {id(p) for p in patcher.model.parameters()} == all_parameters(backend)
    # registered, not loaded: the loader node moves nothing onto the device
    assert comfy.mm.current_loaded_models == [] and comfy.log == []


def test_generate_asks_comfy_to_load_the_model_before_any_network_runs(monkeypatch, tiny_checkpoint):
    comfy = FakeComfy(torch.device("cpu")).install(monkeypatch)
    backend = load_sonic(tiny_checkpoint)
    patcher = backend.memory_manager.patcher
    backend.models.unet.register_forward_pre_hook(lambda *_: comfy.log.append(("unet",)))
    other = ModelPatcher(torch.nn.Linear(4, 4), torch.device("cpu"), torch.device("cpu"))
    comfy.mm.load_models_gpu([other])  # e.g. a checkpoint another node used before
    comfy.log.clear()

    frames = run(backend, prepared())

    assert frames.shape == (prepared().frame_count(PARAMS.fps), SIZE, SIZE, 3)
    name, models, memory_required, full = comfy.log[0]
    assert (name, models, full) == ("load_models_gpu", [patcher], True)
    assert memory_required == backend.working_memory_bytes(prepared()) > 0
    assert ("unload", other) in comfy.log  # ComfyUI made room for ours
    assert comfy.log.index(("unet",)) > 0
    assert [m.model for m in comfy.mm.current_loaded_models] == [patcher]


def test_comfy_unloading_moves_the_networks_off_and_the_next_generate_works(monkeypatch, tiny_checkpoint):
    comfy = FakeComfy(torch.device("cpu")).install(monkeypatch)
    backend = load_sonic(tiny_checkpoint)
    patcher = backend.memory_manager.patcher
    first = run(backend, prepared())
    assert patcher.current_loaded_device() == patcher.load_device

    comfy.mm.unload_all_models()  # what ComfyUI's "free memory" button does

    assert ("unload", patcher) in comfy.log
    assert patcher.current_loaded_device() == patcher.offload_device
    assert comfy.mm.current_loaded_models == []
    places = []
    monkeypatch.setattr(backend, "_place", places.append)  # the backend itself must move nothing
    comfy.log.clear()
    assert np.array_equal(run(backend, prepared()), first)
    assert comfy.log[0][:2] == ("load_models_gpu", [patcher]) and places == []


def test_offload_goes_through_comfy(monkeypatch, tiny_checkpoint):
    comfy = FakeComfy(torch.device("cpu")).install(monkeypatch)
    backend = load_sonic(tiny_checkpoint)
    run(backend, prepared())

    backend.offload()

    assert ("unload", backend.memory_manager.patcher) not in comfy.log  # not evicted by another model
    assert comfy.mm.current_loaded_models == [] and ("soft_empty_cache",) in comfy.log
    assert backend.memory_manager.patcher.current_loaded_device() == torch.device("cpu")


def test_out_of_memory_inside_comfy_unloads_models_and_empties_its_cache(monkeypatch, tiny_checkpoint):
    comfy = FakeComfy(torch.device("cpu")).install(monkeypatch)
    backend = load_sonic(tiny_checkpoint)
    patcher = backend.memory_manager.patcher

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    unet = backend.models.unet
    monkeypatch.setattr(unet, "forward", exhausted)
    with pytest.raises(SonicOutOfMemoryError, match="512"):
        run(backend, prepared())
    monkeypatch.delattr(unet, "forward")

    assert ("unload", patcher) in comfy.log and comfy.log[-1] == ("soft_empty_cache",)
    assert comfy.mm.current_loaded_models == []
    assert len(run(backend, prepared())) == prepared().frame_count(PARAMS.fps)  # healthy for the next prompt


def test_outside_comfy_the_backend_places_its_networks_itself(monkeypatch, tiny_checkpoint):
    # `import comfy...` raises ImportError, as without ComfyUI
    monkeypatch.setitem(sys.modules, "comfy", None)
    backend = load_sonic(tiny_checkpoint)

    assert backend.memory_manager is None
    assert len(run(backend, prepared())) == prepared().frame_count(PARAMS.fps)
    backend.offload()  # a no-op on the CPU, and no ComfyUI call
    assert sys.modules["comfy"] is None


def test_auto_device_follows_comfyui_inside_it_and_torch_outside(monkeypatch):
    from comfyui_sonic.nodes import comfy_bridge

    monkeypatch.setitem(sys.modules, "comfy", None)
    monkeypatch.setitem(sys.modules, "comfy.model_management", None)
    assert comfy_bridge.torch_device("auto") == "auto"
    assert comfy_bridge.torch_device("cuda:1") == "cuda:1"
    fake = types.ModuleType("comfy.model_management")
    fake.get_torch_device = lambda: torch.device("cpu")
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", fake)
    assert comfy_bridge.torch_device("auto") == "cpu"
