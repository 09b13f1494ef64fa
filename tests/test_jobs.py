"""Input expansion and output planning: which files a command line means, and where each stem goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvr_cli.errors import UsageError
from uvr_cli.io.jobs import STDIN, expand_inputs, plan_outputs


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """songs/{a.wav, b.FLAC, notes.txt, live/a.wav, live/deep/c.mp3}, empty/ ; the cwd is tmp_path."""
    for rel in ("songs/a.wav", "songs/b.FLAC", "songs/notes.txt", "songs/live/a.wav", "songs/live/deep/c.mp3"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def plan(jobs, template="{name}_{stem}.{ext}", stems=("vocals", "instrumental"), out="out", agg=10.0):
    plan_outputs(jobs, out_dir=out, template=template, stems=list(stems), model="HP2", agg=agg, ext="wav")
    return jobs


def test_folders_are_searched_recursively_for_audio_only(tree):
    jobs = expand_inputs(["songs"])
    assert [j.source for j in jobs] == ["songs/a.wav", "songs/b.FLAC", "songs/live/a.wav", "songs/live/deep/c.mp3"]
    assert [j.folder for j in jobs] == [".", ".", "live", "live/deep"]
    assert all(j.error is None for j in jobs)


def test_globs_are_expanded_by_uvr_and_duplicates_dropped(tree):
    jobs = expand_inputs(["songs/**/*.wav", "songs/a.wav", "./songs/live"])
    assert [j.source for j in jobs] == ["songs/a.wav", "songs/live/a.wav", "songs/live/deep/c.mp3"]


def test_inputs_that_match_nothing_become_failed_jobs(tree):
    jobs = expand_inputs(["missing.wav", "songs/*.ogg", "empty", STDIN])
    assert [j.error is not None for j in jobs] == [True, True, True, False]
    assert "no such file" in jobs[0].error and "matches no file" in jobs[1].error and "no audio" in jobs[2].error
    assert jobs[3].source == STDIN and jobs[3].display == "<stdin>"


def test_default_names_and_template_fields(tree):
    jobs = plan(expand_inputs(["songs/a.wav"]), template="{model}/{name}.{stem}.agg{agg}.{ext}", agg=7.5)
    assert jobs[0].outputs == {
        "vocals": str(tree / "out/HP2/a.vocals.agg7.5.wav"),
        "instrumental": str(tree / "out/HP2/a.instrumental.agg7.5.wav"),
    }
    one = plan(expand_inputs(["songs/b.FLAC"]), stems=["vocals"])[0]
    assert one.outputs == {"vocals": str(tree / "out/b_vocals.wav")}


def test_two_inputs_writing_one_file_is_an_error_that_suggests_dir(tree):
    with pytest.raises(UsageError, match=r"songs/live/a\.wav and songs/a\.wav would both write .*\{dir\}/"):
        plan(expand_inputs(["songs"]))
    with pytest.raises(UsageError, match=r"would both write .* separate runs"):  # {dir} is '.' for both
        plan(expand_inputs(["songs/live/a.wav", "songs/a.wav"]))
    jobs = plan(expand_inputs(["songs"]), template="{dir}/{name}_{stem}.{ext}")
    assert jobs[0].outputs["vocals"] == str(tree / "out/a_vocals.wav")
    assert jobs[2].outputs["vocals"] == str(tree / "out/live/a_vocals.wav")


@pytest.mark.parametrize(
    "extra, sources, remedy, one_output",
    [
        ("songs/b.wav", ["songs/b.wav", "songs/b.FLAC"], "{name}_{inext}_{stem}.{ext}", "b_wav_vocals.wav"),
        ("songs/live/a.flac", ["songs"], "{dir}/{name}_{inext}_{stem}.{ext}", "live/a_flac_vocals.wav"),
    ],
    ids=["same-folder", "folders-and-extensions"],
)
def test_a_clash_gets_a_template_that_resolves_it(tree, extra, sources, remedy, one_output):
    (tree / extra).write_bytes(b"x")
    with pytest.raises(UsageError, match="would both write") as refused:
        plan(expand_inputs(sources))
    assert f"--name '{remedy}'" in str(refused.value)
    jobs = plan(expand_inputs(sources), template=remedy)
    outputs = [out for job in jobs for out in job.outputs.values()]
    assert len(set(outputs)) == len(outputs) == 2 * len(jobs)
    assert str(tree / "out" / one_output) in outputs


@pytest.mark.parametrize(
    "template, message",
    [("{name}_{stem}.mp3", r"ends in \.mp3 but the output format is wav: .* --format mp3"),
     ("{stem}/{name}.M4A", r"ends in \.m4a .* another --format")],
)  # fmt: skip
def test_a_literal_extension_must_be_the_output_formats(tree, template, message):
    with pytest.raises(UsageError, match=message):
        plan(expand_inputs(["songs/a.wav"]), template=template)
    assert plan(expand_inputs(["songs/a.wav"]), template="{name}_{stem}.wav")[0].outputs


def test_a_template_without_stem_is_refused_for_two_stems(tree):
    with pytest.raises(UsageError, match=r"both stems .* add \{stem\}"):
        plan(expand_inputs(["songs/a.wav"]), template="{name}.{ext}")
    assert plan(expand_inputs(["songs/a.wav"]), template="{name}.{ext}", stems=["vocals"])[0].outputs


@pytest.mark.parametrize(
    "template, message",
    [
        ("{nope}.wav", "unknown field"),
        ("../{name}_{stem}.{ext}", r"may not contain '\.\.'"),
        ("/tmp/{name}_{stem}.{ext}", "relative path"),
        ("{name", "--name"),
    ],
)
def test_bad_templates_are_usage_errors(tree, template, message):
    with pytest.raises(UsageError, match=message):
        plan(expand_inputs(["songs/a.wav"]), template=template)


def test_an_output_may_not_overwrite_an_input(tree):
    with pytest.raises(UsageError, match="would overwrite an input"):
        plan(
            expand_inputs(["songs/a.wav", "songs/live/a.wav"]),
            template="{dir}/{name}.{ext}",
            stems=["vocals"],
            out="songs/live",
        )


def test_stdout_takes_one_stem_of_one_input(tree):
    assert plan(expand_inputs([STDIN]), stems=["vocals"], out=STDIN)[0].outputs == {"vocals": STDIN}
    with pytest.raises(UsageError, match="--stem"):
        plan(expand_inputs([STDIN]), out=STDIN)
    with pytest.raises(UsageError, match="exactly one input"):
        plan(expand_inputs(["songs/a.wav", "songs/b.FLAC"]), stems=["vocals"], out=STDIN)


def test_failed_inputs_get_no_outputs_and_cause_no_collision(tree):
    jobs = plan(expand_inputs(["songs/a.wav", "elsewhere/a.wav"]))
    assert jobs[0].outputs and jobs[1].outputs == {} and jobs[1].error


def test_shards_partition_the_inputs_whatever_their_order():
    from uvr_cli.io.jobs import Job, select_shard

    jobs = [Job(source=f"corpus/clip{i:04d}.wav") for i in range(400)]
    shares = [select_shard(jobs, k, 4) for k in range(1, 5)]
    sources = [sorted(j.source for j in share) for share in shares]
    assert sorted(s for share in sources for s in share) == sorted(j.source for j in jobs)
    assert all(60 < len(share) < 140 for share in sources)
    reordered = [sorted(j.source for j in select_shard(list(reversed(jobs)), k, 4)) for k in range(1, 5)]
    assert reordered == sources


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3", "1/0", "auto/x"])
def test_bad_shard_specs_are_usage_errors(text):
    from uvr_cli.io.jobs import parse_shard

    with pytest.raises(UsageError):
        parse_shard(text, {"SLURM_ARRAY_TASK_ID": "1"})


SLURM = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "16", "SLURM_ARRAY_TASK_COUNT": "16"}


@pytest.mark.parametrize(
    "text, environ, share",
    [
        ("auto", {**SLURM, "SLURM_ARRAY_TASK_ID": "3"}, (3, 16, "Slurm array task 3 of 1-16")),
        ("auto/16", {**SLURM, "SLURM_ARRAY_TASK_ID": "16"}, (16, 16, "Slurm array task 16 of 1-16")),
        ("auto",  # --array=0-30:10: ids 0, 10, 20, 30
         {"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "30",
          "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4, "Slurm array task 20 of 0-30")),
        ("auto/8", {"JOB_COMPLETION_INDEX": "0"}, (1, 8, "JOB_COMPLETION_INDEX=0")),
        ("auto/8", {"AWS_BATCH_JOB_ARRAY_INDEX": "7"}, (8, 8, "AWS_BATCH_JOB_ARRAY_INDEX=7")),
        ("2/5", {**SLURM, "SLURM_ARRAY_TASK_ID": "3"}, (2, 5, None)),  # given K/N wins over the environment
        # `sbatch --array=3` resubmits one task: Slurm then says 3-3, the array's spec keeps its share
        ("auto/1-16", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3",
                       "SLURM_ARRAY_TASK_COUNT": "1"}, (3, 16, "Slurm array task 3 of 1-16")),
        ("auto/0-30:10", {"SLURM_ARRAY_TASK_ID": "20"}, (3, 4, "Slurm array task 20 of 0-30:10")),
        ("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3",
                  "SLURM_ARRAY_TASK_COUNT": "1"},
         (1, 1, "Slurm array task 3 of 3-3; one task of a larger array resubmitted alone keeps its share with "
                "--shard auto/FIRST-LAST")),
    ],
)  # fmt: skip
def test_shard_auto_takes_the_share_of_the_job_array_task(text, environ, share):
    from uvr_cli.io.jobs import parse_shard

    k, n, found = parse_shard(text, environ)
    assert (k, n) == share[:2]
    assert found == (None if share[2] is None else f"shard {k}/{n} ({share[2]})")


@pytest.mark.parametrize(
    "text, environ, message",
    [
        ("auto", {}, "no job array found"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_MIN is unset"),
        ("auto", {**SLURM, "SLURM_ARRAY_TASK_ID": "three"}, "'three' is not a whole number"),
        ("auto", {"JOB_COMPLETION_INDEX": "2"}, "use --shard auto/N"),
        ("auto/8", {**SLURM, "SLURM_ARRAY_TASK_ID": "3"}, "the job array has 16 tasks, not 8"),
        ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, "outside 4 tasks"),
        ("auto/1-4", {**SLURM, "SLURM_ARRAY_TASK_ID": "5"}, "task 5 is not one of 1-4"),
        ("auto/0-30:10", {"SLURM_ARRAY_TASK_ID": "15"}, "task 15 is not one of 0-30:10"),
        ("auto/1-4", {"JOB_COMPLETION_INDEX": "2"}, "SLURM_ARRAY_TASK_ID is unset"),
        ("auto/4-1", {"SLURM_ARRAY_TASK_ID": "2"}, "from FIRST to LAST in whole steps"),
        ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9",
                  "SLURM_ARRAY_TASK_COUNT": "3"}, "not evenly spaced"),  # --array=1,5,9 is, 1,2,9 (same range) not
    ],
)  # fmt: skip
def test_shard_auto_says_what_it_cannot_find(text, environ, message):
    from uvr_cli.io.jobs import parse_shard

    if message == "not evenly spaced":
        assert parse_shard(text, environ)[:2] == (2, 3)
        environ = {**environ, "SLURM_ARRAY_TASK_ID": "2"}
    with pytest.raises(UsageError, match=message):
        parse_shard(text, environ)


def test_dir_of_a_glob_match_is_its_path_below_the_patterns_fixed_part(tree):
    jobs = plan(expand_inputs(["songs/**/*.wav", "./songs/live/de*/*.mp3"]), template="{dir}/{name}_{stem}.{ext}")
    assert [(j.source, j.folder) for j in jobs] == [
        ("songs/a.wav", "."),
        ("songs/live/a.wav", "live"),
        ("./songs/live/deep/c.mp3", "deep"),
    ]
    assert jobs[1].outputs["vocals"] == str(tree / "out/live/a_vocals.wav")  # no collision with songs/a.wav
    assert jobs[2].outputs["vocals"] == str(tree / "out/deep/c_vocals.wav")
