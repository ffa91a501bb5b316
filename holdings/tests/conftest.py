"""Fixtures of the asset image tests: a storage folder of each test's own, and a describer on loopback."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .chat_server import ChatServer

DESCRIBER_KEY = "sk-describer-7f3a9c2e1b"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """MEDIA_ROOT in the test's own folder: what was stored (or left behind) is this test's alone."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def stored_files(media: Path) -> list[Path]:
    return sorted(path for path in media.rglob("*") if path.is_file())


@pytest.fixture
def chat_server_factory() -> Iterator[Any]:
    """Starts more loopback servers (another host a redirect may name); each is stopped after the test."""
    servers: list[ChatServer] = []

    def start() -> ChatServer:
        servers.append(ChatServer().start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer().start()
    yield server
    server.stop()


@pytest.fixture
def describer(settings: Any, chat_server: ChatServer, media: Path) -> ChatServer:
    """The openai describer, configured against the loopback server, with short limits for the tests."""
    settings.ASSET_DESCRIBER = "openai"
    settings.ASSET_DESCRIBER_BASE_URL = chat_server.base_url
    settings.ASSET_DESCRIBER_API_KEY = DESCRIBER_KEY
    settings.ASSET_DESCRIBER_MODEL = "vision-test"
    settings.ASSET_DESCRIBER_TIMEOUT = 0.5
    settings.ASSET_DESCRIBER_MAX_CHARS = 500
    settings.ASSET_DESCRIBER_MAX_RESPONSE_BYTES = 4096
    return chat_server
