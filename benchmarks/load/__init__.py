"""Load, soak and fault tests of the whole service (issue 10); see README.md in this folder."""
