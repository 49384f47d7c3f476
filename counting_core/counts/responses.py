"""Which model answer (response file) belongs to which image, for every reader of Batch
Transform outputs: the evaluation and bulk counting match them the same way.

Where Batch Transform writes the output of a ``ManifestFile`` input is not clearly
documented: the API reference says the output is named after the input object plus
``.out`` and "stored in the same relative path" as the input, without saying whether
that path is the key relative to the manifest's prefix (folders kept) or the object's
file name alone. So both layouts are accepted, and a response that could belong to two
images is refused rather than guessed.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from counting_core.errors import InputError

#: A response is named after its image's file: ``<file name>.out`` as Batch Transform writes
#: it, or ``<file name>.json`` as a person saves an InvokeEndpoint answer.
RESPONSE_SUFFIXES = (".out", ".json")


class Answered(Protocol):
    """An image a response may belong to: its reference (an S3 URI or a key) and file name."""

    @property
    def source_ref(self) -> str: ...

    @property
    def file_name(self) -> str: ...


def pair_responses(
    images: Sequence[Answered], names: Iterable[str]
) -> tuple[dict[str, str], list[Answered], list[str]]:
    """Pair each image with its response file: the pairs (image reference -> name), the
    images without a response, and the names left over.

    ``names`` are paths relative to where the responses are (``a.jpg.out`` or, as Batch
    Transform may keep the input's folders, ``batch1/a.jpg.out``). A response belongs to an
    image when its file name is the image's plus a ``RESPONSE_SUFFIXES`` suffix; when several
    do, the one whose folders match more of the image's key wins. A tie, or a response
    claimed by two images, is an ``InputError``.
    """
    by_file: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_file[name.rsplit("/", 1)[-1]].append(name)
    matched: dict[str, str] = {}
    claimed: dict[str, str] = {}
    unanswered: list[Answered] = []
    for image in images:
        candidates = [
            name
            for suffix in RESPONSE_SUFFIXES
            for name in by_file.get(image.file_name + suffix, ())
        ]
        if not candidates:
            unanswered.append(image)
            continue
        scored = sorted(candidates, key=lambda name: -_shared_folders(image.source_ref, name))
        if len(scored) > 1 and _shared_folders(image.source_ref, scored[0]) == _shared_folders(
            image.source_ref, scored[1]
        ):
            raise InputError(
                f"several responses could be for image {image.source_ref}: "
                f"{', '.join(sorted(candidates))}"
            )
        name = scored[0]
        # The same image listed twice (labeled twice) shares its one response.
        if claimed.get(name, image.source_ref) != image.source_ref:
            raise InputError(
                f"images {claimed[name]} and {image.source_ref} share the file name "
                f"{image.file_name}: keep their responses in folders named like theirs"
            )
        claimed[name] = image.source_ref
        matched[image.source_ref] = name
    left_over = sorted({name for names_ in by_file.values() for name in names_} - set(claimed))
    return matched, unanswered, left_over


def match_responses(
    images: Sequence[Answered], names: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """``pair_responses`` where every image must have its response: the pairs and the names
    left over; an image without a response is an ``InputError``."""
    matched, unanswered, left_over = pair_responses(images, names)
    if unanswered:
        image = unanswered[0]
        expected = " or ".join(image.file_name + suffix for suffix in RESPONSE_SUFFIXES)
        raise InputError(f"no response for image {image.source_ref}: expected {expected}")
    return matched, left_over


def _shared_folders(source_ref: str, response_name: str) -> int:
    """How many folders, from the file upwards, the response's path shares with the image's."""
    image_folders = source_ref.removeprefix("s3://").split("/")[:-1]
    response_folders = response_name.split("/")[:-1]
    shared = 0
    for image_folder, response_folder in zip(
        reversed(image_folders), reversed(response_folders), strict=False
    ):
        if image_folder != response_folder:
            break
        shared += 1
    return shared


def responses_of(source_refs: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    """Response name -> the image among ``source_refs`` whose file name it carries."""
    by_file = {source_ref.rsplit("/", 1)[-1]: source_ref for source_ref in source_refs}
    found = {}
    for name in names:
        file_name = name.rsplit("/", 1)[-1]
        for suffix in RESPONSE_SUFFIXES:
            if file_name.endswith(suffix) and file_name.removesuffix(suffix) in by_file:
                found[name] = by_file[file_name.removesuffix(suffix)]
    return found
