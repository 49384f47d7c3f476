"""PLACEHOLDER on the `pipeline` branch only: the real entry point is written on the `ml` branch
(detector-contract.md), which replaces this file when the branches are merged. It exists so
that the stack can build the source tarball (detector/source.py) at synth."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    raise NotImplementedError("detector/train.py comes from the ml branch")


if __name__ == "__main__":
    main()
