"""The tiny decoder artifact: a small network from a teacher VAE's latents to RGB frames (docs/decoder.md).

One architecture for every family, sized from the VAE's geometry (latent channels, 4x time, 8x space for Wan 2.1;
HunyuanVideo's own): per latent frame a 2D stem and `depth` memory blocks, each seeing its input and the previous
latent frame's (causal in time, like the VAE); a temporal grow to `temporal_factor` frames per latent frame (the
first latent frame keeps only its last one, so F' latent frames give 1 + 4 (F' - 1) frames, as the VAE decodes);
then per-frame 2x upsampling stages of residual blocks, the last 2x by pixel shuffle (no convolution at full size).
Residual blocks are x + conv(act(conv(x))), SiLU, nothing after the sum; a decoder saved before that choice (its
spec names no activation) is ReLU with a ReLU after the sum, and loads as such.
`decode` runs over chunks of latent frames, carrying each memory block's last input, so memory does not grow with
the clip and chunked equals whole.

    DEC/decoder.json           format, spec, the VAE's identity (sha256 of the teacher's vae/ folder), training facts
    DEC/decoder.safetensors    the weights (never a pickle); their sha256 is in decoder.json

The writer is `save_decoder`; `accvideo decoder distill` (decoder/) trains it; `--decoder DEC` swaps it in for the
VAE's decode (models/runtime.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from accvideo.core.files import file_sha256, temp_name, write_json_atomic
from accvideo.core.inputs import load_safetensors, parse_json, read_json
from accvideo.core.outputs import check_not_being_written
from accvideo.errors import AccVideoError
from accvideo.models.base import vae_video
from accvideo.models.identity import teacher_identity

FORMAT = "accvideo.decoder/1"
INFO = "decoder.json"
WEIGHTS = "decoder.safetensors"
RANDOM = "tiny"  # --decoder tiny: a random decoder of the default architecture (timing only)
# the random decoder's detail gain: about what trained decoders of the built-in get (0.31 to 0.33), so timing
# includes the filter
RANDOM_DETAIL_GAIN = 0.3
CHUNK = 4  # latent frames decoded together (16 frames of Wan): fixed memory whatever the clip's length
ACTIVATIONS = {"silu": F.silu, "relu": F.relu}
# what a spec saved before the activation was a setting means (decoders of the first release)
LEGACY_SPEC = {"activation": "relu", "post_activation": True}
REDO = "rerun the `accvideo decoder distill` that wrote it (it resumes) or pass another --decoder"


@dataclass(frozen=True)
class DecoderSpec:
    """The architecture: the VAE's geometry plus width and depth (the settings)."""

    latent_channels: int
    temporal_factor: int
    spatial_factor: int
    out_channels: int = 3
    width: int = 64  # channels at the latent rate, halved per 2x upsampling (never below min_width)
    depth: int = 2  # memory blocks at the latent rate (cheap: F' frames at the latent size)
    stage_depth: int = 2  # residual blocks per upsampling stage (per output frame: the cost)
    min_width: int = 16
    activation: str = "silu"  # silu | relu
    post_activation: bool = False  # the activation also after each residual sum (the first release's blocks)
    # decoded frames + detail_gain x their 3x3 high-pass, fitted after training (decoder/train.py); 0: none
    detail_gain: float = 0.0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"decoder activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        n = math.log2(self.spatial_factor)
        if self.spatial_factor < 2 or n != int(n):
            raise ValueError(f"the VAE's spatial factor must be a power of 2 >= 2; got {self.spatial_factor}")
        for name in (
            "latent_channels",
            "temporal_factor",
            "out_channels",
            "width",
            "depth",
            "stage_depth",
            "min_width",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"decoder {name} must be >= 1; got {getattr(self, name)}")
        if not 0 <= self.detail_gain < 10:
            raise ValueError(f"decoder detail_gain must lie in [0, 10); got {self.detail_gain}")

    @property
    def widths(self) -> list[int]:
        """Channels of stage i, at 2**i times the latent resolution (the last 2x is the pixel shuffle)."""
        return [max(self.min_width, self.width >> i) for i in range(int(math.log2(self.spatial_factor)))]

    def frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_factor * (latent_frames - 1)


def spec_for(adapter, width: int = 64, depth: int = 2, stage_depth: int = 2, **blocks) -> DecoderSpec:
    """The spec for an adapter's VAE: its latent channels and time/space factors (never a family's name);
    `blocks`: min_width, activation, post_activation, detail_gain."""
    return DecoderSpec(
        adapter.latent_channels, adapter.temporal_factor, adapter.spatial_factor, 3, width, depth, stage_depth, **blocks
    )


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class MemBlock(nn.Module):
    """x + conv(act(conv([x, x_prev]))): a residual block that also sees the previous latent frame."""

    def __init__(self, c: int, spec: DecoderSpec):
        super().__init__()
        self.a, self.b = _conv(2 * c, c), _conv(c, c)
        self.act, self.post = ACTIVATIONS[spec.activation], spec.post_activation

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        y = x + self.b(self.act(self.a(torch.cat([x, prev], 1))))
        return self.act(y) if self.post else y


class ResBlock(nn.Module):
    """x + conv(act(conv(x))), per frame."""

    def __init__(self, c: int, spec: DecoderSpec):
        super().__init__()
        self.a, self.b = _conv(c, c), _conv(c, c)
        self.act, self.post = ACTIVATIONS[spec.activation], spec.post_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.b(self.act(self.a(x)))
        return self.act(y) if self.post else y


class TinyDecoder(nn.Module):
    """Normalised latents (B, C, F', H', W') -> frames; `forward` takes one chunk and the carried state."""

    def __init__(self, spec: DecoderSpec):
        super().__init__()
        self.spec = spec
        w = spec.widths
        self.stem = _conv(spec.latent_channels, w[0])
        self.act = ACTIVATIONS[spec.activation]
        self.memory = nn.ModuleList(MemBlock(w[0], spec) for _ in range(spec.depth))
        self.grow = nn.Conv2d(w[0], w[0] * spec.temporal_factor, 1)
        self.up = nn.ModuleList(_conv(w[i - 1], w[i]) for i in range(1, len(w)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ResBlock(w[i], spec) for _ in range(spec.stage_depth))) for i in range(1, len(w))
        )
        self.out = _conv(w[-1], spec.out_channels * 4)
        # channels-last weights make every convolution run channels-last: the same arithmetic up to rounding
        # (1e-7); on CPU a training step takes 10-16% less time and a decode up to 28% less (decoder_layout.py)
        self.to(memory_format=torch.channels_last)

    def forward(
        self,
        z: torch.Tensor,
        state: list[torch.Tensor] | None = None,
        tap: int | None = None,
        frames: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """One chunk of latent frames -> (frames (B, F, c, H, W) in [-1, 1] unclamped, state, tapped feature).

        `state` is None for the chunk holding the clip's first latent frame; `tap` = i also returns stage i's
        output (B, F, w_i, H' 2**i, W' 2**i), for feature matching. `frames` (B, k) indices (training) runs the
        per-frame upsampling stages on those frames only, so F above is k.
        """
        b, _, t, h, w = z.shape
        first = state is None
        tf = self.spec.temporal_factor
        x = self.act(self.stem(z.transpose(1, 2).reshape(b * t, -1, h, w)))
        carried = []
        for i, block in enumerate(self.memory):
            seq = x.view(b, t, *x.shape[1:])
            before = torch.zeros_like(seq[:, :1]) if first else state[i].unsqueeze(1).to(seq)
            prev = torch.cat([before, seq[:, :-1]], 1).reshape_as(x)
            carried.append(seq[:, -1])
            x = block(x, prev)
        x = self._frames(self.grow(x).view(b, t, tf, -1, h, w), first)
        if frames is not None:
            x = x[torch.arange(b, device=x.device).unsqueeze(1), frames.to(x.device)]
        count = x.shape[1]
        x = x.flatten(0, 1)
        feature = x if tap == 0 else None
        for i, (up, stage) in enumerate(zip(self.up, self.stages, strict=True), start=1):
            x = stage(self.act(up(F.interpolate(x, scale_factor=2.0, mode="nearest"))))
            if tap == i:
                feature = x
        x = F.pixel_shuffle(self.out(x), 2)
        if feature is not None:
            feature = feature.view(b, count, *feature.shape[1:])
        return x.view(b, count, *x.shape[1:]), carried, feature

    @staticmethod
    def _frames(x: torch.Tensor, first: bool) -> torch.Tensor:
        """(B, T, tf, ...) per latent frame -> (B, F, ...) frames; the clip's first latent frame is one frame (its
        last), as the VAE decodes it."""
        if first:
            return torch.cat([x[:, :1, -1:].flatten(1, 2), x[:, 1:].flatten(1, 2)], 1)
        return x.flatten(1, 2)

    def decode(self, z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> frames (B, F, c, H, W), `chunk` latent frames at a time (causal), with
        the spec's detail gain (a per-frame filter, so chunked still equals whole)."""
        state, parts = None, []
        for s in range(0, z.shape[2], chunk):
            out, state, _ = self(z[:, :, s : s + chunk], state)
            if self.spec.detail_gain:
                out = out + self.spec.detail_gain * high_pass(out)
            parts.append(out)
        return torch.cat(parts, 1)

    def set_detail_gain(self, gain: float) -> None:
        self.spec = dataclasses.replace(self.spec, detail_gain=float(gain))


def high_pass(frames: torch.Tensor) -> torch.Tensor:
    """Frames (..., c, H, W) minus their 3x3 box blur (edges replicated): the detail a blur removes."""
    x = frames.flatten(0, -4) if frames.dim() > 4 else frames
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (x - blurred).reshape(frames.shape)


def fit_detail_gain(sums: torch.Tensor) -> float:
    """The gain g with |high_pass(p + g high_pass(p))|^2 = |high_pass(target)|^2, from `detail_sums` accumulated
    over clips: high_pass is linear, so the left side is a quadratic in g, solved exactly (before clamping). 0 when
    the frames already hold as much detail as the target's (the gain never blurs)."""
    hh, hk, kk, tt = (float(v) for v in sums)
    if hh >= tt or kk == 0:
        return 0.0
    return (-2 * hk + math.sqrt(4 * hk * hk + 4 * kk * (tt - hh))) / (2 * kk)


def detail_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(|h|^2, <h, k>, |k|^2, |high_pass(target)|^2) of frames pred and target (..., c, H, W), with h the
    high-pass of pred and k the high-pass of h: what `fit_detail_gain` needs, summable over clips. Computed in
    float32 where pred lies (a real-size clip is 10^8 values), returned as float64 on the CPU."""
    h = high_pass(pred.float())
    k = high_pass(h)
    t = high_pass(target.to(h))
    return torch.stack([(h * h).sum(), (h * k).sum(), (k * k).sum(), (t * t).sum()]).double().cpu()


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """Decoder frames (B, F, 3, H, W) in [-1, 1] -> video (B, F, H, W, 3) float in [0, 1], as adapters decode."""
    return (frames.float() / 2 + 0.5).clamp(0, 1).permute(0, 1, 3, 4, 2)


def vae_identity(model_dir: str | Path, like: str | None = None) -> str:
    """The VAE's identity: the identity of the pipeline's vae/ folder (a student shares its teacher's), in the
    scheme of `like` (a recorded identity: a decoder made before the sampled identity is checked by full hash)."""
    return teacher_identity(Path(model_dir) / "vae", like=like)


def save_decoder(folder: str | Path, decoder: TinyDecoder, vae: str, family: str, extra: dict | None = None) -> Path:
    """decoder.safetensors then decoder.json (holding the weights' sha256), each under a temporary name first."""
    from accvideo.core.tensorfile import write_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    tmp = temp_name(weights)
    try:
        state = {k: v.detach().float().cpu().contiguous() for k, v in decoder.state_dict().items()}
        write_safetensors(state, {"format": FORMAT}, tmp)  # readable as the umask allows (save_file: mode 600)
        digest = file_sha256(tmp)
        tmp.replace(weights)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    info = {
        "format": FORMAT,
        "spec": dataclasses.asdict(decoder.spec),
        "vae_identity": vae,
        "family": family,
        "weights_sha256": digest,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        **(extra or {}),
    }
    write_json_atomic(folder / INFO, info)
    return folder


def find_decoder(path: str | Path) -> Path:
    """The decoder folder named by --decoder: DEC itself, or the decoder/ a run or export carries."""
    path = Path(path).expanduser()
    for candidate in (path, path / "decoder", path / "student" / "decoder"):
        if (candidate / INFO).is_file():
            for folder in {path, candidate.parent}:  # a decoder distill's folder: its decoder/ is replaced at saves
                check_not_being_written(folder)
            return candidate
    held = "does not exist" if not path.exists() else f"holds no {INFO}"  # a typo read as "holds no decoder.json"
    raise AccVideoError(
        f"--decoder {path} {held}; pass the --out of `accvideo decoder distill` (or a folder carrying decoder/)"
    )


def read_decoder_info(folder: Path) -> dict:
    path = folder / INFO
    info = read_json(path, REDO)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise AccVideoError(f"{path} is not an accvideo decoder (no format {FORMAT!r}); {REDO}")
    missing = [k for k in ("spec", "vae_identity", "weights_sha256") if k not in info]
    if missing:
        raise AccVideoError(f"{path} lacks {', '.join(missing)}; {REDO}")
    return info


def load_decoder(path: str | Path, vae: str | None) -> tuple[TinyDecoder, dict]:
    """The decoder named by `path` and its decoder.json; refused in one line when made for another VAE than
    `vae` (an identity; None skips the check), or when damaged."""
    folder = find_decoder(path)
    info = read_decoder_info(folder)
    if vae is not None and info["vae_identity"] != vae:
        raise AccVideoError(
            f"{folder} was distilled for another VAE ({str(info['vae_identity'])[:19]}...), not this model's "
            f"({vae[:19]}...); distill one for it: accvideo decoder distill --teacher MODEL --data SYNVID --out DEC"
        )
    weights = folder / WEIGHTS
    state = load_safetensors(weights, REDO)
    if file_sha256(weights) != info["weights_sha256"]:
        raise AccVideoError(f"{weights} does not match the sha256 in {INFO} (damaged or replaced); {REDO}")
    try:
        spec = DecoderSpec(**{**LEGACY_SPEC, **info["spec"]})
        _check_spec_fits(spec, state)  # before building: an edited depth of 200,000 built for minutes
        with torch.random.fork_rng(devices=[]):  # its initial weights are replaced: the caller's generator is left
            decoder = TinyDecoder(spec)  # as it was (a resumed `decoder distill` saved it moved on otherwise)
        decoder.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise AccVideoError(f"{folder} does not hold a loadable decoder ({str(exc).splitlines()[0]}); {REDO}") from None
    return decoder.requires_grad_(False).eval(), info


def _check_spec_fits(spec: DecoderSpec, state: dict[str, torch.Tensor]) -> None:
    """Bounds a spec's size by the weights it must load, without building it: every block holds at least one
    tensor, and no layer is wider than the widest stored tensor."""
    blocks = spec.depth + spec.stage_depth * len(spec.widths)
    widest = max((max(t.shape, default=0) for t in state.values()), default=0)
    if blocks > len(state) or max(spec.width, spec.min_width) > widest:
        raise ValueError(
            f"its spec (depth {spec.depth}, stage_depth {spec.stage_depth}, width {spec.width}) is larger than its "
            f"{len(state)} stored tensors can hold"
        )


def load_decoder_for(path: str | Path, model_dir: str | Path) -> tuple[TinyDecoder, dict]:
    """`load_decoder` checked against the VAE of the pipeline in `model_dir`, in the identity scheme the decoder
    recorded."""
    recorded = read_decoder_info(find_decoder(path)).get("vae_identity")
    return load_decoder(path, vae_identity(model_dir, like=recorded if isinstance(recorded, str) else None))


def folder_geometry(model_dir: str | Path) -> tuple[int, int, int] | None:
    """(latent channels, time factor, space factor) read from the pipeline's vae/config.json before it loads (Wan's
    z_dim and scale_factor_*, HunyuanVideo's latent_channels and *_compression_ratio); None when it does not say
    (the loaded VAE is checked then)."""
    try:
        cfg = parse_json((Path(model_dir) / "vae" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    keys = (("z_dim", "latent_channels"), ("scale_factor_temporal", "temporal_compression_ratio"))
    keys += (("scale_factor_spatial", "spatial_compression_ratio"),)
    values = tuple(next((cfg[k] for k in names if k in cfg), None) for names in keys)
    return values if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values) else None


def check_geometry(decoder: TinyDecoder, adapter) -> None:
    """A decoder whose latent channels or factors differ from the model's is refused (one line)."""
    want = spec_for(adapter)
    _check_geometry(decoder, (want.latent_channels, want.temporal_factor, want.spatial_factor))


def _check_geometry(decoder: TinyDecoder, need: tuple[int, int, int]) -> None:
    s = decoder.spec
    got = (s.latent_channels, s.temporal_factor, s.spatial_factor)
    if got != need:
        raise AccVideoError(
            f"the decoder takes latents of {got[0]} channels at {got[1]}x time / {got[2]}x space, but this model's VAE "
            f"has {need[0]} at {need[1]}x / {need[2]}x; use a decoder distilled for this model"
        )


def check_decoder(name: str, model_dir: Path | None, allow_random: bool = False) -> TinyDecoder | None:
    """What --decoder names, checked without the model loaded (commands call it before any other work): the trained
    decoder, checked against the VAE of the pipeline in `model_dir`; None for `tiny` where timing allows it."""
    if name == RANDOM:
        if not allow_random:
            raise AccVideoError("--decoder tiny is a random decoder for timing (accvideo bench); pass a trained one")
        return None
    if model_dir is None:
        raise AccVideoError(f"--decoder {name} needs the model's VAE folder to check; with --random-weights use tiny")
    decoder = load_decoder_for(name, model_dir)[0]
    if (need := folder_geometry(model_dir)) is not None:  # its VAE's geometry, before the model loads
        _check_geometry(decoder, need)
    return decoder


def open_decoder(name: str, adapter, model_dir: Path | None, allow_random: bool = False) -> TinyDecoder:
    """What --decoder names, on the adapter's VAE device and dtype: a trained decoder checked against the
    model's VAE, or (`tiny`, where timing allows it) a random one of the default architecture."""
    decoder = check_decoder(name, model_dir, allow_random)
    if decoder is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            decoder = TinyDecoder(spec_for(adapter, detail_gain=RANDOM_DETAIL_GAIN)).requires_grad_(False).eval()
    else:
        check_geometry(decoder, adapter)
    vae = adapter.vae
    return decoder.to(vae.device, vae.dtype)


@torch.no_grad()
def decode_video(decoder: TinyDecoder, latents: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Latents (B, C, F', H', W') -> video (B, F, H, W, 3) in [0, 1] on the CPU: the adapter's `decode` contract."""
    p = next(decoder.parameters())
    frames = decoder.decode(latents.to(p.device, p.dtype), chunk).transpose(1, 2)  # (B, c, F, H, W), as a VAE's
    return vae_video(frames, "the tiny decoder (--decoder)", "its weights or train it again (accvideo decoder distill)")
