"""What a new user tries first must stay true: the README's two commands and CI running the second."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_an_install_and_run_command_and_a_test_command():
    install_and_run, install_and_test = readme_commands()
    assert install_and_run.startswith("pip install -e") and "python flows/digits_flow.py run" in install_and_run
    assert install_and_test.startswith("pip install -e") and install_and_test.endswith("pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in [line.strip() for line in ci]
