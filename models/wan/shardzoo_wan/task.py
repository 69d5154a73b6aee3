"""Wan's training task: video-caption rows -> (frozen encoders or extracted features) -> flow-matching loss.

Two ways in, chosen by the `task:` config section:
* features: a folder written by `python -m shardzoo_wan.extract` (normalised VAE latents and umT5
  states): the trainer runs the DiT alone, what large runs do;
* online: the rows' clips and captions are encoded every step by the frozen Wan VAE (diffusers) and
  umT5 encoder (transformers), held beside the task, never trained, sharded or checkpointed.

Image-to-video DiTs (Wan2.1 I2V, Wan2.2 I2V-A14B) also read the first frame's condition latents and,
Wan2.1, its CLIP image tokens (image_to_video.py), encoded online or extracted with the features.

Every sample's randomness (sigma, the TI2V clean-first-frame draw, the noise) comes from a CPU
generator seeded by the training seed and the sample's draw key (epoch and row): the same sample gets
the same noise whatever the world size, batch split or context-parallel degree, and after a resume.

Loss unit: the sample. A batch's normaliser share is its live samples / cp_size: the cp_size ranks of
a context-parallel group hold the same samples, each computing the loss of the gathered prediction
while the gather's backward keeps each rank's share of the gradient; so the summed normaliser counts
each sample once and the logged sum is divided by loss_copies = cp_size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
from shardzoo.config import ConfigError, build_section, resolve_path
from shardzoo.data.dataset_info import resolve_sources
from shardzoo.data.evaluation import eval_data_config, eval_loader, split_validation
from shardzoo.data.loader import StepLoader
from shardzoo.train.task import Task

from .buckets import bucket_counts, clip_rows
from .flow_matching import SigmaSampler, flow_matching_loss
from .image_to_video import check_channels, check_image_to_video, image_to_video_fields, mask_channels
from .video_batches import FeatureRows, VideoCollate

log = logging.getLogger(__name__)


@dataclass
class FlowMatchingOptions:
    """The `task:` section of a Wan training config."""

    features: Optional[str] = None
    """Folder of extracted features (python -m shardzoo_wan.extract); null = encode online."""
    vae: Optional[str] = None
    """Online: folder of the Wan VAE (diffusers AutoencoderKLWan)."""
    text_encoder: Optional[str] = None
    """Online: folder of the umT5 encoder (transformers UMT5EncoderModel)."""
    tokenizer: Optional[str] = None
    """Online: the umT5 tokenizer folder."""
    image_encoder: Optional[str] = None
    """Online, Wan2.1 I2V: folder of the CLIP vision encoder (transformers CLIPVisionModel; the repo's
    image_encoder/)."""
    image_processor: Optional[str] = None
    """Online, Wan2.1 I2V: the CLIP image processor's folder (the repo's image_processor/)."""
    encoder_dtype: Literal["fp32", "bf16"] = "bf16"
    """Online: dtype the frozen encoders run in (the DiT's follows parallel.param_dtype)."""
    num_frames: int = 81
    """Online: frames per clip (4n + 1, the Wan VAE's rule)."""
    buckets: Optional[list[str]] = None
    """Online: several clip sizes "FRAMESxHEIGHTxWIDTH" (e.g. [81x480x832, 81x832x480, 49x480x832]) instead of
    num_frames x height x width: each clip trains at the one nearest its shape, every step from one bucket
    (buckets.py). With features, extract with --buckets instead."""
    height: int = 480
    width: int = 832
    frame_stride: int = 1
    """Online: take every frame_stride-th frame of the source."""
    text_len: int = 512
    """Text tokens the DiT sees: the true tokens' states, zero-padded (512 in every release)."""
    sigma_sampling: Literal["uniform", "logit_normal"] = "uniform"
    """Base distribution of sigma before the shift (a project choice: the releases ship no trainer;
    uniform + shift 5 is DiffSynth-Studio's, logit_normal the SD3 recipe)."""
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 5.0
    """SD3 shift s: sigma' = s sigma / (1 + (s - 1) sigma); larger favours noisier samples."""
    sigma_low: float = 0.0
    """Shifted sigma range [sigma_low, sigma_high): a Wan2.2 A14B expert's share (high noise
    [0.875, 1), low noise [0, 0.875) for T2V; 0.9 for I2V)."""
    sigma_high: float = 1.0
    first_frame_clean: float = 0.0
    """Wan2.2 TI2V: probability that a sample trains image-to-video (its first latent frame clean,
    timestep 0 on its tokens, left out of the loss); 0 = text-to-video only."""
    text_drop_prob: float = 0.0
    """Probability that a sample trains on the empty prompt's encoding instead of its caption's, so the
    model also learns the unconditional prediction classifier-free guidance needs (e.g. 0.1); drawn
    from the sample's own generator."""


def latent_shapes_of(cfg) -> list[tuple[int, ...]]:
    """[C, T', H', W'] per size the run trains at (its buckets, or its one size), in bucket order: the extracted
    features', or what its VAE makes of each size."""
    o = options(cfg)
    if o.features is not None:
        return FeatureRows(o.features, o.text_len).store.latent_shapes()
    from diffusers import AutoencoderKLWan

    from .encoders import latent_shape

    vae = AutoencoderKLWan.load_config(str(resolve_path(o.vae)))
    shapes = []
    for i, b in enumerate(sizes_of(o)):
        try:
            shapes.append(latent_shape(vae, b.frames, b.height, b.width))
        except ValueError as exc:
            raise ConfigError(f"{f'task.buckets[{i}]' if o.buckets else 'task.height/width'}: {exc}") from None
    return shapes


def sizes_of(o) -> list:
    """The clip sizes of online encoding: the buckets, or num_frames x height x width."""
    from .buckets import Bucket, parse_buckets

    return parse_buckets(o.buckets) if o.buckets is not None else [Bucket(o.num_frames, o.height, o.width)]


def mask_channels_of(cfg) -> int:
    """The image-to-video mask channels the run's latents come with: the extraction's (0 when it wrote no
    condition latents), or the VAE's temporal factor."""
    o = options(cfg)
    if o.features is not None:
        return FeatureRows(o.features, o.text_len).store.mask_channels
    from diffusers import AutoencoderKLWan

    from .encoders import temporal_factor

    return temporal_factor(AutoencoderKLWan.load_config(str(resolve_path(o.vae))))


def latent_shape_of(cfg) -> tuple[int, ...]:
    """[C, T', H', W'] of the largest latents the run trains on (its largest bucket): what `shardzoo plan`
    sizes the run by."""
    return max(latent_shapes_of(cfg), key=lambda shape: int(np.prod(shape)))


def options(cfg) -> FlowMatchingOptions:
    """The task section, checked: ConfigError naming the key for anything wrong."""
    o = build_section(FlowMatchingOptions, cfg.task, "task")
    if (o.image_encoder is None) != (o.image_processor is None):
        raise ConfigError("task.image_encoder and task.image_processor come together (Wan2.1 I2V online: the repo's "
                          "image_encoder/ and image_processor/ folders)")
    if o.features is not None:
        given = [k for k in ("vae", "text_encoder", "tokenizer", "image_encoder", "buckets")
                 if getattr(o, k) is not None]
        if given:
            why = ("the sizes are the extraction's (python -m shardzoo_wan.extract --buckets)" if given[0] == "buckets"
                   else "the encoders are not used")
            raise ConfigError(f"task.features and task.{given[0]}: training reads extracted features, so {why}; remove "
                              "one of them")
        if not (resolve_path(o.features) / "index.json").is_file():
            raise ConfigError(f"task.features: {resolve_path(o.features)} has no index.json; write it with python -m "
                              "shardzoo_wan.extract (or remove task.features to encode online)")
    else:
        for key in ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor"):
            path = getattr(o, key)
            if path is None:
                if key.startswith("image_"):
                    continue
                raise ConfigError(f"task.{key}: missing; online encoding needs task.vae, task.text_encoder and "
                                  "task.tokenizer (folders), or set task.features to train on extracted features")
            if not resolve_path(path).is_dir():
                raise ConfigError(f"task.{key}: {resolve_path(path)} is not a directory")
        if (o.num_frames - 1) % 4:
            raise ConfigError(f"task.num_frames: {o.num_frames} must be 4n + 1 (the Wan VAE keeps the first frame and "
                              "compresses every 4 after it), e.g. 81")
        sizes_of(o)  # the buckets parse
        for key in ("num_frames", "height", "width", "frame_stride"):
            if getattr(o, key) < 1:
                raise ConfigError(f"task.{key}: must be >= 1")
    if o.text_len < 1:
        raise ConfigError("task.text_len: must be >= 1")
    for key in ("first_frame_clean", "text_drop_prob"):
        if not 0.0 <= getattr(o, key) <= 1.0:
            raise ConfigError(f"task.{key}: {getattr(o, key)} is a probability in [0, 1]")
    try:
        sampler(o)
    except ValueError as exc:
        raise ConfigError(f"task.sigma_low/sigma_high/shift/logit_std: {exc}") from None
    return o


def sampler(o: FlowMatchingOptions) -> SigmaSampler:
    return SigmaSampler(o.sigma_sampling, o.logit_mean, o.logit_std, o.shift, o.sigma_low, o.sigma_high)


@dataclass
class VideoData:
    loader: StepLoader
    rows: int
    source: str
    skipped_rows: int = 0
    tokens_per_sample: int = 0
    """The largest bucket's, with buckets."""
    tokenizer: None = None
    """No tokenizer of the DiT's own to save with checkpoints (the umT5 one belongs to the encoder)."""
    eval_loader: Optional[StepLoader] = None
    """Evaluation steps (data.val_size, or data.eval_dataset when encoding online); None without."""
    eval_rows: int = 0
    buckets: str = ""
    """Rows and tokens per size bucket (latent frames x height x width), empty with one size."""

    def skipped(self) -> int:
        return self.skipped_rows

    def describe(self) -> str:
        bad = f", {self.skipped_rows} bad rows skipped" if self.skipped_rows else ""
        if self.buckets:
            return f"{self.rows} videos in buckets of latents {self.buckets} from {self.source}{bad}"
        return f"{self.rows} videos of {self.tokens_per_sample} tokens from {self.source}{bad}"


class FlowMatchingTask(Task):
    """(seeds, latents + text | clips + prompts) -> the flow-matching loss of the wrapped Wan DiT."""

    casts_inputs = False  # x_t and the target are formed in fp32; the model input is cast here

    def __init__(self, model: nn.Module, sigma_sampler: SigmaSampler, first_frame_clean: float = 0.0,
                 encoders=None, loss_copies: int = 1, text_drop_prob: float = 0.0,
                 empty_text: Optional[torch.Tensor] = None):
        super().__init__()
        self.model = model
        self.sampler, self.first_frame_clean = sigma_sampler, first_frame_clean
        self.encoders = encoders
        self.loss_copies = loss_copies
        if text_drop_prob and empty_text is None:
            raise ValueError("text dropout needs the empty prompt's encoding")
        # Plain attributes, not buffers: nothing here is trained, sharded or checkpointed.
        self.text_drop_prob, self.empty_text = text_drop_prob, empty_text

    @classmethod
    def check_config(cls, cfg, spec, hf_config) -> None:
        d = cfg.data
        for key, bad, why in (("packing", d.packing, "video samples are not packed"),
                              ("streaming", d.streaming, "video rows are read as a map-style dataset"),
                              ("data_manager_type", d.is_pretraining, "video rows are not raw text")):
            if bad:
                raise ConfigError(f"data.{key}: not available for Wan flow matching ({why}); remove it")
        if cfg.training.loss_reduction != "token":
            raise ConfigError("training.loss_reduction: Wan flow matching averages each sample's squared error "
                              "and then over samples; remove training.loss_reduction")
        o = options(cfg)
        check_image_to_video(o, hf_config)
        if o.features is None:
            _video_source(cfg)

    @classmethod
    def build_data(cls, cfg, spec, hf_config, *, rank: int, world: int, local_rank: int, barrier, cp_rank: int,
                   cp_size: int) -> VideoData:
        """Every rank of a context-parallel group reads the same rows (cp_rank is not needed: the DiT
        splits the video tokens itself)."""
        o, t, d = options(cfg), cfg.training, cfg.data
        shapes = latent_shapes_of(cfg)
        check_channels(shapes[0][0], mask_channels_of(cfg) if mask_channels(hf_config) else 0, hf_config)
        tokens = [_tokens(shape, hf_config, cfg.parallel, o, i) for i, shape in enumerate(shapes)]
        if o.features is not None:
            rows = FeatureRows(o.features, o.text_len, image_to_video_fields(hf_config), tokens)
            source, skipped = f"features {rows.store.folder}", 0
            if d.max_samples is not None:
                raise ConfigError("data.max_samples: not applied to extracted features; extract fewer rows instead")
        else:
            video_source = _video_source(cfg)
            rows, skipped = clip_rows(video_source, o, d.skip_bad_rows, tokens, d.max_samples)
            source = f"{video_source.path} (encoded online)"
        # Evaluation rows: split off (the same draw keys at every evaluation, so each row's sigma and noise
        # are fixed and evaluations compare), or a video dataset of their own.
        eval_rows = None
        if d.val_size:
            rows, eval_rows = split_validation(rows, d.val_size, t.seed)
        elif d.eval_dataset is not None:
            if o.features is not None:
                raise ConfigError("data.eval_dataset: with task.features the rows are extracted features; split "
                                  "evaluation rows off them with data.val_size, or extract them into the folder")
            eval_source = _video_source(cfg, eval_data_config(cfg), "data.eval_dataset")
            eval_rows = clip_rows(eval_source, o, d.skip_bad_rows, tokens)[0]
        steps = dict(rank=rank, world=world, pad_id=0, make_batch=VideoCollate(t.seed, cp_size))
        loader = StepLoader(rows, batch_size=t.per_device_train_batch_size, grad_accum=t.gradient_accumulation_steps,
                            seed=t.seed, shuffle=not d.disable_shuffling, drop_last=d.dataloader_drop_last,
                            num_workers=d.dataloader_num_workers, **steps)
        data = VideoData(loader, len(rows), source, skipped, max(tokens), buckets=bucket_counts(rows, shapes, tokens))
        if eval_rows is not None:
            data.eval_loader, data.eval_rows = eval_loader(eval_rows, steps, cfg), len(eval_rows)
        return data

    @classmethod
    def from_config(cls, model: nn.Module, cfg, hf_config) -> "FlowMatchingTask":
        o = options(cfg)
        from .encoders import OnlineEncoders

        encoders = OnlineEncoders(o, bool(mask_channels(hf_config))) if o.features is None else None
        empty_text = None
        if o.text_drop_prob:
            empty_text = encoders.empty_text() if encoders else FeatureRows(o.features, o.text_len).store.empty_text()
        return cls(model, sampler(o), o.first_frame_clean, encoders, loss_copies=cfg.parallel.cp_size,
                   text_drop_prob=o.text_drop_prob, empty_text=empty_text)

    def draw(self, seeds: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """(sigma [B], clean_first_frame [B], noise [B, *shape], text dropped [B]) from each sample's own
        generator, on the CPU (the same numbers on every device type). The text draw comes last, so runs
        without dropout keep the numbers they had before it existed."""
        sigmas, clean, noise, dropped = [], [], [], []
        for seed in seeds.tolist():
            gen = torch.Generator().manual_seed(seed)
            sigmas.append(self.sampler.sample(1, gen))
            clean.append(torch.rand(1, generator=gen) < self.first_frame_clean)
            noise.append(torch.randn(shape, generator=gen))
            dropped.append(torch.rand(1, generator=gen) < self.text_drop_prob)
        return torch.cat(sigmas), torch.cat(clean), torch.stack(noise), torch.cat(dropped)

    def forward(self, seeds: torch.Tensor, weights: torch.Tensor, normalizer: float | torch.Tensor,
                latents: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None,
                clips: Optional[torch.Tensor] = None, prompts: Optional[list[str]] = None,
                condition: Optional[torch.Tensor] = None, image: Optional[torch.Tensor] = None,
                micro_batches: int = 1) -> torch.Tensor:
        if latents is None:
            if self.encoders is None:
                raise ValueError("a batch of clips reached a task without encoders (task.features is set)")
            encoded = self.encoders(clips, prompts)
            latents, text, condition, image = (encoded.get(k) for k in ("latents", "text", "condition", "image"))
        sigma, clean, noise, dropped = self.draw(seeds, tuple(latents.shape[1:]))
        device, dtype = latents.device, self.model.patch_embedding.weight.dtype  # the DiT's compute dtype
        if dropped.any():
            text = torch.where(dropped.to(device)[:, None, None], self.empty_text.to(device, text.dtype), text)
        clean = clean.to(device) if self.first_frame_clean else None
        return flow_matching_loss(self.model, latents, text, sigma.to(device), noise.to(device), normalizer,
                                  weights=weights, clean_first_frame=clean, dtype=dtype, condition=condition,
                                  image=image)


def _tokens(shape: tuple[int, ...], hf_config, parallel, o, i: int) -> int:
    """Video tokens of latents `shape`; ConfigError when they do not split over the cp x tp ranks."""
    tokens = int(np.prod(shape[1:]) // np.prod(hf_config.patch_size))
    ranks = parallel.cp_size * parallel.tp_size
    if tokens % ranks:
        where = (f"task.buckets[{i}]" if o.buckets else "task.features" if o.features
                 else "task.num_frames/height/width")
        raise ConfigError(f"{where}: latents {list(shape)} make {tokens} video tokens, which do not split over "
                          f"cp_size x tp_size = {ranks} ranks; choose a size whose tokens they divide")
    return tokens


def _video_source(cfg, data=None, key: str = "data.dataset"):
    sources = resolve_sources(data or cfg.data)
    if len(sources) != 1:
        raise ConfigError(f"{key}: Wan trains on one video dataset, got {len(sources)} "
                          f"({', '.join(s.name for s in sources)})")
    source = sources[0]
    if source.formatting != "video":
        raise ConfigError(f"{key}: {source.name!r} has formatting {source.formatting!r}; Wan trains on video "
                          "rows: give the dataset formatting: video (columns video, caption)")
    return source

