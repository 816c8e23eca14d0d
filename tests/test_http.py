"""django_eventlog.http: Idempotency-Key, ETag/If-Match, problem details, json_api.

Unit tests on requests built by ``RequestFactory``; no database is needed.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from django_eventlog import (
    ConcurrentAppend,
    EventEncodingError,
    EventLogError,
    IdempotencyConflict,
    IdempotentReplay,
    ImmutableEvent,
    InvalidArgument,
    LogNotFound,
    LogState,
    StaleState,
    UnknownEventType,
    http,
)
from django_eventlog.validation import IDEMPOTENCY_KEY_MAX_LENGTH

LOG_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
OTHER_LOG_ID = uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-ffffffffffff")


def with_key(rf: RequestFactory, value: str) -> HttpRequest:
    return rf.post("/", HTTP_IDEMPOTENCY_KEY=value)


def with_if_match(rf: RequestFactory, value: str) -> HttpRequest:
    return rf.post("/", HTTP_IF_MATCH=value)


def body_of(response: HttpResponse) -> dict[str, Any]:
    body = json.loads(response.content)
    assert isinstance(body, dict)
    return body


# idempotency_key


def test_idempotency_key_absent_is_none(rf: RequestFactory) -> None:
    assert http.idempotency_key(rf.post("/")) is None
    assert http.idempotency_key(rf.post("/"), prefix="scope:") is None


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (
            '"8e03978e-40d5-43e8-bc93-6894a57f9324"',
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
        ),
        ('"with space, comma; and = signs"', "with space, comma; and = signs"),
        (r'"a \"quoted\" word"', 'a "quoted" word'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\\""', '\\"'),
        ('  "padded"  ', "padded"),
        # A bare token is accepted too (a UUID is not an RFC 8941 token).
        (
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
            "8e03978e-40d5-43e8-bc93-6894a57f9324",
        ),
        ("tok:en/with.punct*", "tok:en/with.punct*"),
    ],
)
def test_idempotency_key_parses_a_string_or_a_token(
    rf: RequestFactory, header: str, key: str
) -> None:
    assert http.idempotency_key(with_key(rf, header)) == key


def test_idempotency_key_prefix_scopes_the_key(rf: RequestFactory) -> None:
    request = with_key(rf, '"abc"')
    assert http.idempotency_key(request, prefix="payments:create:") == (
        "payments:create:abc"
    )


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty header"),
        pytest.param('""', id="empty string"),
        pytest.param("   ", id="blank"),
        pytest.param('"clé"', id="non-ASCII in a string"),
        pytest.param("clé", id="non-ASCII token"),
        pytest.param('"tab\there"', id="tab in a string"),
        pytest.param('"bell\x07"', id="control character in a string"),
        pytest.param("a\x01b", id="control character in a token"),
        pytest.param('"unterminated', id="unterminated string"),
        pytest.param('unterminated"', id="unopened string"),
        pytest.param(r'"escaped end\"', id="escaped closing quote"),
        pytest.param(r'"end\"', id="escaped closing quote, no space"),
        pytest.param(r'"bad \n escape"', id="backslash escape of a letter"),
        pytest.param(r'"bad\n"', id="backslash escape of a letter, no space"),
        pytest.param('mid"quote', id="quote in a token"),
        pytest.param("back\\slash", id="backslash in a token"),
        pytest.param('"a" "b"', id="two strings"),
        pytest.param('"a", "b"', id="a list"),
        # Two Idempotency-Key headers, which WSGI servers join with ",".
        pytest.param("a,b", id="two tokens joined"),
        pytest.param("a, b", id="two tokens joined with a space"),
        pytest.param('"a","b"', id="two strings joined"),
        pytest.param('"a, b",c', id="a string with a comma and a token"),
        pytest.param("two words", id="token with a space"),
    ],
)
def test_idempotency_key_rejects_malformed_headers(
    rf: RequestFactory, header: str
) -> None:
    with pytest.raises(http.BadRequestHeader) as info:
        http.idempotency_key(with_key(rf, header))
    assert info.value.header == "Idempotency-Key"
    assert str(info.value).startswith("Idempotency-Key: ")


def test_idempotency_key_length_counts_the_prefix(rf: RequestFactory) -> None:
    prefix = "scope:"
    longest = "k" * (IDEMPOTENCY_KEY_MAX_LENGTH - len(prefix))
    assert http.idempotency_key(with_key(rf, f'"{longest}"'), prefix=prefix) == (
        prefix + longest
    )
    with pytest.raises(http.BadRequestHeader) as info:
        http.idempotency_key(with_key(rf, f'"{longest}k"'), prefix=prefix)
    # The client is told the limit of its own part of the key.
    assert f"longer than {len(longest)} characters" in str(info.value)
    # Without the prefix the same key fits.
    assert http.idempotency_key(with_key(rf, f'"{longest}k"')) == longest + "k"


def test_bad_request_header_is_a_bad_request() -> None:
    error = http.BadRequestHeader("If-Match", "nope")
    assert isinstance(error, http.BadRequest)
    assert isinstance(error, EventLogError)
    assert isinstance(error, ValueError)


# etag and if_match_state


def test_etag_is_a_strong_tag_of_the_log_and_next_index() -> None:
    assert http.etag(LogState(LOG_ID, 0)) == f'"{LOG_ID.hex}.0"'
    assert http.etag(LogState(LOG_ID, 1234)) == f'"{LOG_ID.hex}.1234"'


def test_if_match_absent_is_none(rf: RequestFactory) -> None:
    assert http.if_match_state(rf.post("/"), LOG_ID) is None


@pytest.mark.parametrize("header", ["*", " * "])
def test_if_match_star_is_none(rf: RequestFactory, header: str) -> None:
    assert http.if_match_state(with_if_match(rf, header), LOG_ID) is None


def test_if_match_returns_the_state_of_the_etag(rf: RequestFactory) -> None:
    request = with_if_match(rf, http.etag(LogState(LOG_ID, 7)))
    assert http.if_match_state(request, LOG_ID) == LogState(LOG_ID, 7)
    # The log id may come as a string.
    assert http.if_match_state(request, str(LOG_ID)) == LogState(LOG_ID, 7)


def test_if_match_picks_this_logs_etag_from_a_list(rf: RequestFactory) -> None:
    header = ", ".join(
        [
            http.etag(LogState(OTHER_LOG_ID, 3)),
            "garbage",
            http.etag(LogState(LOG_ID, 5)),
        ]
    )
    state = http.if_match_state(with_if_match(rf, header), LOG_ID)
    assert state == LogState(LOG_ID, 5)


def test_if_match_never_matches_a_weak_tag(rf: RequestFactory) -> None:
    # RFC 9110 13.1.1: If-Match compares strongly; a weak tag never matches.
    request = with_if_match(rf, f"W/{http.etag(LogState(LOG_ID, 2))}")
    with pytest.raises(http.PreconditionFailed) as info:
        http.if_match_state(request, LOG_ID)
    assert info.value.header == "If-Match"
    # A strong tag of this log beside it matches.
    both = f"W/{http.etag(LogState(LOG_ID, 2))}, {http.etag(LogState(LOG_ID, 3))}"
    assert http.if_match_state(with_if_match(rf, both), LOG_ID) == LogState(LOG_ID, 3)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f'"{OTHER_LOG_ID.hex}.3"', id="etag of another log"),
        pytest.param(f'W/"{LOG_ID.hex}.3"', id="weak etag of this log"),
        pytest.param("garbage", id="garbage"),
        pytest.param('"garbage"', id="quoted garbage"),
        pytest.param(f"{LOG_ID.hex}.3", id="unquoted"),
        pytest.param(f'"{LOG_ID.hex}.-1"', id="negative index"),
        pytest.param(f'"{LOG_ID.hex}"', id="no index"),
        pytest.param(f'"{LOG_ID}.3"', id="hyphenated uuid"),
        pytest.param("", id="empty"),
    ],
)
def test_if_match_without_an_etag_of_this_log_fails_the_precondition(
    rf: RequestFactory, header: str
) -> None:
    # RFC 9110 13.1.1: the condition is false, so 412, not 400.
    with pytest.raises(http.PreconditionFailed) as info:
        http.if_match_state(with_if_match(rf, header), LOG_ID)
    assert info.value.header == "If-Match"
    assert not isinstance(info.value, http.BadRequest)
    assert http.problem_for(info.value).status_code == 412


# problem, precondition_failed, problem_for


def test_problem_is_rfc_9457_problem_details() -> None:
    response = http.problem(418, "I'm a teapot", "Short and stout.", hint="tip")
    assert response.status_code == 418
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response) == {
        "type": "about:blank",
        "title": "I'm a teapot",
        "status": 418,
        "detail": "Short and stout.",
        "hint": "tip",
    }


def test_problem_without_detail_omits_it() -> None:
    response = http.problem(404, "Not Found", type="https://example.com/missing")
    assert body_of(response) == {
        "type": "https://example.com/missing",
        "title": "Not Found",
        "status": 404,
    }


def test_precondition_failed_is_412_with_the_current_etag() -> None:
    current = LogState(LOG_ID, 9)
    response = http.precondition_failed(current)
    assert response.status_code == 412
    assert response["ETag"] == http.etag(current)
    assert response["Content-Type"] == "application/problem+json"
    body = body_of(response)
    assert body["status"] == 412
    assert body["title"] == "Precondition Failed"
    assert "If-Match" in body["detail"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LogNotFound(LOG_ID), 404),
        (IdempotencyConflict("key", LOG_ID, 3), 422),
        (ConcurrentAppend(LOG_ID), 409),
        (InvalidArgument("limit must be an int"), 400),
        (EventEncodingError("cannot encode"), 400),
        (http.BadRequest("The body is not valid JSON."), 400),
        (http.BadRequestHeader("Idempotency-Key", "nope"), 400),
        (http.PreconditionFailed("If-Match", "no etag of this resource"), 412),
        (UnknownEventType("secret.type"), 500),
        (ImmutableEvent("secret immutable"), 500),
        (EventLogError("secret internal detail"), 500),
    ],
)
def test_problem_for_maps_library_errors(error: EventLogError, status: int) -> None:
    response = http.problem_for(error)
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = body_of(response)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    if status != 400:
        # Internal details (log ids, keys, messages) stay on the server.
        assert str(LOG_ID) not in response.content.decode()
        assert "secret" not in response.content.decode()


def test_problem_for_a_stale_state_is_412_with_the_current_etag() -> None:
    # What transact raises when the If-Match state is not the log's.
    response = http.problem_for(StaleState(LOG_ID, 3, 7))
    assert response.status_code == 412
    assert response["ETag"] == f'"{LOG_ID.hex}.7"'
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["title"] == "Precondition Failed"


def test_json_api_answers_a_stale_state_with_412_and_the_current_etag(
    rf: RequestFactory,
) -> None:
    @http.json_api(methods=["POST"])
    def view(request: HttpRequest) -> HttpResponse:
        raise StaleState(LOG_ID, 1, 2)

    response = view(rf.post("/"))
    assert response.status_code == 412
    assert response["ETag"] == f'"{LOG_ID.hex}.2"'


def test_problem_for_a_bad_request_tells_what_is_wrong() -> None:
    body = body_of(http.problem_for(http.BadRequestHeader("If-Match", "bad tag.")))
    assert body["detail"] == "If-Match: bad tag."


def test_problem_for_refuses_a_replay() -> None:
    with pytest.raises(TypeError):
        http.problem_for(IdempotentReplay("key", LOG_ID, 0))


# json_body


def post_body(rf: RequestFactory, data: bytes) -> HttpRequest:
    return rf.post("/", data=data, content_type="application/json")


def test_json_body_returns_the_object(rf: RequestFactory) -> None:
    body = http.json_body(post_body(rf, b'{"amount": 5, "nested": {"a": [1]}}'))
    assert body == {"amount": 5, "nested": {"a": [1]}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"NaN-ish", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"12", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"", "must be a JSON object"),
    ],
)
def test_json_body_rejects_anything_but_an_object(
    rf: RequestFactory, data: bytes, message: str
) -> None:
    with pytest.raises(http.BadRequest, match=message):
        http.json_body(post_body(rf, data))


# json_api


def test_json_api_answers_405_with_allow(rf: RequestFactory) -> None:
    called = []

    @http.json_api(methods=["get", "head"])
    def view(request: HttpRequest) -> HttpResponse:
        called.append(request)
        return HttpResponse("ok")

    response = view(rf.post("/"))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["title"] == "Method Not Allowed"
    assert called == []
    assert view(rf.head("/")).status_code == 200
    assert view.__name__ == "view"


def test_json_api_maps_a_library_error(rf: RequestFactory) -> None:
    @http.json_api(methods=["GET"])
    def view(request: HttpRequest, log_id: str) -> HttpResponse:
        raise LogNotFound(uuid.UUID(log_id))

    response = view(rf.get("/"), str(LOG_ID))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["title"] == "Not Found"


@pytest.mark.parametrize("debug", [False, True])
def test_json_api_hides_an_unexpected_error_and_logs_it(
    rf: RequestFactory,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
    debug: bool,
) -> None:
    settings.DEBUG = debug

    @http.json_api(methods=["POST"])
    def view(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("password=hunter2 in /srv/app/secret.py")

    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = view(rf.post("/"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response) == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
    }
    content = response.content.decode()
    assert "hunter2" not in content
    assert "Traceback" not in content
    assert "RuntimeError" not in content
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "view" in record.getMessage()


def test_json_api_treats_an_escaped_replay_as_a_bug(
    rf: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # problem_for refuses an IdempotentReplay: a view must answer it itself.
    @http.json_api(methods=["POST"])
    def view(request: HttpRequest) -> HttpResponse:
        raise IdempotentReplay("secret-key", LOG_ID, 0)

    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = view(rf.post("/"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert "secret-key" not in response.content.decode()
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], IdempotentReplay)


def test_json_api_passes_success_through(rf: RequestFactory) -> None:
    sent = HttpResponse(b"created", status=201)
    seen: list[tuple[Any, ...]] = []

    @http.json_api(methods=["POST"])
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        seen.append((args, kwargs))
        return sent

    assert view(rf.post("/"), "a", b=2) is sent
    assert seen == [(("a",), {"b": 2})]


def test_idempotency_key_several_keys_are_refused_as_such(rf: RequestFactory) -> None:
    with pytest.raises(http.BadRequestHeader, match="one key, not a list"):
        http.idempotency_key(with_key(rf, "a,b"))
    # A comma inside a quoted key is part of the key, not a separator.
    assert http.idempotency_key(with_key(rf, '"a,b"')) == "a,b"


def test_json_body_nested_too_deeply_is_a_bad_request(rf: RequestFactory) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(http.BadRequest, match="nested too deeply"):
        http.json_body(post_body(rf, b'{"a": ' + deep + b"}"))


def json_view(methods: list[str], body: Any = None) -> Any:
    """A json_api view that reads the JSON body, then raises ``body`` if given."""

    @http.json_api(methods=methods)
    def view(request: HttpRequest) -> HttpResponse:
        http.json_body(request)
        if body is not None:
            raise body
        return HttpResponse("ok")

    return view


def test_json_api_answers_413_for_a_body_over_the_limit(
    rf: RequestFactory, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    view = json_view(["POST"])
    response = view(post_body(rf, b'{"a": "' + b"x" * 2_000 + b'"}'))
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["title"] == "Content Too Large"
    assert view(post_body(rf, b'{"a": "x"}')).status_code == 200


def test_json_api_answers_400_for_a_deeply_nested_body(rf: RequestFactory) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    response = json_view(["POST"])(post_body(rf, deep))
    assert response.status_code == 400
    assert body_of(response)["detail"] == "The body is nested too deeply."


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(OperationalError("connection refused"), id="operational"),
        pytest.param(InterfaceError("connection already closed"), id="interface"),
    ],
)
def test_json_api_answers_503_with_retry_after_when_the_database_is_down(
    rf: RequestFactory, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    view = json_view(["POST"], error)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = view(post_body(rf, b"{}"))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["title"] == "Service Unavailable"
    assert "connection" not in response.content.decode()
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    # Django's handler sees the response logged already and logs it no more.
    assert getattr(response, "_has_been_logged", False)


def test_json_api_retry_after_is_configurable(rf: RequestFactory) -> None:
    @http.json_api(methods=["GET"], retry_after=30)
    def view(request: HttpRequest) -> HttpResponse:
        raise OperationalError("down")

    assert view(rf.get("/"))["Retry-After"] == "30"


@pytest.mark.parametrize(
    "error", [UnknownEventType("secret.type"), EventLogError("secret")]
)
def test_json_api_logs_a_library_error_that_is_a_server_error(
    rf: RequestFactory, caplog: pytest.LogCaptureFixture, error: EventLogError
) -> None:
    view = json_view(["POST"], error)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = view(post_body(rf, b"{}"))
    assert response.status_code == 500
    assert "secret" not in response.content.decode()
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None
    assert record.exc_info[1] is error


def test_json_api_does_not_log_a_client_error(
    rf: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    view = json_view(["POST"], LogNotFound(LOG_ID))
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        assert view(post_body(rf, b"{}")).status_code == 404
    assert [r for r in caplog.records if r.name == "django.request"] == []


# json_api and CSRF, as Django REST framework's session authentication does


def csrf_request(
    rf: RequestFactory, method: str, *, authenticated: bool, token: bool
) -> HttpRequest:
    secret = "a" * 32
    headers = {"X-CSRFToken": secret} if token else {}
    request: HttpRequest = getattr(rf, method.lower())(
        "/", data=b"{}", content_type="application/json", headers=headers
    )
    request.COOKIES["csrftoken"] = secret
    # An unsaved User is authenticated; no database is needed.
    request.user = User() if authenticated else AnonymousUser()
    return request


def test_json_api_is_exempt_from_the_csrf_middleware() -> None:
    assert getattr(json_view(["POST"]), "csrf_exempt", False) is True


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_json_api_checks_csrf_for_a_cookie_authenticated_unsafe_method(
    rf: RequestFactory, method: str
) -> None:
    view = json_view([method])
    response = view(csrf_request(rf, method, authenticated=True, token=False))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert body_of(response)["detail"].startswith("CSRF Failed: ")
    assert (
        view(csrf_request(rf, method, authenticated=True, token=True)).status_code
        == 200
    )
    # No cookie authentication: nothing for a forged request to ride on.
    assert (
        view(csrf_request(rf, method, authenticated=False, token=False)).status_code
        == 200
    )


def test_json_api_answers_405_before_checking_csrf(rf: RequestFactory) -> None:
    @http.json_api(methods=["GET", "HEAD"])
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = view(csrf_request(rf, method, authenticated=True, token=False))
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
    # A safe method needs no token.
    get = rf.get("/")
    get.user = User()
    assert view(get).status_code == 200
