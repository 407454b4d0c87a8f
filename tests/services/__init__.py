"""Private instances of the real servers that fleet-mode tests need (PostgreSQL, ...).

Each starts on loopback, on a free non-default port, in its own temporary folder, and is
stopped and removed at the end. In CI (``CI`` set) a server that cannot start fails the
test; on a developer machine without the Debian package the test is skipped with the
command that installs it (``sudo scripts/install_services.sh``), never silently.
"""
