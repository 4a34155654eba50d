"""One way in: every verb takes --config YAML, --preset, generated flags and key=value, in that precedence."""

import dataclasses

import pytest
import yaml
from cli_helpers import run_cli

from accvideo.cli import BY_NAME, VERBS, _load, resolve
from accvideo.core.config import config_flags

# a required value for verbs whose default refuses to build (positional folders, a prompt count)
NEEDS = {"prompts": ["n=3"], "export": ["RUN", "--out", "D"], "tiny-model": ["DIR"], "evaluate": ["--model", "builtin"]}


def scalar_field(cls):
    """An int field with a default that every verb has (seed, or the first int), to push through four layers."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in ("seed", "steps", "iterations", "n", "layers", "batch"):
        if name in fields and fields[name].type in ("int", int):
            return name
    return next(f.name for f in dataclasses.fields(cls) if f.type in ("int", int))


def three_values(verb, cls):
    """A field and three valid values of it, to push through YAML, flag and key=value."""
    if verb == "export":  # no numbers to set: its dtype
        return "dtype", ["float16", "bfloat16", "float32"]
    name = scalar_field(cls)
    default = getattr(resolve(BY_NAME[verb], NEEDS.get(verb, [])), name)
    return name, [default + 11, default + 12, default + 13]


@pytest.mark.parametrize("verb", [v.name for v in VERBS])
def test_every_verb_takes_the_four_ways_in_precedence_order(verb, tmp_path):
    v = BY_NAME[verb]
    cls = _load(v.config)
    name, (in_yaml, in_flag, in_key) = three_values(verb, cls)
    flag = "--" + name.replace("_", "-")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({name: in_yaml}))
    base = [*NEEDS.get(verb, []), "--config", str(tmp_path / "c.yaml")]
    assert getattr(resolve(v, base), name) == in_yaml
    assert getattr(resolve(v, [*base, flag, str(in_flag)]), name) == in_flag  # a flag beats the YAML
    got = resolve(v, [*base, flag, str(in_flag), f"{name}={in_key}"])
    assert getattr(got, name) == in_key  # key=value beats the flag
    got = resolve(v, [f"{name}={in_key}", *base, flag, str(in_flag)])
    assert getattr(got, name) == in_key  # wherever it stands on the line
    # every field has its own flag, and a flag never passes a value the user did not give
    assert len({f.option for f in config_flags(cls)}) == len(config_flags(cls))
    assert resolve(v, base) == resolve(v, [*NEEDS.get(verb, []), f"{name}={in_yaml}"])


def test_a_config_path_under_home_is_expanded_like_every_other_path(tmp_path, monkeypatch):
    """--config '~/c.yaml' (quoted, so the shell leaves it) said the file does not exist; --out, --model and
    --prompts expand ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.yaml").write_text("seed: 7\n")
    assert resolve(BY_NAME["prompts"], ["n=3", "--config", "~/c.yaml"]).seed == 7


@pytest.mark.parametrize("verb", [v.name for v in VERBS])
def test_presets_sit_below_the_yaml(verb, tmp_path):
    v = BY_NAME[verb]
    if not v.presets:  # the one preset is the config's defaults
        assert resolve(v, [*NEEDS.get(verb, []), "--preset", "default"]) == resolve(v, NEEDS.get(verb, []))
        return
    for preset, ref in v.presets.items():
        want = _load(ref)()
        assert resolve(v, [*NEEDS.get(verb, []), "--preset", preset]) == want
        name = scalar_field(type(want))
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({name: getattr(want, name) + 1}))
        got = resolve(v, ["--preset", preset, "--config", str(tmp_path / "c.yaml")])
        assert getattr(got, name) == getattr(want, name) + 1
        # the rest of the preset survives the YAML
        others = [f.name for f in dataclasses.fields(want) if f.name != name]
        assert all(getattr(got, f) == getattr(want, f) for f in others)


def test_distill_preset_paper_is_the_papers_recipe():
    cfg = resolve(BY_NAME["distill"], ["--preset", "paper", "lr=1e-5"])
    assert (cfg.iterations, cfg.batch, cfg.micro_batch, cfg.lr) == (1200, 32, 1, 1e-5)


def test_runtime_options_are_one_nested_setting(tmp_path):
    v = BY_NAME["sample"]
    cfg = resolve(v, ["--offload", "--vae-tiling", "on", "runtime.compile=true"])
    assert (cfg.runtime.offload, cfg.runtime.vae_tiling, cfg.runtime.compile) == (True, "on", True)
    (tmp_path / "r.yaml").write_text("runtime:\n  vae_tiling: off\n")
    assert resolve(v, ["--config", str(tmp_path / "r.yaml")]).runtime.vae_tiling == "off"
    assert resolve(BY_NAME["synthesize"], ["--no-offload"]).runtime.offload is False


def test_yaml_settings_are_sampled_not_overridden_by_defaults(tiny_wan_dir, tmp_path, capsys):
    """The issue's case: prompt, frames and steps in a YAML were lost to the CLI's own defaults."""
    settings = {
        "model": str(tiny_wan_dir),
        "prompt": "a blue square moving up",
        "frames": 5,
        "steps": 2,
        "height": 32,
        "width": 32,
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(settings))
    code, _, err = run_cli(["sample", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o.mp4")], capsys)
    assert code == 0, err
    resolved = yaml.safe_load((tmp_path / "o.yaml").read_text())
    assert {k: resolved[k] for k in settings} == settings
    assert resolved["resolved_steps"] == 2

    # the record it wrote is no --config: its extra keys read as unknown settings ("did you mean ...")
    code, _, err = run_cli(["sample", "--config", str(tmp_path / "o.yaml"), "--out", str(tmp_path / "p.mp4")], capsys)
    from accvideo.sample.config import SampleConfig

    extra = [k for k in resolved if k not in {f.name for f in dataclasses.fields(SampleConfig)}]
    assert code == 2 and err == (
        f"error: {tmp_path / 'o.yaml'} is the record a command writes beside its output (every setting, plus "
        f"{', '.join(extra[:3])}, ...); --config takes settings only: copy it without those keys, or rerun the "
        "command that wrote it\n"
    )
    # an empty YAML (or comments only) holds no settings: the defaults, as without --config
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    small = ["--model", str(tiny_wan_dir), "--frames", "5", "--size", "32x32", "--steps", "2"]
    code, _, err = run_cli(
        ["sample", "--config", str(tmp_path / "empty.yaml"), *small, "--out", str(tmp_path / "e.mp4")], capsys
    )
    assert code == 0 and yaml.safe_load((tmp_path / "e.yaml").read_text())["prompt"] == SampleConfig.prompt, err


@pytest.mark.parametrize(
    "args, words",
    [
        (["sample", "promt=x"], "unknown setting 'promt'; did you mean 'prompt'?"),
        (["sample", "--promt", "x"], "unrecognized arguments: --promt (did you mean --prompt?)"),
        (["sample", "--Steps", "3"], "(did you mean --steps?)"),
        (["sample", "--xyz", "3"], "unrecognized arguments: --xyz; see accvideo sample --help"),
        (["sample", "--frames", "x"], "--frames takes int values; got 'x'"),
        (["sample", "--size", "64"], "--size must look like HxW"),
        (["sample", "--preset", "x"], "--preset must be one of default; got 'x'"),
        (["distill", "--preset", "fast"], "--preset must be one of default, paper, quick; got 'fast'"),
        (["nope"], "unknown command 'nope'; one of: prompts,"),
        (["sampel"], "unknown command 'sampel'; did you mean `accvideo sample`?"),
        (
            ["sample", "--size", "32x32x5", "--frames", "9"],
            "--size 32x32x5 gives frames 5 and --frames gives 9; give it once",
        ),
        (["help"], "did you mean `accvideo --help`?"),
        (["teacher", "trian"], "did you mean `accvideo teacher train`?"),
        (["prompts", "n=2", "/data/run=1"], "unexpected argument '/data/run=1'"),  # a path, not a setting '/data/run'
        (["sample", "--seed", str(2**64 - 1)], "seed must be a signed 64-bit integer (-2**63 to 2**63 - 1 = "),
        (["export", "R", "S", "--out", "D"], "unexpected argument 'S'"),
        (["prompts"], "--n is required"),
    ],
)
def test_bad_settings_are_one_line(args, words, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2 and words in err and err.count("\n") == 1, err


def test_malformed_and_unknown_yaml_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("prompt: [unclosed\n")
    code, _, err = run_cli(["sample", "--config", str(tmp_path / "bad.yaml")], capsys)
    assert code == 2 and "not valid YAML" in err and err.count("\n") == 1
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    code, _, err = run_cli(["sample", "--config", str(tmp_path / "list.yaml")], capsys)
    assert code == 2 and "mapping of settings" in err
    (tmp_path / "typo.yaml").write_text("framez: 9\n")
    code, _, err = run_cli(["sample", "--config", str(tmp_path / "typo.yaml")], capsys)
    assert code == 2 and "unknown key in" in err and "'frames'" in err


def test_help_lists_the_verbs_in_pipeline_order(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    order = [out.index(f"  {v} ") for v in ("prompts", "synthesize", "distill", "sample", "export", "evaluate")]
    assert order == sorted(order)
    code, out, _ = run_cli(["synthesize", "--help"], capsys)
    assert code == 0 and "--key-steps" in out and "--offload" in out and "--config" in out
    # each flag ends in the value used without it: list defaults too, and the default preset's (was: none shown)
    code, out, _ = run_cli(["ablate", "--help"], capsys)
    out = " ".join(out.split())
    assert code == 0 and "the m of every row [1,2,3,5]" in out and "seeds of each trained row [0,1,2]" in out
    assert "--iterations ITERATIONS [200]" in out  # ablate's preset, not DistillConfig's 1200


def test_a_text_setting_takes_on_off_yes_no_as_words_from_key_value_and_yaml(tmp_path):
    """Was: YAML 1.1 read `off` as a boolean, so `mixed_precision=off` arrived as 'False' and was refused."""
    v = BY_NAME["distill"]
    (tmp_path / "c.yaml").write_text("mixed_precision: off\nreal_data: no\nadv: no\n")
    from_yaml = resolve(v, ["--config", str(tmp_path / "c.yaml")])
    assert (from_yaml.mixed_precision, from_yaml.real_data, from_yaml.adv) == ("off", "no", False)
    given = resolve(v, ["mixed_precision=off", "real_data='on'", "adv=no", "lr=1e-3", "mixed_precision=bf16"])
    assert (given.mixed_precision, given.real_data, given.adv, given.lr) == ("bf16", "on", False, 1e-3)
    assert resolve(v, ["real_data=world", "real_data=null"]).real_data is None


def test_numbers_are_decimal_from_key_value_and_yaml_as_from_flags(tmp_path, capsys):
    """Was: YAML 1.1 read `seed=010` as 8 (octal), `iterations=1:30` as 90 (base 60), `lr=1:30.5` as 90.5 and
    `iterations=0x2` as 2, where `--seed 010` is 10 and `--iterations 0x2` is refused."""
    v = BY_NAME["distill"]
    assert resolve(v, ["seed=010"]).seed == resolve(v, ["--seed", "010"]).seed == 10
    (tmp_path / "c.yaml").write_text("seed: 010\niterations: 0012\nlr: 2.5e-4\n")
    from_yaml = resolve(v, ["--config", str(tmp_path / "c.yaml")])
    assert (from_yaml.seed, from_yaml.iterations, from_yaml.lr) == (10, 12, 2.5e-4)
    assert resolve(v, ["lr=1e-3", "seed=+7"]).lr == 1e-3 and resolve(v, ["seed=+7"]).seed == 7
    for bad in ("iterations=1:30", "iterations=0x2", "iterations=0b10", "lr=1:30.5"):
        code, _, err = run_cli(["distill", "--teacher", "builtin", "--data", str(tmp_path), bad], capsys)
        key, value = bad.split("=")
        assert code == 2 and f"setting {key}" in err and f"'{value}'" in err and "Traceback" not in err, bad


def test_text_is_taken_literally_whichever_way_it_comes_in(tmp_path):
    """`${x}` is a user's prompt text, never an OmegaConf interpolation (which would refuse or rewrite it)."""
    v = BY_NAME["sample"]
    text = "a red circle ${x} moving ${left}"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"prompt": text, "negative_prompt": "${prompt}"}))
    from_yaml = resolve(v, ["--config", str(tmp_path / "c.yaml")])
    assert from_yaml.prompt == text and from_yaml.negative_prompt == "${prompt}"
    assert resolve(v, ["--prompt", text]).prompt == text
    assert resolve(v, [f"prompt={text}"]).prompt == text


# words a phrase never ends on: a field comment that ends on one ran on to the next line, which --help never shows
DANGLING = {"a", "an", "the", "its", "their", "and", "or", "of"}


@pytest.mark.parametrize("verb", [v.name for v in VERBS])
def test_no_flag_help_stops_mid_sentence(verb):
    """Each flag's help is its field's one-line comment (teacher train's --init stopped at 'text encoder, its')."""
    for flag in config_flags(_load(BY_NAME[verb].config)):
        text = flag.help.rsplit(" [", 1)[0] if flag.help.endswith("]") else flag.help  # without its [default]
        if text:
            assert text[-1] not in ",:;(-" and text.split()[-1].lower() not in DANGLING, (flag.option, text)
