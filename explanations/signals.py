"""What ingest tells the apps above it, without knowing them.

predictions_stored is sent after a transaction that stored new predictions commits, with
`version_ids`, the model versions they were scored by. Monitoring listens and refreshes its default
summaries of those versions (debounced), so the dashboard's first view reads a fresh cache.

explanations_stored is sent after a transaction that stored a batch of explanations commits, with
`version_ids`. Monitoring listens too: the summaries' attribution drift counts the explanations
ready when they were computed, so the last batch of a backlog refreshes them once more.
"""

from django.dispatch import Signal

predictions_stored = Signal()
explanations_stored = Signal()
