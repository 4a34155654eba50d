"""Wan 2.1 image-to-video through the chain: JSONL prompts with images -> SynVid (image conditioning stored) ->
distill -> export -> stock WanImageToVideoPipeline, whose few-step latents equal our student sampler's."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch
from cli_helpers import quick_distill_config, run_cli
from test_wan_i2v import FRAMES, H, W, picture

from accvideo.core.images import encode_conditioning, load_images
from accvideo.core.runtime import batch_noise
from accvideo.core.sampling import sample_latents
from accvideo.distill import DistillConfig
from accvideo.models.open import open_model

PROMPTS = ["a red circle moving left", "a blue square", "a cat", "a green star moving up"]


@pytest.fixture(scope="module")
def chain(tiny_i2v_dir, tmp_path_factory):
    """A SynVid of the tiny I2V teacher from JSONL rows with images (one of another size), and a 2-iteration run."""
    from accvideo.distill import distill
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("i2v-chain")
    (root / "images").mkdir()
    rows = []
    for i, prompt in enumerate(PROMPTS):
        size = (W + 16, H + 8) if i == 3 else (W, H)  # the last one is resized and centre-cropped
        picture(10 + i, size).save(root / "images" / f"{i}.png")
        rows.append({"prompt": prompt, "image": f"images/{i}.png"})  # relative to the prompt file
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    synth = dict(steps=6, key_steps=3, frames=FRAMES, height=H, width=W, guidance=3.0, shard_size=2, batch=2)
    synthesize(
        SynthConfig(teacher=str(tiny_i2v_dir), prompts=str(root / "p.jsonl"), out=str(root / "syn"), **synth),
        progress=False,
    )
    distill(quick_distill_config(tiny_i2v_dir, root / "syn", root / "run"), progress=False)
    return root


def test_synvid_items_store_the_image_conditioning(chain, tiny_i2v):
    from accvideo.synthesize import SynVidDataset

    data = SynVidDataset(chain / "syn")
    assert len(data) == len(PROMPTS)
    item = data[3]
    assert set(item["cond"]) == {"prompt_embeds", "image_embeds", "condition"}
    assert item["image"] == str(chain / "images" / "3.png")
    images, notes = load_images([item["image"]], H, W)
    assert len(notes) == 1 and "resized and centre-cropped to 32x32" in notes[0]
    want = encode_conditioning(tiny_i2v, [PROMPTS[3]], images, FRAMES, H, W)
    for name, value in want.items():  # what the teacher saw is what distillation reads back
        torch.testing.assert_close(item["cond"][name], value[0], atol=0, rtol=0)
    assert not torch.equal(data[0]["cond"]["condition"], data[1]["cond"]["condition"])


def test_export_loads_in_stock_i2v_pipeline_and_matches_student(chain, tiny_i2v_dir, tmp_path, capsys):
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    out = tmp_path / "export"
    code, text, err = run_cli(["export", str(chain / "run"), "--format", "diffusers", "--out", str(out)], capsys)
    assert code in (0, None), err
    assert "-step wan image-to-video student (diffusers)" in text  # was "wan student", as a text-to-video one
    assert (out / "image_encoder").is_dir() and (out / "image_processor").is_dir()
    manifest = json.loads((out / "accvideo_export.json").read_text())
    assert manifest["pipeline"] == "WanImageToVideoPipeline"
    assert "image=image, prompt=prompt" in (out / "README.md").read_text()

    pipe = WanImageToVideoPipeline.from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    steps = manifest["call"]["num_inference_steps"]
    pipe.scheduler.set_timesteps(steps)  # what the pipeline itself calls
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(manifest["key_sigmas"], abs=1e-6)

    image, seed = load_images([chain / "images" / "1.png"], H, W)[0][0], 7
    opened = open_model(str(chain / "run"))
    shape = opened.adapter.latent_shape(FRAMES, H, W)
    cond = encode_conditioning(opened.adapter, [PROMPTS[1]], [image], FRAMES, H, W)
    ours = sample_latents(opened.adapter, cond, [seed], shape, opened.plan()).latents
    theirs = pipe(
        image=image,
        prompt=PROMPTS[1],
        height=H,
        width=W,
        num_frames=FRAMES,
        latents=batch_noise([seed], shape),
        output_type="latent",
        **manifest["call"],
    ).frames
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)

    # not vacuous: the exported transformer is the trained student, not the teacher
    teacher = WanTransformer3DModel.from_pretrained(str(tiny_i2v_dir / "transformer")).state_dict()
    moved = max((t - teacher[n]).abs().max().item() for n, t in pipe.transformer.state_dict().items())
    assert moved > 1e-5


def test_lora_export_loads_on_the_stock_i2v_teacher_and_matches_student(chain, tiny_i2v_dir, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    from accvideo.distill import DistillConfig, distill
    from accvideo.export.run import export_run

    run = tmp_path / "run"
    quick = dict(iterations=2, batch=2, lr=1e-3, head_lr=1e-4, head_channels=8, device="cpu", lora_rank=2)
    distill(DistillConfig(teacher=str(tiny_i2v_dir), data=str(chain / "syn"), out=str(run), **quick), progress=False)
    manifest = export_run(run, "lora", tmp_path / "lora")
    pipe = WanImageToVideoPipeline.from_pretrained(str(tiny_i2v_dir))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(tmp_path / "lora"), subfolder="scheduler")

    image, seed = load_images([chain / "images" / "0.png"], H, W)[0][0], 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened = open_model(str(run))
    # peft's "inconsistency ... can be ignored" about add_k_proj / add_v_proj was printed at every `sample`; the
    # loader checks the file's layers against the transformer both ways itself
    assert not [w for w in caught if "While injecting the PEFT adapters" in str(w.message)]
    shape = opened.adapter.latent_shape(FRAMES, H, W)
    cond = encode_conditioning(opened.adapter, [PROMPTS[0]], [image], FRAMES, H, W)
    ours = sample_latents(opened.adapter, cond, [seed], shape, opened.plan()).latents
    kw = dict(height=H, width=W, num_frames=FRAMES, latents=batch_noise([seed], shape), output_type="latent")
    theirs = pipe(image=image, prompt=PROMPTS[0], **kw, **manifest["call"]).frames
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    pipe.unload_lora_weights()
    teacher = pipe(image=image, prompt=PROMPTS[0], **kw, **manifest["call"]).frames
    assert (teacher - ours).abs().max() > 1e-4  # the LoRA moved the student off the teacher


def test_sample_with_image_resizes_and_refuses_in_one_line(chain, tiny_i2v_dir, tiny_wan_dir, tmp_path, capsys):
    common = ["--frames", str(FRAMES), "--size", f"{H}x{W}", "--steps", "2"]
    big = chain / "images" / "3.png"
    clip = tmp_path / "c.mp4"
    code, text, err = run_cli(
        ["sample", "--model", str(tiny_i2v_dir), "--image", str(big), "--out", str(clip), *common], capsys
    )
    assert code in (0, None), err
    assert f"image {big} is 48x40: resized and centre-cropped to 32x32" in text and clip.is_file()

    (tmp_path / "not.png").write_text("not an image")
    cases = [
        (["--model", str(tiny_i2v_dir)], "image-to-video (WanImageToVideoPipeline): give it an image with --image"),
        (["--model", str(tiny_wan_dir), "--image", str(big)], "text-to-video and takes no image; drop --image"),
        (["--model", str(tiny_i2v_dir), "--image", str(tmp_path / "gone.png")], "gone.png does not exist"),
        (["--model", str(tiny_i2v_dir), "--image", str(tmp_path / "not.png")], "not.png is not an image"),
    ]
    for args, words in cases:
        code, _, err = run_cli(["sample", *args, "--out", str(tmp_path / "x.mp4"), *common], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], err
        assert not (tmp_path / "x.mp4").exists()


def test_prompt_files_pair_prompts_with_images_or_refuse(chain, tiny_i2v_dir, tiny_wan_dir, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("a red circle\n")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a cat", "image": "nowhere.png"}\n')
    with_images = str(chain / "p.jsonl")
    cases = [
        (tiny_i2v_dir, tmp_path / "t.txt", "prompt 1 of"),  # I2V without images
        (tiny_wan_dir, with_images, "has an image, but the model is text-to-video"),
        (tiny_i2v_dir, tmp_path / "bad.jsonl", "line 1 of"),
    ]
    for teacher, prompts, words in cases:
        args = ["synthesize", "--teacher", str(teacher), "--prompts", str(prompts), "--out", str(tmp_path / "d")]
        code, _, err = run_cli(args, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert "nowhere.png does not exist" in lines[0] and "prompt file's folder" in lines[0]
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").glob("*.safetensors"))


def test_bench_without_images_refuses_an_i2v_model_in_one_line(tiny_i2v_dir, tmp_path, capsys):
    code, _, err = run_cli(["bench", "--model", str(tiny_i2v_dir), "--out", str(tmp_path / "b")], capsys)
    lines = err.strip().splitlines()  # bench's prompts have no images
    assert code == 2 and len(lines) == 1 and "this model is image-to-video" in lines[0], err


def test_distill_with_real_clips_conditions_each_on_its_first_frame(chain, tiny_i2v_dir, tmp_path, capsys):
    """real_data=world with the Wan 2.1 I2V teacher: every real clip carries its own image conditioning (CLIP image
    embedding and first-frame condition), so the heads' reals mix rows of real clips into the SynVid batch."""
    from accvideo.distill.reals import shared_real_clips
    from accvideo.distill.trainer import Distiller

    args = ["distill", "--teacher", str(tiny_i2v_dir), "--data", str(chain / "syn"), "--out", str(tmp_path / "r")]
    args += ["real_data=world", "real_clips=3", "real_weight=1.0", "iterations=1", "batch=2", "head_channels=8"]
    code, _, err = run_cli([*args, "device=cpu"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["real_clips"] == {"used": 3, "skipped": 0}
    cfg = DistillConfig(
        teacher=str(tiny_i2v_dir),
        data=str(chain / "syn"),
        out=str(tmp_path / "r2"),
        real_data="world",
        real_clips=3,
        head_channels=8,
        device="cpu",
    )
    d = Distiller(cfg)
    shape = (FRAMES, H, W)
    d.reals = shared_real_clips("world", tmp_path / "r", d.pair.teacher, shape, 3, cfg.seed, False)  # the cache
    latents, cond = d.data.load(torch.tensor([0, 1]))
    use, pick, seeds = torch.tensor([False, True]), torch.tensor([0, 2]), torch.tensor([4, 9])
    real, real_cond = d.reals.mix(d.at(latents, 1), cond, use, pick, seeds, d.t[1])
    x, c = d.reals.noised(pick[1:], [9], d.t[1], d.device)
    assert set(real_cond) == {"prompt_embeds", "image_embeds", "condition"}
    assert torch.equal(real[1], x[0]) and torch.equal(real[0], d.at(latents, 1)[0])
    for name in real_cond:  # row 1 is the real clip's, row 0 the trajectory's own
        assert torch.equal(real_cond[name][1], c[name][0]) and torch.equal(real_cond[name][0], cond[name][0])
    assert not torch.equal(c["condition"][0], cond["condition"][1])


def test_resume_notices_an_image_replaced_under_its_path(tiny_i2v_dir, tmp_path, capsys):
    """Shards record each image's sha256: a rerun after an image's bytes changed is refused in one line (the shard
    is kept), --overwrite redoes it, and a shard from before the digests resumes as it was made (by path)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.synthesize.shards import META_KEY, read_header, shard_path

    (tmp_path / "images").mkdir()
    for i in range(2):
        picture(20 + i, (W, H)).save(tmp_path / "images" / f"{i}.png")
    rows = [{"prompt": p, "image": f"images/{i}.png"} for i, p in enumerate(PROMPTS[:2])]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "syn"
    args = ["synthesize", "--teacher", str(tiny_i2v_dir), "--prompts", str(tmp_path / "p.jsonl"), "--out", str(out)]
    args += ["--steps", "2", "--key-steps", "2", "--frames", str(FRAMES), "--size", f"{H}x{W}", "--shard-size", "2"]
    assert run_cli(args, capsys)[0] == 0
    shard = shard_path(out, 0)
    header = read_header(shard)
    want = [hashlib.sha256((tmp_path / "images" / f"{i}.png").read_bytes()).hexdigest() for i in range(2)]
    assert [it["image_sha256"] for it in header.items] == want
    assert run_cli(args, capsys)[0] == 0  # unchanged images: the run resumes (nothing to do)

    picture(99, (W, H)).save(tmp_path / "images" / "1.png")  # same path, other bytes
    before = shard.read_bytes()
    code, _, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"another version of image {tmp_path / 'images' / '1.png'}" in lines[0] and "--overwrite" in lines[0]
    assert shard.read_bytes() == before
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0  # the shard is redone from the new image
    new = hashlib.sha256((tmp_path / "images" / "1.png").read_bytes()).hexdigest()
    assert [it["image_sha256"] for it in read_header(shard).items] == [want[0], new] and new != want[1]

    # a shard written before images were hashed holds no digests: it is checked by path, as it was made
    with safe_open(str(shard), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta[META_KEY])
    for item in old["items"]:
        del item["image_sha256"]
    save_file(tensors, str(shard), metadata={**meta, META_KEY: json.dumps(old)})
    picture(98, (W, H)).save(tmp_path / "images" / "0.png")
    assert run_cli(args, capsys)[0] == 0
    assert not read_header(shard).hashes_images  # resumed, not redone


def test_images_moved_with_the_same_bytes_make_the_same_items(tiny_i2v_dir, tmp_path, capsys):
    """A prompt file moved with its images (same bytes, other paths): synthesize refused the resume ("other prompts
    or seeds (or images)") and `sample --prompts` sampled every row again, though what makes an item is its image's
    bytes. Both keep their work now; a kept clip's manifest line names the image where it is now."""
    from accvideo.synthesize.shards import shard_path

    first, moved = tmp_path / "first", tmp_path / "moved"
    (first / "images").mkdir(parents=True)
    for i in range(2):
        picture(30 + i, (W, H)).save(first / "images" / f"{i}.png")
    rows = [{"prompt": p, "seed": 3 + i, "image": f"images/{i}.png"} for i, p in enumerate(PROMPTS[:2])]
    (first / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--steps", "2", "--frames", str(FRAMES), "--size", f"{H}x{W}"]

    def synthesize(folder):
        args = ["synthesize", "--teacher", str(tiny_i2v_dir), "--prompts", str(folder / "p.jsonl")]
        return run_cli(
            [*args, "--out", str(tmp_path / "syn"), "--key-steps", "2", "--shard-size", "2", *common], capsys
        )

    def sample(folder):
        args = ["sample", "--model", str(tiny_i2v_dir), "--prompts", str(folder / "p.jsonl")]
        return run_cli([*args, "--out", str(tmp_path / "clips"), *common], capsys)

    assert synthesize(first)[0] == 0 and sample(first)[0] in (0, None)
    shard, clips = shard_path(tmp_path / "syn", 0), tmp_path / "clips"
    before = shard.read_bytes(), {p.name: p.read_bytes() for p in clips.glob("*.mp4")}
    first.rename(moved)
    code, _, err = synthesize(moved)
    assert code == 0 and shard.read_bytes() == before[0], err
    code, out, err = sample(moved)
    assert code in (0, None) and "2 of 2 clips are already in" in out, err
    assert {p.name: p.read_bytes() for p in clips.glob("*.mp4")} == before[1]
    listed = [json.loads(line) for line in (clips / "manifest.jsonl").read_text().splitlines()]
    assert [r["image"] for r in listed] == [str(moved / "images" / f"{i}.png") for i in range(2)]
    # other bytes at the new place are another item: refused (synthesize) or sampled again (sample), as before
    picture(99, (W, H)).save(moved / "images" / "1.png")
    code, _, err = synthesize(moved)
    made = f"was made from other image bytes as item 1 ({first / 'images' / '1.png'}) than {moved / 'images'}"
    assert code == 2 and made in err, err
    code, out, err = sample(moved)
    assert code in (0, None) and "1 of 2 clips are already in" in out, err


def test_single_file_export_names_the_image_embedder_as_the_wan_repository_does(chain, tmp_path, capsys):
    """The I2V transformer's image projection and image keys (k_img, v_img, norm_k_img) map back, by diffusers' own
    reader of the layout, to the diffusers export's transformer, tensor for tensor."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    for fmt in ("single-file", "diffusers"):
        code, _, err = run_cli(["export", str(chain / "run"), "--format", fmt, "--out", str(tmp_path / fmt)], capsys)
        assert code == 0, err
    state = load_file(tmp_path / "single-file" / "transformer.safetensors")
    assert {
        "img_emb.proj.1.weight",
        "blocks.0.cross_attn.k_img.weight",
        "blocks.0.cross_attn.norm_k_img.weight",
    } <= set(state)
    want = WanTransformer3DModel.from_pretrained(str(tmp_path / "diffusers" / "transformer")).state_dict()
    back = convert_wan_transformer_to_diffusers(dict(state))
    assert back.keys() == want.keys() and all(torch.equal(back[k], want[k]) for k in want)
