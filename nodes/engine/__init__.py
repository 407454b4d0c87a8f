"""The engine: plain Python (numpy, and torch only where a backend needs it).

Data flows one way: image/audio -> prepared data (`prepare`) -> frames (a
backend) -> corrected frames (`lipsync`) -> file (`encode`). No module here
imports ComfyUI.
"""
