"""The clinician UI keeps no tables of its own: it reads patients, explanations and the registry."""
