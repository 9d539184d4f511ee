"""The README's "Cloud" section: its YAML is a valid configuration, its profile is what dsm prints,
and every `dsm` command in it parses with dsm's own command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from dsm import config as config_mod
from dsm.cli import main
from dsm.ingest import fetch_cloud

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("\n## Cloud\n"):text.index("\n## ", text.index("\n## Cloud\n") + 1)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), re.S)


def test_the_stac_example_is_a_valid_configuration() -> None:
    (block,) = _blocks("yaml")
    raw = {"region": {"bbox": [108.0, 38.0, 110.9, 40.4]}, "dates": {"start": "2016-01-05", "end": "2016-01-06"},
           "stores": {"cube": "s3://b/cube.zarr"}, **yaml.safe_load(block)}  # fmt: skip
    cfg = config_mod.from_dict(raw, source="README")
    assert cfg.inputs.stac.assets["lst"].qc.asset == "QC_Day" and cfg.inputs.mod11a1 is None


def test_the_aws_profile_is_the_one_dsm_prints() -> None:
    (block,) = _blocks("ini")
    assert block.strip().splitlines() == fetch_cloud.aws_profile_lines(["NSIDC_CPRD"])[:3]


def _dsm_commands() -> list[list[str]]:
    out = []
    for block in _blocks("bash") + _blocks("cron"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].split("|")[0].split(">>")[0]
            words = shlex.split(line)
            for i, w in enumerate(words):
                if w == "dsm" or w.endswith("bin/dsm"):
                    out.append(words[i + 1:])
                    break
    return out


def _parse(group: click.Group, args: list[str]) -> None:
    """Parse ``args`` (sub-command first: the README gives no group options) with click."""
    cmd = group.commands[args[0]]
    if isinstance(cmd, click.Group):
        _parse(cmd, args[1:])
    else:
        cmd.make_context(args[0], list(args[1:]))


def test_every_dsm_command_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("my_region.yaml", "my_region.earthdata.yaml"):
        (tmp_path / name).write_text("{}\n")
    commands = _dsm_commands()
    assert [c[0] for c in commands] == ["fetch", "config", "run", "deploy", "run"]
    assert ["run", "my_region.yaml", "--until", "today"] in commands
    for args in commands:
        _parse(main, args)
