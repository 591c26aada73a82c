"""From the ``recording:`` config to what record and replay use.

The loader calls ``load_recordings`` at start and at every reload, so a
broken file refuses the config like any other mistake (its path and the
reason) and a reload that fails keeps the recordings in force.
"""

from __future__ import annotations

import dataclasses
import os

from mockai_tw.config import Config, ConfigError, RecordingConfig
from mockai_tw.recording.files import RecordingError, load_dir
from mockai_tw.recording.policy import Policy

#: The modes that answer from recordings (so load them).
REPLAYING = ("replay", "replay_or_record", "record")


def policy_of(recording: RecordingConfig) -> Policy:
    return Policy.of(
        recording.ignore_fields, recording.redact, recording.redact_headers
    )


def load_recordings(config: Config, base_dir: str | None) -> Config:
    """``config`` with ``recording.dir`` made absolute and its recordings loaded."""
    recording = config.recording
    if recording.mode == "off":
        return config
    directory = recording.dir
    if not os.path.isabs(directory):
        directory = os.path.join(base_dir or os.getcwd(), directory)
    directory = os.path.normpath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError("recording.dir", f"{directory} is not a directory")
    if recording.mode == "replay" and not os.path.exists(directory):
        # Only recordings answer: a mistyped path would make every request miss.
        raise ConfigError("recording.dir", f"{directory} does not exist")
    config = dataclasses.replace(
        config, recording=dataclasses.replace(recording, dir=directory)
    )
    if recording.mode not in REPLAYING:
        return config
    try:
        loaded = load_dir(directory, policy_of(recording))
    except RecordingError as error:
        raise ConfigError(error.path, error.reason) from None
    return dataclasses.replace(config, recordings=loaded)
