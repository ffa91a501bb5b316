"""pip-audit of requirements*.txt for CI (.ci/run): a known vulnerability fails; a vulnerability service that
cannot be reached is said plainly and passes, since nothing could be audited.

pip-audit looks each pinned dependency up in PyPI's vulnerability data. Where that service does not answer
(no internet: a local package index serves the packages, not their vulnerability data) it either fails with a
connection error or reports every dependency as "not found on PyPI" and exits 0 with "No known
vulnerabilities found": both are read here as "NOT audited", never as clean.

Budget: PIP_AUDIT_TIMEOUT seconds (default 240; about 30 s here, most of it pip resolving the requirements into a
scratch virtualenv). PIP_AUDIT names the pip-audit to run (default the project's .venv; the tests stub it).
Exit status: 1 on a known vulnerability, else 0.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "pip-audit: vulnerability service unreachable, dependencies NOT audited"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main() -> int:
    command = os.environ.get("PIP_AUDIT", str(ROOT / ".venv" / "bin" / "pip-audit"))
    timeout = int(os.environ.get("PIP_AUDIT_TIMEOUT", "240"))
    requirements = sorted(ROOT.glob("requirements*.txt"))
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "audit.json"
        args = [command, "--progress-spinner", "off", "--format", "json", "--output", str(report)]
        for path in requirements:
            args += ["--requirement", str(path)]
        try:
            result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            say(f"{UNREACHABLE} (no answer within {timeout} s)")
            return 0
        try:
            dependencies = json.loads(report.read_text())["dependencies"]
        except (OSError, ValueError, KeyError):
            reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}, no report"])[-1]
            say(f"{UNREACHABLE} ({reason})")
            return 0
    vulnerable = [dependency for dependency in dependencies if dependency.get("vulns")]
    audited = [dependency for dependency in dependencies if "skip_reason" not in dependency]
    if vulnerable:
        say(f"pip-audit: known vulnerabilities in {len(vulnerable)} dependencies:")
        for dependency in vulnerable:
            for vuln in dependency["vulns"]:
                fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
                say(f"  {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in: {fixed})")
        return 1
    if not audited:
        reason = dependencies[0]["skip_reason"] if dependencies else "no dependency listed"
        say(f"{UNREACHABLE} (none of the {len(dependencies)} dependencies could be looked up; first: {reason})")
        return 0
    skipped = sorted(dependency["name"] for dependency in dependencies if "skip_reason" in dependency)
    files = ", ".join(path.name for path in requirements)
    say(f"pip-audit: no known vulnerabilities in {len(audited)} dependencies of {files}")
    if skipped:
        say(f"pip-audit: {len(skipped)} dependencies NOT audited (not found): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
