"""The `lite` backend: landmark-driven 2D animation of one portrait on the CPU (see backend.py).

audio_drive (what the mouth does) + motion (blinks, head, brows) -> warp (one remap map
per frame) + mouth (the inner mouth) -> backend.LiteBackend (frames in chunks).
"""
