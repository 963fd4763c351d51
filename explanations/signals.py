"""What ingest tells the apps above it, without knowing them.

predictions_stored is sent after a transaction that stored new predictions commits, with
`version_ids`, the model versions they were scored by. Monitoring listens and refreshes its default
summaries of those versions (debounced), so the dashboard's first view reads a fresh cache.
"""

from django.dispatch import Signal

predictions_stored = Signal()
