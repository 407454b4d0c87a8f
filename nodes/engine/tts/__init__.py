"""Text to speech for the pack (plain Python, no ComfyUI): espeak-ng locally, or the user's HTTP service.

from comfyui_sonic.nodes.engine.tts import EspeakBackend, SpeechRequest, synthesize
speech = synthesize(SpeechRequest("Hello there. Welcome!", voice="en-us"), EspeakBackend())
speech.audio  # engine Audio: float32 [1, n] at the backend's rate
"""

from .espeak import EspeakBackend
from .http import HttpBackend, HttpOptions
from .synth import Speech, SpeechRequest, default_cache, synthesize

BACKENDS = ("espeak-ng", "http")

__all__ = [
    "BACKENDS",
    "EspeakBackend",
    "HttpBackend",
    "HttpOptions",
    "Speech",
    "SpeechRequest",
    "default_cache",
    "synthesize",
]
