"""The configurations every whole-app gate (cdk-nag, cfn-lint) runs over.

Each switches on a part of the app or changes how it is built; the gates must hold
in all of them, not only with the defaults. Between them they train with both algorithms,
each on instance families with and without local NVMe storage (TRAINING_FAMILIES).
"""

# An Object Detection image of one's own, in ECR: the training role may pull it.
OWN_TRAINING_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-detector:2"

# The studio's address and image: a made-up certificate and digest (synth checks only their form).
STUDIO_DOMAIN = "label.example.com"
STUDIO_CERTIFICATE = (
    "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
)
STUDIO_IMAGE_DIGEST = "sha256:" + "0123456789abcdef" * 4

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "defaults": {},
    "prod": {"stage": "prod"},
    "everything on": {
        # The built-in algorithm on ml.p2 (an EBS volume), with an image of one's own.
        "counting.alerts.emails": '["ops@example.com", "lead@example.com"]',
        "counting.workforce.enabled": "true",
        "counting.workforce.invite_emails": '["ann@example.com", "bob@example.com"]',
        "counting.workforce.mfa": "required",
        "counting.training.algorithm": "builtin",
        "counting.training.image_uri": OWN_TRAINING_IMAGE,
        "counting.training.instance_type": "ml.p2.xlarge",
        "counting.training.max_count_wape": "null",
        "counting.counter.score_threshold": "0.3",
        "counting.counter.tiling.mode": "on",
        "counting.counter.tiling.tile_side": "640",
        "counting.counter.mark_tiles": "true",
    },
    "existing workforce": {
        "counting.workforce.enabled": "true",
        "counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123",
        "counting.workforce.existing_app_client_id": "1example23456789abcdefghij",
        "counting.workforce.invite_emails": '["a@example.com"]',
    },
    # A Ground Truth account's stage: the workforce and the labeling launcher, nothing else.
    "workforce": {"counting.workforce.enabled": "true"},
    "on-demand training on ml.g5": {
        "counting.training.algorithm": "builtin",
        "counting.training.use_spot": "false",
        "counting.training.instance_type": "ml.g5.2xlarge",
    },
    "explicit environment, ml.p3, from scratch": {
        "counting.account": "123456789012",
        "counting.region": "eu-west-1",
        "counting.training.instance_type": "ml.p3.2xlarge",
        "counting.training.pretrained_weights": "none",
        "counting.training.force_deploy": "rolling back to the model of run 2026-11-01",
    },
    "built-in algorithm on ml.p3": {"counting.training.algorithm": "builtin"},
    # Label Studio without Ground Truth, as a new account deploys it.
    "studio, no workforce": {
        "counting.region": "eu-west-1",
        "counting.workforce.enabled": "false",
        "counting.labeling.studio.enabled": "true",
        "counting.labeling.studio.domain_name": STUDIO_DOMAIN,
        "counting.labeling.studio.certificate_arn": STUDIO_CERTIFICATE,
        "counting.labeling.studio.image_digest": STUDIO_IMAGE_DIGEST,
        "counting.labeling.studio.invite_emails": '["ann@example.com"]',
        "counting.labeling.studio.deletion_protection": "false",
        "counting.labeling.studio.class_names": '["car", "truck"]',
        "counting.labeling.studio.start_training": "true",
    },
}

# The (algorithm, training instance family) each configuration uses (the defaults:
# torchvision on ml.g4dn.xlarge; the built-in algorithm on ml.p3.2xlarge).
TRAINING_FAMILIES = {
    ("torchvision", "g4dn"): "defaults",
    ("torchvision", "p3"): "explicit environment, ml.p3, from scratch",
    ("builtin", "p2"): "everything on",
    ("builtin", "g5"): "on-demand training on ml.g5",
    ("builtin", "p3"): "built-in algorithm on ml.p3",
}
