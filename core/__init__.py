"""The leaf layer: what every app uses and that knows no app.

- :mod:`core.events`: domain events, sent after commit.
- :mod:`core.dicom`: DIMSE status codes, socket tuning and the fast C-FIND answer
  writer, the database worker pool of the DICOM listener, per-association counters,
  and DICOM value helpers (UID, DA, TM).
- :mod:`core.listeners`: start-up helpers shared by the listener commands.

Nothing here imports ``broker`` or an app (``worklist``, ``hl7v2``, ``mpps``, ...):
``make lint`` enforces it with import-linter (see ``docs/architecture.md``).
"""
