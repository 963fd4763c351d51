"""What the registry tells the apps above it, without knowing them.

version_registered is sent (after the registering transaction commits) with `version`, a newly
registered ModelVersion. The explanation side listens and fits the version's explanation profile.
"""

from django.dispatch import Signal

version_registered = Signal()
