"""ONC HTI-1 source attributes of a predictive decision support intervention (45 CFR
170.315(b)(11)(iv)(B)), as far as a bundle and the registry can supply them.

bundle.yaml may carry an optional `source_attributes` mapping whose keys are the ids below (text, or
a list of text for citations); the registry adds what it computed itself (performance and subgroup
figures on the reference set, which inputs are protected characteristics). Anything else is
"not provided".
"""

from __future__ import annotations

NOT_PROVIDED = "not provided"

# (category id, title, [(attribute id, title)]): the order of the rule.
CATEGORIES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "details_and_output",
        "Details and output of the intervention",
        (
            ("developer", "Name and contact information for the intervention developer"),
            ("funding_source", "Funding source of the intervention's development"),
            ("output_description", "Description of the value that the intervention produces as an output"),
            (
                "output_type",
                "Whether the output is a prediction, classification, recommendation, evaluation, "
                "analysis or other",
            ),
        ),
    ),
    (
        "purpose",
        "Purpose of the intervention",
        (
            ("intended_use", "Intended use of the intervention"),
            ("intended_patient_population", "Intended patient population(s)"),
            ("intended_users", "Intended user(s)"),
            (
                "decision_role",
                "Intended decision-making role (informs, augments, replaces clinical management)",
            ),
        ),
    ),
    (
        "out_of_scope",
        "Cautioned out-of-scope use of the intervention",
        (
            (
                "out_of_scope_use",
                "Tasks, situations or populations where a user is cautioned against applying it",
            ),
            (
                "known_risks_and_limitations",
                "Known risks, inappropriate settings, inappropriate uses, known limitations",
            ),
        ),
    ),
    (
        "development",
        "Intervention development details and input features",
        (
            (
                "inclusion_exclusion_criteria",
                "Exclusion and inclusion criteria that influenced the training data",
            ),
            (
                "demographic_inputs",
                "Use of race, ethnicity, language, sexual orientation, gender identity, sex, "
                "date of birth, social determinants of health or health status assessments as input features",
            ),
            ("demographic_representativeness", "Demographic representativeness of the training data"),
            ("training_data_relevance", "Relevance of the training data to the intended deployed setting"),
        ),
    ),
    (
        "fairness",
        "Process used to ensure fairness in development",
        (
            ("fairness_approach", "Approach taken to ensure that the output is fair"),
            ("bias_management", "Approaches to manage, reduce or eliminate bias"),
        ),
    ),
    (
        "external_validation",
        "External validation process",
        (
            (
                "external_validation_data",
                "Data source, clinical setting or environment of external validation",
            ),
            ("external_validation_party", "Party that conducted the external testing"),
            ("external_validation_demographics", "Demographic representativeness of the external data"),
            ("external_validation_process", "Description of the external validation process"),
        ),
    ),
    (
        "performance",
        "Quantitative measures of performance",
        (
            ("validity_test_data", "Validity in test data from the same source as the training data"),
            ("fairness_test_data", "Fairness in test data from the same source as the training data"),
            ("validity_external_data", "Validity in external data"),
            ("fairness_external_data", "Fairness in external data"),
            ("outcome_evaluations", "References to evaluations of the intervention's effect on outcomes"),
        ),
    ),
    (
        "maintenance",
        "Ongoing maintenance of implementation and use",
        (
            ("update_schedule", "Update and continued validation or fairness assessment schedule"),
            ("validity_local_data", "Validity in local data"),
            ("fairness_local_data", "Fairness in local data"),
            ("local_outcome_evaluations", "References to evaluations of outcomes in local data"),
        ),
    ),
)
# Attributes the registry computes; a bundle may not supply them (it would contradict the figures).
# intended_use is bundle.yaml's own top-level key (the model card shows it too).
COMPUTED = ("intended_use", "demographic_inputs", "validity_test_data", "fairness_test_data")
BUNDLE_KEYS = tuple(a for _, _, attrs in CATEGORIES for a, _ in attrs if a not in COMPUTED)
