"""Settings of `accvideo decoder distill`."""

from __future__ import annotations

from dataclasses import dataclass

from accvideo.core.config import check_lr_ceiling, check_threads

# Settings a resumed run may change (`out`: a run folder moved or copied resumes; `lr`: the fix after a NaN, as in
# distill); any other differing setting is refused (another --out is the fix).
# paths may change: the checkpoint holds the teacher's and the dataset's identities, checked on resume
RESUMABLE_CHANGES = frozenset(
    {"out", "teacher", "data", "iterations", "checkpoint_every", "log_every", "threads", "device", "lr"}
)


# the largest tiny decoder: wider than the VAE's own decoder, deeper than any setting measured (docs/decoder.md)
SIZE_LIMITS = {"width": 1024, "min_width": 1024, "depth": 64, "stage_depth": 64}


@dataclass(frozen=True)
class DecoderDistillConfig:
    """A tiny decoder distilled from the teacher VAE's own decodes of SynVid's final latents (and real clips)."""

    teacher: str = "builtin"  # the teacher pipeline folder, or 'builtin' (its VAE is distilled)
    data: str = "synvid"  # SynVid folder (accvideo synthesize --out): its final latents l[t'_0] are the inputs
    videos: str | None = None  # more inputs: a folder of MP4 clips, or 'world' (rendered), encoded by the VAE
    video_clips: int = 256  # real clips used with --videos (the first N)
    out: str = "decoder"
    width: int = 64  # channels at the latent rate (halved per 2x upsampling, at least min_width)
    depth: int = 2  # memory blocks at the latent rate
    stage_depth: int = 2  # residual blocks per upsampling stage
    min_width: int = 16  # the fewest channels of a stage (the last, full-resolution stages have the fewest)
    activation: str = "silu"  # silu | relu (the first release's, with post_activation=true)
    post_activation: bool = False  # the activation also after each residual sum
    iterations: int = 4800
    batch: int = 8  # clips per step (8 x 4800 beat 16 x 2400, the same work, on val: docs/decoder.md)
    frame_pairs: int = 2  # per clip, the upsampling stages train on N random pairs of consecutive frames (0: all)
    crop: int = 0  # train on random crops of crop x crop latent pixels (0: whole frames; real sizes need crops)
    lr: float = 3e-3  # AdamW, cosine decay to lr/20 over the iterations
    ema: float = 0.0  # the artifact is an exponential moving average of the weights with this decay (0: the last)
    l1_weight: float = 1.0  # L1 of the frames against the VAE's
    edge_weight: float = 10.0  # the L1 weighs a pixel 1 + edge_weight x the VAE frame's edge magnitude there
    gradient_weight: float = 1.0  # L1 of the frames' image gradients (the structural term)
    spectral_weight: float = 1.0  # L1 of the frames' amplitude spectra (detail energy, without phase; val: -0.9 FD)
    ssim_weight: float = 0.0  # 1 - SSIM of the frames against the VAE's (11-tap Gaussian window)
    spectral_balance: bool = False  # divide each frequency's spectral error by the VAE frames' mean amplitude there
    feature_weight: float = 0.1  # match the VAE decoder's features at one upsampling stage (normalised MSE)
    detail_clips: int = 32  # training clips on which the saved decoder's detail gain is fitted (0: no gain)
    adv_weight: float = 0.0  # a small patch discriminator (hinge); 0 turns it off
    adv_start: float = 0.5  # with adv_weight: the fraction of the iterations after which it joins
    holdout: int = 16  # SynVid items kept out of training for the validation PSNR (the last N)
    checkpoint_every: int = 400
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # CPU threads (0: torch's default)
    device: str = "auto"

    def __post_init__(self):
        for name in (
            "width",
            "depth",
            "stage_depth",
            "min_width",
            "iterations",
            "batch",
            "checkpoint_every",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        for name, most in SIZE_LIMITS.items():  # width=100000 ran out of memory with a line naming --batch and LoRA
            if getattr(self, name) > most:
                raise ValueError(
                    f"{name} must be at most {most:,} (a tiny decoder: the defaults are 64 channels and 2 blocks); "
                    f"got {getattr(self, name):,}"
                )
        if self.activation not in ("silu", "relu"):
            raise ValueError(f"activation must be silu or relu; got {self.activation!r}")
        if self.frame_pairs < 0:
            raise ValueError(f"frame_pairs must be >= 0 (0: every frame); got {self.frame_pairs}")
        if self.crop < 0:
            raise ValueError(f"crop must be >= 0 (0: whole frames); got {self.crop}")
        if self.detail_clips < 0:
            raise ValueError(f"detail_clips must be >= 0 (0: no detail gain); got {self.detail_clips}")
        if self.video_clips < 1:
            raise ValueError(f"video_clips must be a positive integer; got {self.video_clips}")
        if self.holdout < 0:
            raise ValueError(f"holdout must be >= 0 (0: no held-out check); got {self.holdout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        check_lr_ceiling("lr", self.lr)
        if not 0 <= self.ema < 1:
            raise ValueError(
                f"ema must lie in [0, 1) (0: no average, 0.999: about the last 1000 steps); got {self.ema}"
            )
        for name in (
            "l1_weight",
            "edge_weight",
            "gradient_weight",
            "spectral_weight",
            "ssim_weight",
            "feature_weight",
            "adv_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not 0 <= self.adv_start < 1:
            raise ValueError(f"adv_start must lie in [0, 1); got {self.adv_start}")
        check_threads(self.threads)
