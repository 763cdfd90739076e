"""One run of a manifest.

- ``session``: ``run_manifest``, the whole sequence of a run;
- ``selection``: what a run has to do (pure);
- ``runner``: the task group and the slots, and the one way to stop;
- ``submit``, ``follow``, ``download``, ``settle``: the units a job goes through;
- ``writer``: the run's ledger writes; ``retry``: the one retry loop;
- ``options``, ``events``: what a run is told, and what it tells as it goes.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
