"""``pathup evaluate``: cross-validated classification with and without synthetic images (data: real and
synthetic items, RoIs, groups; folds; mil: gated attention MIL; report; run: features and heads;
finetune: ``--preset paper``, a timm ViT fine-tuned end to end per fold)."""
