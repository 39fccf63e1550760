"""The OpenAI-compatible backend against a real local HTTP server (`culturesim serve`'s app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from culturesim.models.base import GenerationParams, ModelError, ScoringUnsupported
from culturesim.models.openai_backend import OpenAIModel
from culturesim.models.registry import build_model
from culturesim.models.retry import RetryingModel, retry_log_of
from culturesim.models.server import create_app
from culturesim.models.transformers_backend import TransformersModel
from tests.helpers import free_port, running


def failing_first(app: FastAPI, failures: int, status: int = 500) -> FastAPI:
    """Wrap an app so that its first `failures` requests answer `status`."""
    count = {"n": 0}

    @app.middleware("http")
    async def fail_some(request: Request, call_next):  # type: ignore[no-untyped-def]
        count["n"] += 1
        if count["n"] <= failures:
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=status)
        return await call_next(request)

    return app


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> Iterator[tuple[TransformersModel, str]]:
    local = TransformersModel.from_pretrained(tiny_model_dir)
    with running(create_app(local)) as url:
        yield local, url


def test_generate_over_http_equals_in_process(served: tuple[TransformersModel, str]) -> None:
    local, url = served
    remote = OpenAIModel("tiny", url)
    prompts = ["The capital of France is", [{"role": "user", "content": "Say hello."}]]
    params = GenerationParams(max_new_tokens=8)
    over_http = remote.generate(prompts, params)
    assert [c.text for c in over_http] == [c.text for c in local.generate(prompts, params)]
    assert all(c.completion_tokens > 0 for c in over_http)
    remote.close()


def test_score_over_http_is_exact_for_text_and_for_chats_with_a_tokenizer(
    served: tuple[TransformersModel, str], tiny_model_dir: Path
) -> None:
    local, url = served
    candidates = [" Paris", " Berlin", "10"]
    remote = OpenAIModel("tiny", url, tokenizer_path=str(tiny_model_dir))
    text_prompt = "The capital of France is"
    chat = [{"role": "user", "content": "Pick a number."}]
    for prompt in (text_prompt, chat):
        (expected,) = local.score([prompt], [candidates])  # type: ignore[list-item]
        (got,) = remote.score([prompt], [candidates])  # type: ignore[list-item]
        assert got == pytest.approx(expected, abs=1e-3)
    remote.close()


def test_chat_scoring_without_tokenizer_says_when_it_cannot_be_exact(
    served: tuple[TransformersModel, str],
) -> None:
    _, url = served
    remote = OpenAIModel("tiny", url, top_logprobs=1)
    with pytest.raises(ScoringUnsupported, match="top-1"):
        remote.score([[{"role": "user", "content": "Hi"}]], [["zzz-not-a-token", "qqq"]])
    remote.close()


def test_retries_recover_from_server_errors(tiny_model_dir: Path) -> None:
    app = failing_first(create_app(TransformersModel.from_pretrained(tiny_model_dir)), failures=3)
    with running(app) as url:
        remote = RetryingModel(OpenAIModel("tiny", url), max_retries=4, backoff_s=0.01)
        reply = remote.generate(["Hello"], GenerationParams(max_new_tokens=3))[0]
        assert reply.completion_tokens == 3
        assert remote.log.retries == 3 and remote.log.failures == 0
        assert set(remote.log.errors) == {"InternalServerError"}
        remote.close()


def test_exhausted_retries_raise_an_error_naming_the_url(tiny_model_dir: Path) -> None:
    app = failing_first(
        create_app(TransformersModel.from_pretrained(tiny_model_dir)), failures=100, status=503
    )
    with running(app) as url:
        # Through the registry: the spec's retry options reach the retry wrapper.
        remote = build_model(f"openai:tiny@{url}?retries=2&backoff=0.01")
        assert isinstance(remote, RetryingModel) and isinstance(remote.inner, OpenAIModel)
        with pytest.raises(ModelError, match=url.replace(".", r"\.") + ".* after 3 tries"):
            remote.generate(["Hello"])
        log = retry_log_of(remote)
        assert log is not None and log.retries == 2 and log.failures == 1
        assert log.errors == {"InternalServerError": 3}
        remote.close()


def test_a_refused_request_is_not_retried_and_names_the_url(tiny_model_dir: Path) -> None:
    app = failing_first(
        create_app(TransformersModel.from_pretrained(tiny_model_dir)), failures=100, status=400
    )
    with running(app) as url:
        remote = RetryingModel(OpenAIModel("tiny", url), max_retries=4, backoff_s=0.01)
        with pytest.raises(ModelError, match=r"refused the request.*HTTP 400"):
            remote.generate(["Hello"])
        assert remote.log.retries == 0 and remote.log.failures == 0 and not remote.log.errors
        remote.close()


def test_the_bare_backend_tries_once_and_raises_the_transient_error(tiny_model_dir: Path) -> None:
    import openai

    app = failing_first(create_app(TransformersModel.from_pretrained(tiny_model_dir)), failures=1)
    with running(app) as url:
        remote = OpenAIModel("tiny", url)
        with pytest.raises(openai.InternalServerError):
            remote.generate(["Hello"])
        assert remote.generate(["Hello"], GenerationParams(max_new_tokens=2))[0].text
        remote.close()


def test_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    remote = RetryingModel(
        OpenAIModel("tiny", url, timeout_s=2), max_retries=1, backoff_s=0.01, where=url
    )
    with pytest.raises(ModelError, match="Is the server running"):
        remote.generate(["Hello"])
    assert remote.log.errors == {"APIConnectionError": 2}
    remote.close()


def test_api_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CULTURESIM_TEST_KEY", "sk-from-env")
    remote = OpenAIModel("m", "http://127.0.0.1:1/v1", api_key_env="CULTURESIM_TEST_KEY")
    assert remote.replicas[0].client.api_key == "sk-from-env"
    assert "sk-from-env" not in remote.model_id
    remote.close()
