"""One thin click script per DVC stage, run as modules from the repository root (`python -m stages.<name>`,
as dvc.yaml does) so that they import the `phisum` package next to them, also in a queued experiment's copy."""
