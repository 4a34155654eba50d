"""`accvideo decoder distill`: a tiny decoder distilled from the teacher's VAE (docs/decoder.md)."""

from accvideo.decoder.config import DecoderDistillConfig
from accvideo.decoder.train import check_output, distill_decoder

__all__ = ["DecoderDistillConfig", "check_output", "distill_decoder"]
