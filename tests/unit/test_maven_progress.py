"""The Kafka jar fetch's progress: Maven's download lines counted and shown as they come."""

from __future__ import annotations

import io
import sys

from millstream.stack.maven import downloaded_bytes, run_maven

CENTRAL = "https://repo.maven.apache.org/maven2"


def test_download_lines_give_their_size_and_others_none() -> None:
    assert downloaded_bytes(f"Downloaded from central: {CENTRAL}/a/b-1.jar (6.9 MB at 12 MB/s)"
                            ) == 6_900_000
    assert downloaded_bytes(f"Downloaded from central: {CENTRAL}/a/b.pom (355 kB at 1 MB/s)"
                            ) == 355_000
    assert downloaded_bytes(f"Downloaded from central: {CENTRAL}/a/b.sha1 (40 B at 2 kB/s)"
                            ) == 40
    assert downloaded_bytes(f"Downloading from central: {CENTRAL}/a/b-1.jar") is None
    assert downloaded_bytes("[INFO] BUILD SUCCESS") is None


def test_a_run_counts_downloads_shows_progress_and_keeps_the_tail() -> None:
    lines = [f"Downloaded from central: {CENTRAL}/x/f{i}.jar (1.5 MB at 3 MB/s)"
             for i in range(3)] + ["[ERROR] no such artifact"]
    script = "import sys\nfor line in sys.argv[1:]: print(line, flush=True)\nsys.exit(3)"
    shown = io.StringIO()
    run = run_maven([sys.executable, "-c", script, *lines], "Kafka 9.9 jars", out=shown,
                    every=0.0)
    assert (run.returncode, run.files, run.bytes) == (3, 3, 4_500_000)
    assert run.tail[-1] == "[ERROR] no such artifact"
    progress = shown.getvalue().splitlines()
    assert len(progress) == 3
    assert progress[-1].startswith("millstream: Kafka 9.9 jars: 3 files (4.5 MB) downloaded, ")
