"""What the Compare and Quality widgets measure, without Qt: usable from scripts and tests headless.

Each task takes a ``TaskProgress`` (``progress(done, total, description)`` and ``check()``, both of which
raise :class:`~napari_pathup.measure.tasks.TaskCancelledError` once the caller cancelled) and returns a
result with a rendered plot; the widgets only run them in a worker and show the result.
"""
