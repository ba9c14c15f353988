"""Training of PathUp models (autoencoder, then class- and scale-conditioned denoiser); no Qt.

``data`` finds and samples the images, ``autoencoder`` and ``denoiser`` are the two training phases,
``loop`` runs a phase with checkpoints and resumption, ``run`` ties them together for ``pathup train``.
"""

#: ``pathup train --base --mixed-precision`` modes (here, not in text_to_image: the CLI must not import torch)
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
#: ``pathup train --denoiser-storage``: how the exported denoiser's weights are stored (torch dtype names)
DENOISER_STORAGES = ("float32", "float16", "bfloat16")
#: ``pathup train --denoiser-gan-judge``: what the discriminator sees (training/denoiser_gan.py)
DENOISER_GAN_JUDGES = ("clean", "pair", "pixel", "pair+pixel")
