"""Headless runner: sends saved workflows to ComfyUI hosts, or runs them in-process.

Never imports torch (the embedded executor imports the node pack lazily).
"""
